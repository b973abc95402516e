"""``xrd-strain invert``: strain and disorder profiles of measured curves with a trained model."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from xrd_strain_plugin.cli import option_errors
from xrd_strain_plugin.cli.options import (
    API_KEY_ENV,
    add_budget_options,
    add_reflection_options,
    add_tiled_options,
    api_key,
    budgets,
    reflection_of,
    tiled_url,
)

DESCRIPTION = """\
Invert measured XRD curves (two columns: 2theta in degrees, intensity) into depth
profiles of strain and static Debye-Waller factor with a trained CNN model bundle
(default: the shipped model for YSZ 400 at Cu K-alpha1). The model is loaded once
for all FILEs.

For each FILE, DIR/<file stem>/ receives:
  result.json  sigma_i (rms log10 misfit of the curve computed from the answer),
               strain_max_percent, depth_of_max_nm, thickness_nm, dw_min, fwhm_deg,
               dynamic_range, refined, elapsed_s, model {id, version, sha256}, inputs
  profile.csv  depth_nm,strain_percent,debye_waller (depth from the surface)
  curve.csv    two_theta_deg,intensity_measured,intensity_model
  fit.png      measured and model curves (log scale), strain and DW versus depth
               (unless --no-plot)

With --refine, the network's answer only starts an automated least-squares
refinement with the data's own physics (xrd-strain refinement engine: 2theta
offset search, several starts, local fits, a global stage when they stay poor).
The refined profile is the answer: result.json gets "refined": true and a
"refinement" block (path that won, sigma_i of the network's start and of the
answer, noise floor, evaluations, time, every parameter with its uncertainty),
profile.csv holds the refined profile and profile_network.csv the network's,
curve.csv adds the start's curve, and fit.png shows both curves and profiles.
Any crystal, reflection and wavelength (a built-in name or a CIF) can be refined:
when the model was trained for another one, its answer is read on the strain
axis (Delta Q / Q_B = -e) and mapped onto the data's crystal as the start.

A descending scan is accepted. A scan that does not contain the stated
reflection's Bragg peak, or is too short to hold a layer's signal, is refused
with a message saying so. A file that cannot be read or inverted is reported on
stderr and skipped; the others still run. Exit status: 0 if every file was inverted, 1 if any failed,
2 for bad options (unknown material, unreadable model bundle).
"""

EPILOG = """\
example:
  xrd-strain invert ysz_400_irradiated.xy --material YSZ --hkl 4 0 0 \\
      --wavelength-angstrom 1.5406 --out results/
  xrd-strain invert sic.xy --material SiC-3C --hkl 4 0 0 \\
      --wavelength-angstrom 1.5498 --refine --dw decoupled --out results/
