"""``xrd-strain simulate``: the XRD curve of a crystal with a tabulated strain/DW profile."""

from __future__ import annotations

import argparse
import math
import sys

from xrd_strain_plugin.cli import CommandError, option_errors
from xrd_strain_plugin.cli.options import (
    add_reflection_options,
    finite_float,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)

#: Most points a scan may have (a guard against a mistyped STEP).
MAX_POINTS = 2_000_000

DESCRIPTION = """\
Simulate a symmetric theta/2theta scan (unless --asymmetry-deg is given) of a single
crystal whose irradiated top layer has the strain and Debye-Waller profile of
PROFILE.csv, by dynamical diffraction theory (Takagi-Taupin recursion over lamellae),
convolved with the instrument resolution.

PROFILE.csv has a header and the columns depth_nm,strain_percent,debye_waller: depth
from the surface in nm, strain in percent, static Debye-Waller factor in [0, 1]
(1 = perfect crystal). The profile is linear between rows; the last row's depth is
the layer thickness and the unstrained substrate lies below it.

CURVE.csv gets a header and the columns two_theta_deg,intensity: the reflectivity
convolved with the resolution (noise-free), or Poisson counts whose noise-free
maximum is MAX when --counts is given.
"""

EPILOG = """\
example:
  xrd-strain simulate --material YSZ --hkl 4 0 0 --wavelength-angstrom 1.5406 \\
      --two-theta-deg 72.8 73.8 0.002 --profile PROFILE.csv \\
      --resolution-fwhm-deg 0.01 --out CURVE.csv --plot curve.png

Bad input is reported with the parameter's name and exit status 2.
"""


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate the XRD curve of a strain/disorder depth profile (PROFILE.csv -> CURVE.csv)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _crystal_options(parser)
    _sample_options(parser)
    _scan_options(parser)
    _counting_options(parser)
    _output_options(parser)
    parser.set_defaults(func=run)


def _crystal_options(parser) -> None:
    """The crystal: material, reflection, wavelength (shared group) and the asymmetry."""
    crystal = parser.add_argument_group("crystal and reflection")
    add_reflection_options(crystal)
    crystal.add_argument(
        "--asymmetry-deg",
        metavar="A",
        type=finite_float,
        default=0.0,
        help="angle between the reflecting planes and the surface in degrees "
        "(miscut or asymmetric reflection; default: 0, symmetric Bragg geometry)",
    )


def _sample_options(parser) -> None:
    """The layer: its depth profile, lamellae and Bragg-deviation form."""
    sample = parser.add_argument_group("sample")
    sample.add_argument(
        "--profile",
        metavar="PROFILE.csv",
        required=True,
        help="depth profile: CSV with header depth_nm,strain_percent,debye_waller",
    )
    sample.add_argument(
        "--lamellae",
        metavar="N",
        type=positive_int,
        default=500,
        help="number of equal lamellae the layer is sliced into (default: %(default)s, as in Boulle & Debelle 2023)",
    )
    sample.add_argument(
        "--bragg",
        choices=("exact", "linearized"),
        default="exact",
        help="each lamella's Bragg deviation: 'exact' Q-space phase (default) or the paper's "
        "'linearized' form, to reproduce the published generator",
    )


def _scan_options(parser) -> None:
    """The scan angles and the instrument: resolution function and polarisation."""
    scan = parser.add_argument_group("scan and instrument")
    scan.add_argument(
        "--two-theta-deg",
        metavar=("START", "STOP", "STEP"),
        nargs=3,
        type=finite_float,
        required=True,
        help="scan range in degrees of 2theta: first angle, last angle (included when on the step grid), step",
    )
    scan.add_argument(
        "--resolution-fwhm-deg",
        metavar="W",
        type=positive_float,
        required=True,
        help="full width at half maximum of the resolution function, degrees of 2theta (> 0)",
    )
    scan.add_argument(
        "--resolution-shape",
        choices=("gaussian", "pseudo-voigt"),
        default="gaussian",
        help="shape of the resolution function (default: %(default)s)",
    )
    scan.add_argument(
        "--eta",
        metavar="ETA",
        type=fraction,
        default=0.5,
        help="Lorentzian fraction of the pseudo-Voigt resolution, in [0, 1] (default: %(default)s)",
    )
    scan.add_argument(
        "--polarization",
        choices=("sigma", "pi", "unpolarized"),
        default="sigma",
        help="polarisation of the incident beam (default: %(default)s; 'unpolarized' for a tube without monochromator)",
    )


