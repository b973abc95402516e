"""Simulator throughput: curves per second per CPU core, side by side with a straightforward recursion.

Everything is measured in one run, on one thread (numba and BLAS limited to 1), so the figures are
per core and the ratios are fair. The baseline is the textbook Bartels et al. (1986) recursion in
numpy (one complex sqrt and two complex exp per point and lamella), the form the paper's generator uses;
it computes the same curves within its textbook approximations (0.015 rms log10 from ours at 1 % strain).

Run:  .venv/bin/python benchmarks/bench_simulator.py --out docs/bench_simulator.md
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from xrd_strain_plugin.physics.dynamical import reflectivity  # noqa: E402
from xrd_strain_plugin.physics.instrument import simulate_scan  # noqa: E402
from xrd_strain_plugin.physics.materials import make_reflection  # noqa: E402

try:
    import numba

    numba.set_num_threads(1)
except ImportError:  # pragma: no cover
    numba = None


def bartels_baseline(theta, strain, dw, thickness_nm, r):
    """Textbook recursion (Bartels, Hornstra & Lobeek 1986), symmetric sigma case, numpy."""
    lam, th_b = r.wavelength_angstrom, r.theta_bragg
    chi0, chih, chimh = r.chi0, r.chih, r.chimh
    c = np.sqrt(chih * chimh)
    n = strain.shape[1]
    t = thickness_nm[:, None] * 10 / n
    th = theta[None, :]
    dth_sub = th - th_b
    eta_s = (dth_sub * math.sin(2 * th_b) + chi0) / c
    s = np.sqrt(eta_s * eta_s - 1)
    x = np.where(np.abs(eta_s + s) > np.abs(eta_s - s), 1 / (eta_s + s), 1 / (eta_s - s))
    x = np.broadcast_to(x, (strain.shape[0], theta.size)).copy()
    for i in range(n - 1, -1, -1):
        e = strain[:, i : i + 1]
        d = dw[:, i : i + 1]
        th_bn = np.arcsin(np.sin(th_b) / (1 + e))
        eta = ((th - th_bn) * np.sin(2 * th_bn) + chi0) / (c * d + 1e-30)
        tt = math.pi * c * d * t / (lam * np.sin(th))
        sq = np.sqrt(eta * eta - 1)
        s1 = (x - eta + sq) * np.exp(-1j * tt * sq)
        s2 = -(x - eta - sq) * np.exp(1j * tt * sq)
        x = eta + sq * (s1 - s2) / (s1 + s2)
    return np.abs(x) ** 2


def profiles(rng, n_batch, n_slices, e_max=0.08):
    z = (np.arange(n_slices) + 0.5) / n_slices
    centre = rng.uniform(0.1, 0.6, (n_batch, 1))
    width = rng.uniform(0.1, 0.3, (n_batch, 1))
    e = rng.uniform(0.005, e_max, (n_batch, 1)) * np.exp(-(((z - centre) / width) ** 2)) * (1 - z)
    dw = np.exp(-2 * (e / e.max(axis=1, keepdims=True)) ** 2)
    return e, dw


def rate(fn, n_curves, repeat=3):
    return n_curves / _best_seconds(fn, repeat)


def _computed_angles(two_theta, fwhm, thickness_nm, r):
    """Angles at which simulate_scan evaluates the recursion for this batch (fine grid + window)."""
    from xrd_strain_plugin.physics import instrument

    step_scan = two_theta[1] - two_theta[0]
    need = min(instrument.fine_grid_step_deg(fwhm, t, r) for t in thickness_nm)
    step = step_scan / max(1, math.ceil(step_scan / need - 1e-9))
    span = two_theta[-1] - two_theta[0] + 2 * instrument._KERNEL_HALF_WIDTH["gaussian"] * fwhm
    darwin = 2 * math.degrees(r.darwin_width_symmetric())
    n_sub = max(1, math.ceil(step * instrument._SUB_PER_DARWIN / darwin))
    n_win = math.ceil(2 * instrument._WINDOW_DARWIN * darwin / step) + 1
    return int(span / step) + 1 + (n_sub * n_win if n_sub > 1 else 0)


def _best_seconds(fn, repeat=3):
    fn()  # warm-up (compilation, caches)
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _kernel_rates(r, rng, n_batch, n_points, n_slices, span_deg, e_max):
    """Point-lamellae per second, one thread: textbook, array path, fused kernel (whole call and the
    kernel alone), for one batch shape. Returns (rates dict in M/s, lamellae after sub-slicing)."""
    from xrd_strain_plugin.physics import dynamical

    th_b = r.theta_bragg
    theta = np.linspace(th_b - math.radians(span_deg), th_b + math.radians(0.15), n_points)
    e, dw = profiles(rng, n_batch, n_slices, e_max)
    t = rng.uniform(100, 1000, n_batch)
    captured = {}
    real_run = dynamical._run_fused

    def spy(*a):
        captured["args"] = a
        return real_run(*a)

    dynamical._run_fused = spy
    try:
        reflectivity(theta, e, dw, t, r)
    finally:
        dynamical._run_fused = real_run
    n_lam = captured["args"][2][0].shape[-1]
    work = n_batch * n_points * n_lam / 1e6
    out = {
        "textbook": n_batch
        * n_points
        * n_slices
        / 1e6
        / _best_seconds(lambda: bartels_baseline(theta, e, dw, t, r), repeat=1),
        "array": work / _best_seconds(lambda: reflectivity(theta, e, dw, t, r, engine="array")),
        "compiled": work / _best_seconds(lambda: reflectivity(theta, e, dw, t, r, engine="compiled")),
        "kernel": work / _best_seconds(lambda: real_run(*captured["args"])),
    }
    return out, n_lam


def _kernel_section(r, rng):
    rows = [
        ("the paper's settings: 64 curves x 500 angles x 500 lamellae, e_max <= 8 %", 64, 500, 500, 3.5, 0.08),
        ("the issue's batch: 32 curves x 600 angles x 200 lamellae", 32, 600, 200, 3.5, 0.08),
        ("a refinement's Jacobian: 25 rows x 2000 fine-grid angles x 120 lamellae", 25, 2000, 120, 1.5, 0.03),
        ("one curve: 1 x 2000 angles x 120 lamellae (a screening / live call)", 1, 2000, 120, 1.5, 0.03),
    ]
    lines = [
        "## Simulator kernel, one thread (issue 15): point-lamellae per second",
        "",
        "M point-lamellae/s = curves x angles x lamellae (after sub-slicing) / s. Textbook: the Bartels",
        "recursion in numpy (one complex sqrt + two complex exp per step, counted on its own lamellae).",
        "'compiled, whole call' includes the per-point and per-lamella set-up in numpy; 'kernel alone' is",
        "the fused loop only.",
        "",
        "| batch | textbook numpy | array path | compiled, whole call | kernel alone | whole call / textbook |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, nb, npt, nsl, span, emax in rows:
        rt, n_lam = _kernel_rates(r, rng, nb, npt, nsl, span, emax)
        lines.append(
            f"| {label} ({n_lam} after sub-slicing) | {rt['textbook']:.1f} | {rt['array']:.1f} | "
            f"{rt['compiled']:.1f} | {rt['kernel']:.1f} | {rt['compiled'] / rt['textbook']:.1f}x |"
        )
    if numba is not None:  # threads: a large batch split over the cores
        th_b = r.theta_bragg
        theta = np.linspace(th_b - math.radians(3.5), th_b + math.radians(0.15), 500)
        e, dw = profiles(rng, 128, 500)
        t = rng.uniform(100, 1000, 128)
        one = _best_seconds(lambda: reflectivity(theta, e, dw, t, r, threads=1))
        numba.set_num_threads(os.cpu_count() or 1)
        many = _best_seconds(lambda: reflectivity(theta, e, dw, t, r, threads=None))
        numba.set_num_threads(1)
        lines += [
            "",
            f"Threads (128 curves x 500 x 500): threads=None on {os.cpu_count()} cores runs "
            f"{one / many:.2f}x the single-thread call (load average {os.getloadavg()[0]:.1f}).",
        ]
    return lines + [""]


def _instrument_section(r, rng):
    """Where the forward model's time goes: the kernel vs everything around it (fine grid, Darwin
    window, set-up, convolution, sampling)."""
    import cProfile
    import pstats

    two_theta = np.arange(r.two_theta_bragg_deg - 2.2, r.two_theta_bragg_deg + 0.2, 0.005)
    e, dw = profiles(rng, 16, 200, 0.015)
    t = rng.uniform(100, 1000, 16)
    fn = lambda: simulate_scan(two_theta, e, dw, t, r, resolution_fwhm_deg=0.02)
    total = _best_seconds(fn)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        fn()
    prof.disable()
    st = pstats.Stats(prof)
    by_name = {}
    for (file, _line, name), (_cc, _nc, tt, ct, _callers) in st.stats.items():
        by_name[name] = by_name.get(name, 0.0) + ct / 3
    kernel = by_name.get("_run_fused", 0.0)
    refl = by_name.get("reflectivity", 0.0)
    lines = [
        "## The instrument layer around the kernel (simulate_scan, 16 curves, 480 scan points, "
        "FWHM 0.02 deg, 200 lamellae)",
        "",
        "| part | ms per batch | share |",
        "| --- | --- | --- |",
        f"| whole `simulate_scan` | {1e3 * total:.1f} | 100 % |",
        f"| `reflectivity` (set-up + kernel) | {1e3 * refl:.1f} | {refl / total:.0%} |",
        f"| of which the fused kernel call (packing + loop) | {1e3 * kernel:.1f} | {kernel / total:.0%} |",
        f"| outside `reflectivity` (fine grid, Darwin window, convolution, sampling) | "
        f"{1e3 * (total - refl):.1f} | {(total - refl) / total:.0%} |",
        "",
    ]
    return lines


def machine():
    cpu = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, load average {load:.1f} at start"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="also write the markdown report to this file")
    p.add_argument("--batch", type=int, default=64, help="curves per call at the paper's settings (default 64)")
    args = p.parse_args(argv)
    r = make_reflection()
    rng = np.random.default_rng(0)
    th_b = r.theta_bragg
    theta = np.linspace(th_b - math.radians(3.5), th_b + math.radians(0.3), 500)
    lines = [
        f"Machine: {machine()}",
        "",
        "Command: `.venv/bin/python benchmarks/bench_simulator.py --out docs/bench_simulator.md`",
        "",
    ]

    lines += _kernel_section(r, rng)
    lines += _instrument_section(r, rng)
    b = args.batch
    e, dw = profiles(rng, b, 500)
    t = rng.uniform(100, 1000, b)

    two_theta = np.arange(r.two_theta_bragg_deg - 3.6, r.two_theta_bragg_deg + 0.2, 0.005)[:760]
    fwhm = rng.uniform(0.003, 0.1, b)
    e4 = e * 0.45  # keep every layer peak inside the scan (e_max <= 3.6 %)
    full = rate(lambda: simulate_scan(two_theta, e4, dw, t, r, resolution_fwhm_deg=fwhm), b)
    fwhm_w = rng.uniform(0.02, 0.1, b)
    full_w = rate(lambda: simulate_scan(two_theta, e4, dw, t, r, resolution_fwhm_deg=fwhm_w), b)
    lines += [
        "## Full forward model (fine grid + Darwin window + convolution), 760 scan points at 0.005 deg",
        "",
        "The reflectivity is computed on a grid of 8 points per resolution FWHM and 4 per thickness fringe,",
        "plus a 16-points-per-Darwin-width window on the substrate peak, so narrow resolutions cost more.",
        "",
        "| resolution FWHM | computed angles per curve | curves/s per core |",
        "| --- | --- | --- |",
        f"| uniform in 0.003-0.1 deg, one batch (the narrowest sets the grid) | - | {full:.1f} |",
        f"| uniform in 0.02-0.1 deg, one batch | - | {full_w:.1f} |",
    ]
    for h in (0.003, 0.01, 0.03, 0.1):
        n_ang = _computed_angles(two_theta, h, t, r)
        lines.append(
            f"| {h} deg (t 100-1000 nm) | {n_ang} | "
            f"{rate(lambda: simulate_scan(two_theta, e4, dw, t, r, resolution_fwhm_deg=h), b):.1f} |"
        )
    lines.append("")

    lines += [
        "## Scaling (the default engine; curves/s per core)",
        "",
        "| varied | value | curves/s |",
        "| --- | --- | --- |",
    ]
    for nb in (1, 8, 64, 256):
        e_, dw_ = profiles(rng, nb, 500)
        lines.append(
            f"| batch size | {nb} | {rate(lambda: reflectivity(theta, e_, dw_, rng.uniform(100, 1000, nb), r), nb):.1f} |"
        )
    for nl in (100, 250, 500, 1000):
        e_, dw_ = profiles(rng, 64, nl)
        lines.append(f"| lamellae | {nl} | {rate(lambda: reflectivity(theta, e_, dw_, t, r), 64):.1f} |")
    for npts in (250, 500, 1000):
        th_ = np.linspace(theta[0], theta[-1], npts)
        lines.append(f"| angles | {npts} | {rate(lambda: reflectivity(th_, e, dw, t, r), b):.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