"""


def register(subparsers) -> None:
    """Add the ``invert`` subcommand."""
    parser = subparsers.add_parser(
        "invert",
        help="measured curves -> strain/DW depth profiles with the CNN model",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "files",
        metavar="FILE",
        nargs="+",
        help="two-column 2theta/intensity file (.xy, .dat, .txt, .csv; headers and '#' comments allowed)",
    )
    add_reflection_options(parser, required=True)
    parser.add_argument("--out", metavar="DIR", required=True, help="output directory; one sub-directory per FILE")
    parser.add_argument(
        "--model",
        metavar="BUNDLE|ID[@VERSION]",
        default=None,
        help="model bundle directory (model.keras + card.json) or a registry "
        "reference model_id[@version] (registry: $XRD_STRAIN_REGISTRY); "
        "default: the registry's current model for --material/--hkl/"
        "--wavelength-angstrom (the shipped YSZ 400 / Cu K-alpha1 model "
        "until another is promoted)",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write fit.png")
    _refinement_options(parser)
    _publishing_options(parser)
    parser.set_defaults(func=run)


def _refinement_options(parser) -> None:
    """``--refine`` and what the refinement model may do: budgets (shared group), weights, DW, background."""
    refine = parser.add_argument_group("refinement (--refine)")
    refine.add_argument(
        "--refine",
        action="store_true",
        help="refine the network's answer by least squares with the data's own physics "
        "(needed for a crystal, reflection or wavelength the model was not trained for)",
    )
    add_budget_options(refine)  # the engine's defaults (caps; its work is counted, not timed)
    refine.add_argument(
        "--strain-weights",
        metavar="N",
        type=int,
        default=10,
        help="B-spline weights of the refined strain profile (default 10, >= 3)",
    )
    refine.add_argument(
        "--dw",
        choices=("coupled", "decoupled"),
        default="coupled",
        help="Debye-Waller profile: coupled to the strain through DW_min as in the paper "
        "(default), or its own B-spline weights (--dw-weights)",
    )
    refine.add_argument(
        "--dw-weights", metavar="N", type=int, default=6, help="weights of a decoupled DW profile (default 6)"
    )
    refine.add_argument(
        "--background", choices=("constant", "sloped"), default="constant", help="background model (default constant)"
    )
    refine.add_argument(
        "--free-mismatch",
        action="store_true",
        help="also refine the substrate's lattice mismatch to the stated material (off by "
        "default: over a short scan it is nearly the same as the 2theta zero offset)",
    )
    refine.add_argument(
        "--fix",
        metavar="NAME",
        nargs="+",
        default=(),
        help="hold parameters at their start values: thickness_nm, fwhm_deg, eta, "
        "zero_offset_deg, dw_min, w0..wN, d0..dN, log10_scale, log10_background",
    )
    refine.add_argument(
        "--weighting",
        choices=("auto", "counts", "none"),
        default="auto",
        help="weights of the log residuals: counting statistics when the intensities are "
        "(scaled) counts ('auto' detects them), or equal weights (default auto)",
    )


def _publishing_options(parser) -> None:
    """``--tiled-url`` (the shared Tiled group; ``--publish`` a hidden alias), ``--api-key`` and the spool."""
    tiled = add_tiled_options(  # --publish was this command's spelling: a hidden alias
        parser,
        write=True,
        required=False,
        aliases=("--publish",),
        title="publishing to Tiled",
        help="also store each result in this Tiled server, in the same layout as live inversions "
        "(results/<file content uid>; publishing the same file again gives one node)",
    )
    tiled.add_argument(
        "--spool",
        metavar="DIR",
        default=None,
        help="where results wait while Tiled is unreachable, written by the next publish "
        "using the same directory (default: DIR/.spool under --out)",
    )


def run(args) -> int:
    """Invert every FILE; return 0 if all succeeded, 1 if any failed."""
    from xrd_strain_plugin.cli import CommandError
    from xrd_strain_plugin.inference import Inverter
    from xrd_strain_plugin.io import read_curve
    from xrd_strain_plugin.reflection_cache import cached_reflection

    refl = reflection_of(args)
    if tiled_url(args):  # a refused key fails now, in one line, not after the inversions (issue 10)
        _check_credentials(args)
    bundle = _model_bundle(args)
    options = _with_library(_refine_options(args), bundle.path) if args.refine else None
    inverter = Inverter(bundle, reflections=cached_reflection)
    if not args.refine and not inverter.same_reflection(refl):
        card = bundle.card
        raise CommandError(
            f"--model: {card.model_id} was trained for {card.material} {tuple(card.hkl)} at "
            f"{card.wavelength_angstrom:g} A, not for {args.material} {tuple(args.hkl)} at "
            f"{args.wavelength_angstrom:g} A; add --refine to start from its answer and refine with the "
            f"data's own physics"
        )
    out_dir = Path(args.out)
    with option_errors("--out"):
        out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    done = []
    for name in args.files:
        path = Path(name)
        try:
            two_theta, intensity = read_curve(path)
            result = inverter.invert(two_theta, intensity, refl, transfer=args.refine)
            refined = None
            if args.refine:
                from xrd_strain_plugin.refinement import refine_curve

                refined = refine_curve(two_theta, intensity, refl, start=result, options=options)
            target = out_dir / path.stem
            write_result(target, result, source=path, plot=not args.no_plot, refined=refined)
        except (ValueError, OSError) as error:
            failed += 1
            message = str(error) if str(path) in str(error) else f"{path}: {error}"
            print(f"xrd-strain invert: {message}", file=sys.stderr)
            continue
        answer = refined or result
        line = (
            f"{path}: e_max {answer.strain_max_percent:.2f} % at {answer.depth_of_max_nm:.0f} nm, "
            f"t {answer.thickness_nm:.0f} nm, DW_min {answer.dw_min:.2f}, sigma_I {answer.sigma_i:.3f}"
        )
        if refined is not None:
            line += (
                f" (refined, path {refined.path}, network's start {refined.sigma_i_start:.3f}, "
                f"noise floor {refined.noise_floor_sigma_i or float('nan'):.3f}, {refined.elapsed_s:.1f} s"
                + (", POOR FIT" if refined.poor_fit else "")
                + ")"
            )
            line += _verdict(refined)
        print(f"{line} -> {target}")
        done.append((result, path))
    if tiled_url(args) and done:
        from xrd_strain_plugin.tiled.records import publish_offline

        spool = Path(args.spool) if args.spool else out_dir / ".spool"
        counts = publish_offline(done, tiled_url(args), api_key=api_key(args), spool_directory=spool)
        print(
            f"published to {tiled_url(args)}: {counts['written']} written"
            + (
                f", {counts['spooled']} spooled in {spool} (Tiled unreachable; kept for the next publish)"
                if counts["spooled"]
                else ""
            )
        )
    if failed:
        print(f"xrd-strain invert: {failed} of {len(args.files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _check_credentials(args) -> None:
    """Refuse a key the Tiled server refuses, in one line, before any inversion."""
    from xrd_strain_plugin.cli import CommandError
    from xrd_strain_plugin.tiled.writer import TiledAuthError, check_credentials

    try:
        check_credentials(tiled_url(args), api_key=api_key(args))
    except TiledAuthError as exc:
        raise CommandError(f"--api-key: {exc} (set --api-key or ${API_KEY_ENV})") from exc


def _model_bundle(args):
    """The bundle ``--model`` names, else the registry's current model for the reflection, else the shipped one."""
    from xrd_strain_plugin.inference import load_bundle
    from xrd_strain_plugin.inference.registry import ModelKey, ModelRegistry, RegistryError

    with option_errors("--model"):
        registry = ModelRegistry()
        if args.model:
            entry = registry.resolve(args.model)
        else:
            try:
                entry = registry.current(
                    ModelKey(material=args.material, hkl=tuple(args.hkl), wavelength_angstrom=args.wavelength_angstrom)
                )
            except RegistryError:
                # no model for this key: an equivalent reflection of a shipped model's crystal, or
                # (with --refine) any crystal, starts from the shipped model
                entry = next(e for e in registry.entries() if e.shipped)
        return load_bundle(entry.path)