def _counting_options(parser) -> None:
    """Optional counting statistics: Poisson counts, seed, background."""
    counting = parser.add_argument_group("counting statistics (optional)")
    counting.add_argument(
        "--counts",
        metavar="MAX",
        type=positive_float,
        help="write Poisson counts instead of the reflectivity, scaled so that the noise-free "
        "curve peaks at MAX counts",
    )
    counting.add_argument(
        "--seed",
        metavar="S",
        type=int,
        help="seed of the random generator for --counts (default: fresh entropy, not reproducible)",
    )
    counting.add_argument(
        "--background",
        metavar="B",
        type=non_negative_float,
        default=0.0,
        help="constant background in counts added before drawing the noise, with --counts (default: %(default)s)",
    )


def _output_options(parser) -> None:
    """Where the curve (and optionally a figure) goes."""
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", metavar="CURVE.csv", required=True, help="output CSV with header two_theta_deg,intensity"
    )
    output.add_argument(
        "--plot",
        metavar="FIG.png",
        help="also draw the curve (log scale) and the strain/DW profile versus depth to a PNG",
    )


def run(args) -> int:
    """Simulate the curve described by ``args`` and write it; returns the exit status."""
    import numpy as np

    from xrd_strain_plugin import io
    from xrd_strain_plugin.physics import instrument, profiles
    from xrd_strain_plugin.reflection_cache import cached_reflection

    two_theta_deg = _scan_angles(*args.two_theta_deg)
    if args.seed is not None and args.counts is None:
        raise CommandError("--seed: only meaningful with --counts")
    if args.background and args.counts is None:
        raise CommandError("--background: only meaningful with --counts")

    with option_errors("--profile"):
        table = io.read_profile(args.profile)
        layers = profiles.lamellae_from_table(table.depth_nm, table.strain_percent, table.debye_waller, args.lamellae)
    try:
        reflection = cached_reflection(args.material, tuple(args.hkl), args.wavelength_angstrom)
    except (ValueError, OSError) as error:
        raise CommandError(f"{_reflection_option(str(error))}: {error}") from error
    _check_layer_peak_in_scan(layers, reflection, two_theta_deg)

    try:
        curve = instrument.simulate_scan(
            two_theta_deg,
            layers.strain,
            layers.debye_waller,
            layers.thickness_nm,
            reflection,
            resolution_fwhm_deg=args.resolution_fwhm_deg,
            shape=args.resolution_shape,
            eta=args.eta,
            asymmetry=math.radians(args.asymmetry_deg),
            polarization=args.polarization,
            bragg=args.bragg,
            check_layer_in_scan=False,  # checked above, with the option named
        )[0]
    except ValueError as error:
        # What is left to go wrong is the geometry: a beam that cannot enter or leave the surface.
        option = "--asymmetry-deg" if args.asymmetry_deg else "--two-theta-deg"
        raise CommandError(f"{option}: {error}") from error
    intensity = curve
    if args.counts is not None:
        intensity = instrument.apply_counts(
            curve,
            scale=args.counts / float(np.max(curve)),
            background=args.background,
            rng=np.random.default_rng(args.seed),
        ).reshape(-1)

    with option_errors("--out"):
        io.write_curve(args.out, two_theta_deg, intensity)
    if args.plot:
        with option_errors("--plot"):
            plot_simulation(
                args.plot,
                two_theta_deg=two_theta_deg,
                intensity=intensity,
                layers=layers,
                table=table,
                title=_title(args, reflection),
            )
    print(
        f"wrote {args.out}: {two_theta_deg.size} points, 2theta {two_theta_deg[0]:g}-"
        f"{two_theta_deg[-1]:g} deg, layer {layers.thickness_nm:g} nm in {args.lamellae} lamellae"
        + (f"; figure {args.plot}" if args.plot else "")
    )
    return 0


