"""``xrd-strain invert``: strain and disorder profiles of measured curves with a trained model."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from xrd_strain_plugin.cli import option_errors

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

A file that cannot be read or inverted is reported on stderr and skipped; the
others still run. Exit status: 0 if every file was inverted, 1 if any failed,
2 for bad options (unknown material, unreadable model bundle).
"""

EPILOG = """\
example:
  xrd-strain invert ysz_400_irradiated.xy --material YSZ --hkl 4 0 0 \\
      --wavelength-angstrom 1.5406 --out results/
"""


def register(subparsers) -> None:
    """Add the ``invert`` subcommand."""
    parser = subparsers.add_parser(
        "invert", help="measured curves -> strain/DW depth profiles with the CNN model",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", metavar="FILE", nargs="+",
                        help="two-column 2theta/intensity file (.xy, .dat, .txt, .csv; headers "
                             "and '#' comments allowed)")
    parser.add_argument("--material", metavar="NAME_OR_CIF", required=True,
                        help="built-in material name (e.g. YSZ) or path to a CIF file")
    parser.add_argument("--hkl", metavar=("H", "K", "L"), nargs=3, type=int, required=True,
                        help="Miller indices of the (symmetric) reflection")
    parser.add_argument("--wavelength-angstrom", metavar="L", type=float, required=True,
                        help="X-ray wavelength in angstrom (Cu K-alpha1: 1.5406)")
    parser.add_argument("--out", metavar="DIR", required=True,
                        help="output directory; one sub-directory per FILE")
    parser.add_argument("--model", metavar="BUNDLE|ID[@VERSION]", default=None,
                        help="model bundle directory (model.keras + card.json) or a registry "
                             "reference model_id[@version] (registry: $XRD_STRAIN_REGISTRY); "
                             "default: the registry's current model for --material/--hkl/"
                             "--wavelength-angstrom (the shipped YSZ 400 / Cu K-alpha1 model "
                             "until another is promoted)")
    parser.add_argument("--no-plot", action="store_true", help="do not write fit.png")
    tiled = parser.add_argument_group("publishing to Tiled")
    tiled.add_argument("--publish", metavar="TILED_URL", default=None,
                       help="also store each result in Tiled, in the same layout as live inversions "
                            "(results/<file content uid>; publishing the same file again gives one node)")
    tiled.add_argument("--api-key", metavar="KEY", default=None,
                       help="Tiled API key allowed to write (default: $TILED_API_KEY)")
    tiled.add_argument("--spool", metavar="DIR", default=None,
                       help="where results wait while Tiled is unreachable, written by the next publish "
                            "using the same directory (default: DIR/.spool under --out)")
    parser.set_defaults(func=run)


def run(args) -> int:
    """Invert every FILE; return 0 if all succeeded, 1 if any failed."""
    from xrd_strain_plugin.inference import Inverter, load_bundle
    from xrd_strain_plugin.inference.registry import ModelKey, ModelRegistry
    from xrd_strain_plugin.io import read_curve
    from xrd_strain_plugin.physics.materials import reflection

    with option_errors("--material/--hkl/--wavelength-angstrom"):
        refl = reflection(args.material, tuple(args.hkl), args.wavelength_angstrom)
    with option_errors("--model"):
        registry = ModelRegistry()
        entry = registry.resolve(args.model) if args.model else registry.current(ModelKey(
            material=args.material, hkl=tuple(args.hkl), wavelength_angstrom=args.wavelength_angstrom))
        bundle = load_bundle(entry.path)
        bundle.card.check_reflection(refl)
    inverter = Inverter(bundle)
    out_dir = Path(args.out)
    with option_errors("--out"):
        out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    done = []
    for name in args.files:
        path = Path(name)
        try:
            two_theta, intensity = read_curve(path)
            result = inverter.invert(two_theta, intensity, refl)
            target = out_dir / path.stem
            write_result(target, result, source=path, plot=not args.no_plot)
        except (ValueError, OSError) as error:
            failed += 1
            message = str(error) if str(path) in str(error) else f"{path}: {error}"
            print(f"xrd-strain invert: {message}", file=sys.stderr)
            continue
        print(f"{path}: e_max {result.strain_max_percent:.2f} % at {result.depth_of_max_nm:.0f} nm, "
              f"t {result.thickness_nm:.0f} nm, DW_min {result.dw_min:.2f}, "
              f"sigma_I {result.sigma_i:.3f} -> {target}")
        done.append((result, path))
    if args.publish and done:
        import os

        from xrd_strain_plugin.tiled.records import publish_offline

        spool = Path(args.spool) if args.spool else out_dir / ".spool"
        counts = publish_offline(done, args.publish, api_key=args.api_key or os.environ.get("TILED_API_KEY"),
                                 spool_directory=spool)
        print(f"published to {args.publish}: {counts['written']} written"
              + (f", {counts['spooled']} spooled in {spool} (Tiled unreachable; kept for the next publish)"
                 if counts["spooled"] else ""))
    if failed:
        print(f"xrd-strain invert: {failed} of {len(args.files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def write_result(target: Path, result, *, source: Path, plot: bool = True) -> None:
    """Write result.json, profile.csv, curve.csv and (optionally) fit.png into ``target``."""
    import numpy as np

    target.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    summary["inputs"] = {"file": str(source), "material": result.material,
                         "hkl": list(result.hkl),
                         "wavelength_angstrom": result.wavelength_angstrom,
                         "n_points": int(result.two_theta_deg.size),
                         "two_theta_range_deg": [float(result.two_theta_deg[0]),
                                                 float(result.two_theta_deg[-1])]}
    summary["written_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (target / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    np.savetxt(target / "profile.csv",
               np.column_stack([result.depth_nm, result.strain_percent, result.debye_waller]),
               delimiter=",", header="depth_nm,strain_percent,debye_waller", comments="",
               fmt="%.6g")
    np.savetxt(target / "curve.csv",
               np.column_stack([result.two_theta_deg, result.intensity_measured,
                                result.intensity_model]),
               delimiter=",", header="two_theta_deg,intensity_measured,intensity_model",
               comments="", fmt="%.8g")
    if plot:
        plot_result(result, target / "fit.png")


def plot_result(result, path: Path) -> None:
    """Measured and model curves (log scale); strain and DW versus depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_curve, ax_strain) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    measured = result.intensity_measured
    ax_curve.semilogy(result.two_theta_deg, measured, ".", ms=2, color="k", label="measured")
    ax_curve.semilogy(result.two_theta_deg, result.intensity_model, "-", color="C3",
                      label=f"model (sigma_I = {result.sigma_i:.3f})")
    ax_curve.set_xlabel("2theta (deg)")
    ax_curve.set_ylabel("intensity")
    ax_curve.legend(fontsize=8)
    ax_strain.plot(result.depth_nm, result.strain_percent, color="C0")
    ax_strain.set_xlabel("depth from surface (nm)")
    ax_strain.set_ylabel("strain (%)", color="C0")
    ax_dw = ax_strain.twinx()
    ax_dw.plot(result.depth_nm, result.debye_waller, color="C2")
    ax_dw.set_ylabel("Debye-Waller factor", color="C2")
    ax_dw.set_ylim(0, 1.05)
    fig.suptitle(f"{result.material} {tuple(result.hkl)}  model {result.model_id} "
                 f"v{result.model_version}", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