def _with_library(options, bundle_path):
    """The bundle's proposal library (``library.npz`` beside its weights), when it ships one."""
    from dataclasses import replace

    from xrd_strain_plugin.refinement.library import bundle_library

    library = bundle_library(bundle_path)
    if options.library is None and options.n_library > 0 and library is not None:
        return replace(options, library=library)
    return options


def _refine_options(args):
    from xrd_strain_plugin.cli import CommandError
    from xrd_strain_plugin.refinement import ModelConfig, RefineOptions

    try:
        config = ModelConfig(
            n_strain_weights=args.strain_weights,
            dw_mode=args.dw,
            n_dw_weights=args.dw_weights,
            background=args.background,
            vary_mismatch=args.free_mismatch,
        )
        return RefineOptions(**budgets(args), model=config, weighting=args.weighting, fix=tuple(args.fix))
    except ValueError as error:
        raise CommandError(f"--refine options: {error}") from error


def write_result(target: Path, result, *, source: Path, plot: bool = True, refined=None) -> None:
    """Write result.json, profile.csv, curve.csv and (optionally) fit.png into ``target``.

    With ``refined`` (a RefinementResult) the refined profile is the answer; the network's is kept
    in result.json["network"] and profile_network.csv.
    """
    import numpy as np

    target.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    if refined is not None:
        network = {
            k: summary[k]
            for k in (
                "strain_max_percent",
                "depth_of_max_nm",
                "thickness_nm",
                "dw_min",
                "fwhm_deg",
                "sigma_i",
                "transfer",
            )
            if k in summary
        }
        block = refined.summary()
        summary.update(
            {k: block[k] for k in ("strain_max_percent", "depth_of_max_nm", "thickness_nm", "dw_min", "sigma_i")}
        )
        summary["fwhm_deg"] = block["values"]["fwhm_deg"]
        summary["refined"] = True
        summary["network"] = network
        summary["refinement"] = block
    summary["inputs"] = {
        "file": str(source),
        "material": result.material,
        "hkl": list(result.hkl),
        "wavelength_angstrom": result.wavelength_angstrom,
        "n_points": int(result.two_theta_deg.size),
        "two_theta_range_deg": [float(result.two_theta_deg[0]), float(result.two_theta_deg[-1])],
    }
    summary["written_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (target / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    answer = refined or result
    np.savetxt(
        target / "profile.csv",
        np.column_stack([answer.depth_nm, answer.strain_percent, answer.debye_waller]),
        delimiter=",",
        header="depth_nm,strain_percent,debye_waller",
        comments="",
        fmt="%.6g",
    )
    columns, header = (
        [answer.two_theta_deg, answer.intensity_measured, answer.intensity_model],
        "two_theta_deg,intensity_measured,intensity_model",
    )
    if refined is not None:
        np.savetxt(
            target / "profile_network.csv",
            np.column_stack([result.depth_nm, result.strain_percent, result.debye_waller]),
            delimiter=",",
            header="depth_nm,strain_percent,debye_waller",
            comments="",
            fmt="%.6g",
        )
        columns.append(refined.intensity_start)
        header += ",intensity_start"
    np.savetxt(target / "curve.csv", np.column_stack(columns), delimiter=",", header=header, comments="", fmt="%.8g")
    if plot:
        plot_result(result, target / "fit.png", refined=refined)


def plot_result(result, path: Path, *, refined=None) -> None:
    """Measured and model curves (log scale); strain and DW versus depth (start and refined)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_curve, ax_strain) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    measured = result.intensity_measured
    ax_curve.semilogy(result.two_theta_deg, measured, ".", ms=2, color="k", label="measured")
    if refined is None:
        ax_curve.semilogy(
            result.two_theta_deg,
            result.intensity_model,
            "-",
            color="C3",
            label=f"model (sigma_I = {result.sigma_i:.3f})",
        )
    else:
        ax_curve.semilogy(
            refined.two_theta_deg,
            refined.intensity_start,
            "-",
            color="0.6",
            lw=0.8,
            label=f"network's start (sigma_I = {refined.sigma_i_start:.3f})",
        )
        ax_curve.semilogy(
            refined.two_theta_deg,
            refined.intensity_model,
            "-",
            color="C3",
            label=f"refined, {refined.path} (sigma_I = {refined.sigma_i:.3f})",
        )
    ax_curve.set_xlabel("2theta (deg)")
    ax_curve.set_ylabel("intensity")
    ax_curve.legend(fontsize=8)
    if refined is None:
        ax_strain.plot(result.depth_nm, result.strain_percent, color="C0")
    else:
        ax_strain.plot(result.depth_nm, result.strain_percent, color="C0", ls=":", label="network")
        ax_strain.plot(refined.depth_nm, refined.strain_percent, color="C0", label="refined")
        if refined.strain_band_percent:
            lo, hi = refined.strain_band_percent
            ax_strain.fill_between(refined.depth_nm, lo, hi, color="C0", alpha=0.2, lw=0, label="+-1 sigma band")
        for k, alt in enumerate(refined.alternatives):
            ax_strain.plot(
                alt["depth_nm"],
                alt["strain_percent"],
                color="C1",
                lw=0.9,
                ls="--",
                label=f"equally good #{k + 1} (sigma_I {alt['sigma_i']:.3f})",
            )
        ax_strain.legend(fontsize=8, loc="upper left")
    ax_strain.set_xlabel("depth from surface (nm)")
    ax_strain.set_ylabel("strain (%)", color="C0")
    ax_dw = ax_strain.twinx()
    if refined is None:
        ax_dw.plot(result.depth_nm, result.debye_waller, color="C2")
    else:
        ax_dw.plot(result.depth_nm, result.debye_waller, color="C2", ls=":")
        ax_dw.plot(refined.depth_nm, refined.debye_waller, color="C2")
    ax_dw.set_ylabel("Debye-Waller factor", color="C2")
    ax_dw.set_ylim(0, 1.05)
    title = f"{result.material} {tuple(result.hkl)}  model {result.model_id} v{result.model_version}"
    if refined is not None:
        title += f"  refined ({refined.path}{', POOR FIT' if refined.poor_fit else ''})" + _verdict(refined)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _verdict(refined) -> str:
    """What a user must know beyond the best fit: no layer, or several equally good answers."""
    if not refined.layer_detected:
        limit = (refined.detection_limit or {}).get("strain_percent_x_thickness_nm")
        return "; NO STRAINED LAYER DETECTED" + (f" (detection limit e_max x t ~ {limit:.3g} % nm)" if limit else "")
    if refined.ambiguous:
        alts = ", ".join(
            f"t {a['thickness_nm']:.0f} nm / max at {a['depth_of_max_nm']:.0f} nm" for a in refined.alternatives
        )
        return f"; AMBIGUOUS: equally good {alts}"
    return ""