def plot_simulation(path, *, two_theta_deg, intensity, layers, table, title=""):
    """Draw a simulated curve and its profile to an image file.

    Parameters
    ----------
    path : str or os.PathLike
        Output image (PNG).
    two_theta_deg, intensity : numpy.ndarray, shape (n_points,)
        The curve; the intensity is drawn on a log scale.
    layers : xrd_strain_plugin.physics.profiles.Lamellae
        The sliced profile (steps, index 0 at the surface).
    table : xrd_strain_plugin.io.ProfileTable
        The user's table (markers).
    title : str
        Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), layout="constrained")
    ax_curve, ax_strain = figure.subplots(1, 2)
    positive = np.where(intensity > 0, intensity, np.nan)
    ax_curve.semilogy(two_theta_deg, positive, lw=1)
    ax_curve.set_xlabel("2θ (deg)")
    ax_curve.set_ylabel("intensity")
    ax_curve.set_title("curve")

    n_slices = layers.strain.size
    edges = np.linspace(0.0, layers.thickness_nm, n_slices + 1)
    depth_steps = np.repeat(edges, 2)[1:-1]
    ax_strain.plot(depth_steps, np.repeat(100 * layers.strain, 2), color="C0", label="strain (lamellae)")
    ax_strain.plot(table.depth_nm, table.strain_percent, "o", color="C0", ms=4, label="strain (table)")
    ax_strain.set_xlabel("depth below the surface (nm)")
    ax_strain.set_ylabel("strain (%)", color="C0")
    ax_strain.set_xlim(0, layers.thickness_nm * 1.05)
    ax_dw = ax_strain.twinx()
    ax_dw.plot(depth_steps, np.repeat(layers.debye_waller, 2), color="C3", label="DW")
    ax_dw.plot(table.depth_nm, table.debye_waller, "s", color="C3", ms=4)
    ax_dw.set_ylabel("Debye-Waller factor", color="C3")
    ax_dw.set_ylim(0, 1.05)
    ax_strain.set_title("profile (surface at 0; substrate beyond the last row)")
    figure.suptitle(title)
    figure.savefig(path, dpi=120)


def _scan_angles(start, stop, step):
    """2theta grid from START STOP STEP (degrees), validated."""
    import numpy as np

    if step <= 0:
        raise CommandError(f"--two-theta-deg: STEP must be > 0, got {step:g}")
    if stop <= start:
        raise CommandError(f"--two-theta-deg: STOP ({stop:g}) must be greater than START ({start:g})")
    if start <= 0 or stop >= 180:
        raise CommandError(f"--two-theta-deg: angles must lie within (0, 180) degrees, got {start:g} to {stop:g}")
    n_points = int(math.floor((stop - start) / step + 1e-9)) + 1
    if n_points < 2:
        raise CommandError(f"--two-theta-deg: STEP {step:g} leaves fewer than 2 points between START and STOP")
    if n_points > MAX_POINTS:
        raise CommandError(f"--two-theta-deg: {n_points} points is more than {MAX_POINTS}; check STEP")
    return start + step * np.arange(n_points)


def _check_layer_peak_in_scan(layers, reflection, two_theta_deg):
    """The Bragg peak of the most strained diffracting lamellae must fall inside the scan."""
    import numpy as np

    from xrd_strain_plugin.physics.bragg import layer_peak_two_theta_deg

    diffracting = layers.debye_waller > 0
    if not np.any(diffracting):
        return
    for strain in (float(layers.strain[diffracting].max()), float(layers.strain[diffracting].min())):
        if strain == 0:
            continue
        peak = float(layer_peak_two_theta_deg(strain, reflection.theta_bragg))  # NaN: no Bragg angle
        if not two_theta_deg[0] <= peak <= two_theta_deg[-1]:
            where = f"2theta = {peak:.3f} deg" if math.isfinite(peak) else "no Bragg angle"
            raise CommandError(
                f"--profile: a strain of {100 * strain:.4g} % puts the layer peak at {where}, "
                f"outside the scan --two-theta-deg {two_theta_deg[0]:g}..{two_theta_deg[-1]:g}; "
                "widen the scan or reduce the strain"
            )
    bragg = reflection.two_theta_bragg_deg
    if not two_theta_deg[0] <= bragg <= two_theta_deg[-1]:
        print(
            f"xrd-strain simulate: warning: the substrate peak (2theta = {bragg:.3f} deg) is outside the scan",
            file=sys.stderr,
        )


def _reflection_option(message: str) -> str:
    """Which option a materials error is about."""
    lowered = message.lower()
    if "wavelength" in lowered:
        return "--wavelength-angstrom"
    if "hkl" in lowered or "forbidden" in lowered or "reflection" in lowered:
        return "--hkl"
    return "--material"


def _title(args, reflection) -> str:
    h, k, l = args.hkl
    return (
        f"{args.material} {h}{k}{l}, λ = {args.wavelength_angstrom:g} Å, "
        f"2θ_B = {reflection.two_theta_bragg_deg:.3f}°, resolution {args.resolution_fwhm_deg:g}°"
    )
