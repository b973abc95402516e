"""Refinement: Jacobian throughput, time by path, the real YSZ curve, another crystal, held-out accuracy.

Sections (``--sections``):

- ``jacobian``  forward-model evaluations per second inside a Jacobian: one batched call of k curves
                against k calls of one curve, side by side in one run (the real YSZ curve's grid).
- ``paths``     CPU and wall seconds per refinement by path (local / multi-start / global) on simulated
                curves with known truth.
- ``real``      ../shared/data/ysz_400_irradiated.xy: sigma_I of the network alone and refined, the
                refinement's time and the wall time of the whole ``xrd-strain invert --refine`` command.
- ``sic``       SiC-3C 400 at 1.5498 A with a known profile and Poisson counts, through the YSZ-trained
                network (``invert --refine``): recovered profile against the truth, sigma_I against the
                noise floor; figure docs/figures/refine_sic.png.
- ``heldout``   N curves drawn with the paper's published recipe (CNN2 ranges, preset CNN2-PAPER, its own
                seed: never used for training), exact physics and Poisson counts: a(strain), a(e_max), a(t)
                of the network alone and after refinement, median and 95th percentile refinement time.
                Per-curve rows are appended to a JSON-lines file, so an interrupted run resumes.

Run:  nice .venv/bin/python benchmarks/bench_refinement.py --sections jacobian paths real sic heldout \
          --heldout 200 --out docs/bench_refinement.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / ".." / "shared" / "data" / "ysz_400_irradiated.xy"


def _load():
    return os.getloadavg()[0]


def _machine():
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


# ---------------------------------------------------------------------------------------------------------
def section_jacobian(lines):
    from xrd_strain_plugin.io import read_curve
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.refinement import CurveModel, ModelConfig

    tt, _ = read_curve(REAL)
    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    model = CurveModel(refl, tt, ModelConfig())
    params = model.default_parameters(
        strain_weights_percent=np.linspace(0.6, 0.05, 10), thickness_nm=200.0, fwhm_deg=0.025, eta=0.007
    )
    v = np.array([p.value for p in params])
    step, pad = model.grid_for(v)
    n_cols = sum(1 for p in params if p.vary and p.name not in ("log10_scale", "log10_background", "background_slope"))
    rows = np.repeat(v[None, :], n_cols, axis=0)
    rows[np.arange(n_cols), np.arange(n_cols)] += 1e-3
    model.reflectivity(rows[:2], fine_step_deg=step, pad_deg=pad)  # warm-up
    load0 = _load()
    reps = 5
    t_batch = t_single = 0.0
    for _ in range(reps):  # interleaved, so both see the same load
        t0 = time.perf_counter()
        model.reflectivity(rows, fine_step_deg=step, pad_deg=pad)
        t_batch += time.perf_counter() - t0
        t0 = time.perf_counter()
        for r in rows:
            model.reflectivity(r, fine_step_deg=step, pad_deg=pad)
        t_single += time.perf_counter() - t0
    per_s_batch = reps * n_cols / t_batch
    per_s_single = reps * n_cols / t_single
    lines += [
        "## Forward evaluations inside a Jacobian (batched vs one at a time)",
        "",
        f"Real YSZ curve (501 points, 0.002 deg), 120 lamellae, fine step {step:.4f} deg, a Jacobian of "
        f"{n_cols} simulated columns; {reps} repetitions interleaved; load {load0:.1f} at start.",
        "",
        "| Jacobian columns computed as | curves/s | ms per Jacobian | ratio |",
        "| --- | --- | --- | --- |",
        f"| one batched call of {n_cols} curves | {per_s_batch:.0f} | {1e3 * t_batch / reps:.0f} | "
        f"{per_s_batch / per_s_single:.2f}x |",
        f"| {n_cols} calls of one curve | {per_s_single:.0f} | {1e3 * t_single / reps:.0f} | 1x |",
        "",
    ]


# ---------------------------------------------------------------------------------------------------------
def _sample(refl, *, seed, thickness_nm, e_max, fwhm_deg=0.02):
    from xrd_strain_plugin.physics.instrument import apply_counts, simulate_scan

    z = (np.arange(200) + 0.5) / 200
    strain = e_max * np.exp(-0.5 * ((z - 0.35) / 0.25) ** 2) * np.clip(1.3 * (1 - z), 0, 1)
    strain *= e_max / strain.max()
    dw = np.exp(np.log(0.5) * (strain / e_max) ** 2)
    reach = 2 * math.degrees(e_max * math.tan(refl.theta_bragg)) + 0.35
    tt = np.arange(refl.two_theta_bragg_deg - reach, refl.two_theta_bragg_deg + 0.3, 0.004)
    curve = simulate_scan(
        tt, strain, dw, thickness_nm, refl, resolution_fwhm_deg=fwhm_deg, shape="pseudo-voigt", eta=0.01
    )
    counts = apply_counts(curve, scale=2e5, background=2.0, rng=np.random.default_rng(seed))[0]
    return tt, counts, z * thickness_nm, 100 * strain, dw


def section_paths(lines):
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.refinement import RefineOptions, StartProfile, refine_curve

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    cases = []
    for seed, (t_nm, e) in enumerate(((220.0, 0.008), (450.0, 0.012), (120.0, 0.02))):
        tt, counts, depth, strain_pct, dw = _sample(refl, seed=seed, thickness_nm=t_nm, e_max=e)
        good = StartProfile(depth_nm=depth * 1.1, strain_percent=strain_pct * 0.9, debye_waller=dw, fwhm_deg=0.025)
        bad = StartProfile(
            depth_nm=np.linspace(0, 900, 50),
            strain_percent=np.full(50, 0.15),
            debye_waller=np.full(50, 0.9),
            fwhm_deg=0.05,
        )
        cases.append((tt, counts, good, bad))
    runs = {
        "local (good start, no other starts)": lambda c: refine_curve(
            c[0], c[1], refl, start=c[2], options=RefineOptions(global_budget_s=0.0)
        ),
        "multi-start (default: good start + variants + generic starts)": lambda c: refine_curve(
            c[0], c[1], refl, start=c[2]
        ),
        "global (poor start, no other starts)": lambda c: refine_curve(
            c[0], c[1], refl, start=c[3], options=RefineOptions(budget_s=1.0)
        ),
    }
    load0 = _load()
    lines += [
        "## Time per refinement by path",
        "",
        f"Three simulated YSZ 400 curves with known truth (t 220/450/120 nm, e_max 0.8/1.2/2 %, Poisson "
        f"counts, scale 2e5); default budget caps (6 s local, 12 s global, CPU seconds); load {load0:.1f} at start.",
        "",
        "| path asked for | path that won | CPU s (mean) | wall s (mean) | sigma_I / noise floor (mean) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, run in runs.items():
        results = [run(c) for c in cases]
        won = ", ".join(sorted({r.path for r in results}))
        lines.append(
            f"| {name} | {won} | {np.mean([r.cpu_s for r in results]):.2f} | "
            f"{np.mean([r.elapsed_s for r in results]):.2f} | "
            f"{np.mean([r.sigma_i / r.noise_floor_sigma_i for r in results]):.2f} |"
        )
    lines.append("")


# ---------------------------------------------------------------------------------------------------------
def section_real(lines):
    from xrd_strain_plugin.inference import Inverter
    from xrd_strain_plugin.inference.registry import ModelKey, ModelRegistry
    from xrd_strain_plugin.io import read_curve
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.refinement import refine_curve

    tt, counts = read_curve(REAL)
    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    entry = ModelRegistry().current(ModelKey(material="YSZ", hkl=(4, 0, 0), wavelength_angstrom=1.5406))
    inverter = Inverter(entry.path)
    net = inverter.invert(tt, counts, refl)
    load0 = _load()
    refined = [refine_curve(tt, counts, refl, start=net) for _ in range(3)]
    out = ROOT / "out" / "bench_refine_real"
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "xrd_strain_plugin.cli",
            "invert",
            str(REAL),
            "--material",
            "YSZ",
            "--hkl",
            "4",
            "0",
            "0",
            "--wavelength-angstrom",
            "1.5406",
            "--refine",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    summary = json.loads((out / "ysz_400_irradiated" / "result.json").read_text())
    r = refined[0]
    lines += [
        "## The real YSZ curve",
        "",
        f"`{REAL.name}` (RaDMaX example data), model {entry.ref}; load {load0:.1f} at start.",
        "",
        "| | sigma_I |",
        "| --- | --- |",
        f"| network alone | {net.sigma_i:.3f} |",
        f"| refined (3 runs: path {', '.join(x.path for x in refined)}) | "
        f"{', '.join(f'{x.sigma_i:.3f}' for x in refined)} |",
        f"| counting-noise floor | {r.noise_floor_sigma_i:.3f} |",
        "| paper: network / automated network + LSQ / expert + LSQ | 0.35-0.37 / 0.12-0.17 / 0.06-0.12 |",
        "",
        f"Refinement: {np.mean([x.cpu_s for x in refined]):.2f} CPU s, "
        f"{np.mean([x.elapsed_s for x in refined]):.2f} wall s (mean of 3), {r.n_curves} curves simulated. "
        f"Whole command `xrd-strain invert ... --refine` (fresh process: imports, model, network, refinement, "
        f"files, figure): {wall:.1f} s wall, sigma_I {summary['sigma_i']:.3f}.",
        f"Refined: e_max {r.strain_max_percent:.2f} % at {r.depth_of_max_nm:.0f} nm, t {r.thickness_nm:.0f} nm, "
        f"DW_min {r.dw_min:.2f}, 2theta offset {r.values['zero_offset_deg']:.4f} deg, FWHM "
        f"{r.values['fwhm_deg']:.4f} deg, eta {r.values['eta']:.4f}.",
        "",
    ]


# ---------------------------------------------------------------------------------------------------------
def section_sic(lines):
    from xrd_strain_plugin.io import write_curve
    from xrd_strain_plugin.physics.materials import make_reflection

    sic = make_reflection("SiC-3C", (4, 0, 0), 1.5498)
    tt, counts, depth, strain_pct, dw = _sample(sic, seed=11, thickness_nm=260.0, e_max=0.011)
    work = ROOT / "out" / "bench_refine_sic"
    work.mkdir(parents=True, exist_ok=True)
    write_curve(work / "sic_400.csv", tt, counts)
    load0 = _load()
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "xrd_strain_plugin.cli",
            "invert",
            str(work / "sic_400.csv"),
            "--material",
            "SiC-3C",
            "--hkl",
            "4",
            "0",
            "0",
            "--wavelength-angstrom",
            "1.5498",
            "--refine",
            "--out",
            str(work),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    s = json.loads((work / "sic_400" / "result.json").read_text())
    prof = np.loadtxt(work / "sic_400" / "profile.csv", delimiter=",", skiprows=1)
    net = np.loadtxt(work / "sic_400" / "profile_network.csv", delimiter=",", skiprows=1)
    grid = np.linspace(0, max(prof[-1, 0], depth[-1]), 400)
    err = lambda p: float(
        np.sqrt(
            np.mean((np.interp(grid, p[:, 0], p[:, 1], right=0) - np.interp(grid, depth, strain_pct, right=0)) ** 2)
        )
        / strain_pct.max()
    )
    _sic_figure(depth, strain_pct, dw, net, prof, tt, counts, work / "sic_400" / "curve.csv")
    lines += [
        "## Another crystal and wavelength: SiC-3C 400 at 1.5498 A through the YSZ network",
        "",
        f"Known profile (t 260 nm, e_max 1.1 %, coupled DW, DW_min 0.5), pseudo-Voigt 0.02 deg, Poisson counts "
        f"(scale 2e5, background 2); `xrd-strain invert sic_400.csv --material SiC-3C --hkl 4 0 0 "
        f"--wavelength-angstrom 1.5498 --refine`; load {load0:.1f}.",
        "",
        "| | e_max (%) | t (nm) | profile rms error / e_max | sigma_I |",
        "| --- | --- | --- | --- | --- |",
        f"| truth | {strain_pct.max():.2f} | 260 | 0 | noise floor {s['refinement']['noise_floor_sigma_i']:.3f} |",
        f"| YSZ network, transferred (start) | {s['network']['strain_max_percent']:.2f} | "
        f"{s['network']['thickness_nm']:.0f} | {err(net):.3f} | {s['network']['sigma_i']:.3f} |",
        f"| refined ({s['refinement']['path']}) | {s['strain_max_percent']:.2f} | {s['thickness_nm']:.0f} | "
        f"{err(prof):.3f} | {s['sigma_i']:.3f} |",
        "",
        f"Whole command {wall:.1f} s wall. Figure: docs/figures/refine_sic.png.",
        "",
    ]


def _sic_figure(depth, strain_pct, dw, net, prof, tt, counts, curve_csv):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = np.loadtxt(curve_csv, delimiter=",", skiprows=1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    a.semilogy(tt, counts, ".", ms=2, color="k", label="simulated SiC-3C 400 (Poisson)")
    a.semilogy(c[:, 0], c[:, 3], color="0.6", lw=0.8, label="YSZ network, transferred start")
    a.semilogy(c[:, 0], c[:, 2], color="C3", label="refined")
    a.set_xlabel("2theta (deg)")
    a.legend(fontsize=8)
    b.plot(depth, strain_pct, "k", lw=2, label="truth")
    b.plot(net[:, 0], net[:, 1], "C0:", label="network (start)")
    b.plot(prof[:, 0], prof[:, 1], "C0", label="refined")
    b.set_xlabel("depth (nm)")
    b.set_ylabel("strain (%)")
    b.legend(fontsize=8)
    out = ROOT / "docs" / "figures" / "refine_sic.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
def _heldout_curves(n, seed):
    """Curves drawn with the paper's published recipe (xrd_strain_training.sampling, preset CNN2-PAPER)."""
    from xrd_strain_plugin.inference.labels import decode_labels
    from xrd_strain_plugin.physics.instrument import apply_counts, simulate_scan
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.physics.qspace import q_to_two_theta_deg
    from xrd_strain_training.presets import get_preset
    from xrd_strain_training.sampling import draw_parameters

    preset = get_preset("CNN2-PAPER")
    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    rng = np.random.default_rng(seed)
    draw = draw_parameters(rng, preset, n, two_theta_bragg_deg=refl.two_theta_bragg_deg)
    labels = np.column_stack(
        [draw.weights_percent, draw.dw_min, draw.thickness_nm, draw.resolution_fwhm_deg, np.zeros(n)]
    )
    truth = decode_labels(labels, n_weights=preset.n_weights, n_slices=preset.n_slices, clip=False)
    q_b, lam, step = refl.q_bragg_inv_angstrom, refl.wavelength_angstrom, preset.step_deg
    for i in range(n):
        lo = math.floor(q_to_two_theta_deg(q_b / (1 + draw.strain_high[i]), lam) / step + 1e-9)
        hi = math.ceil(q_to_two_theta_deg(q_b / (1 + draw.strain_low[i]), lam) / step - 1e-9)
        tt = np.arange(lo, hi + 1) * step
        curve = simulate_scan(
            tt,
            truth.strain[i],
            truth.debye_waller[i],
            draw.thickness_nm[i],
            refl,
            resolution_fwhm_deg=draw.resolution_fwhm_deg[i],
            shape=preset.resolution_shape,
            eta=preset.resolution_eta,
        )
        counts = apply_counts(
            curve, scale=10 ** draw.log10_scale[i], background=10 ** draw.log10_background[i], rng=rng
        )[0]
        yield (
            i,
            tt,
            counts,
            {
                "strain": truth.strain[i],
                "thickness_nm": float(draw.thickness_nm[i]),
                "strain_max_percent": float(truth.strain_max_percent[i]),
            },
            refl,
        )


def _slices(depth_nm, strain_percent, thickness_nm, n=200):
    mid = (np.arange(n) + 0.5) / n * thickness_nm
    return np.interp(mid, depth_nm, strain_percent) / 100.0


def refine_options(text):
    """``RefineOptions`` from a JSON object of overrides (``search`` may be a dict of ``SearchOptions``)."""
    from xrd_strain_plugin.refinement import RefineOptions

    return RefineOptions.from_dict(json.loads(text or "{}"))


def _truth_hit(truth, depth_nm, strain_percent, thickness_nm):
    """The accuracy criteria of an answer: profile rms < 0.1 e_max and thickness within 10 %."""
    from xrd_strain_training.evaluate import profile_rms_error

    s = _slices(np.asarray(depth_nm), np.asarray(strain_percent), thickness_nm)
    rms = profile_rms_error(truth["strain"][None], np.array([truth["thickness_nm"]]), s[None], np.array([thickness_nm]))
    return bool(
        rms[0] / (truth["strain_max_percent"] / 100) < 0.1
        and abs(thickness_nm - truth["thickness_nm"]) < 0.1 * truth["thickness_nm"]
    )


def _answer_figures(truth, net, ref, ceil):
    """The per-curve figures of the network's answer, the refined one (with its alternatives, paths and
    CPU per stage) and the ceiling's, against the truth."""
    from xrd_strain_training.evaluate import profile_rms_error

    row = {}
    for tag, ans in (("net", net), ("ref", ref), ("ceil", ceil)):
        if ans is None:
            continue
        s = _slices(ans.depth_nm, ans.strain_percent, ans.thickness_nm)
        rms = profile_rms_error(
            truth["strain"][None], np.array([truth["thickness_nm"]]), s[None], np.array([ans.thickness_nm])
        )[0]
        row[f"{tag}_strain_err"] = float(rms / (truth["strain_max_percent"] / 100))
        row[f"{tag}_t_err"] = abs(ans.thickness_nm - truth["thickness_nm"]) / truth["thickness_nm"]
        row[f"{tag}_emax_err"] = abs(ans.strain_max_percent - truth["strain_max_percent"]) / truth["strain_max_percent"]
        row[f"{tag}_sigma_i"] = float(ans.sigma_i)
    row.update(
        ref_cpu_s=ref.cpu_s,
        ref_wall_s=ref.elapsed_s,
        ref_path=ref.path,
        ref_poor=ref.poor_fit,
        ref_floor=ref.noise_floor_sigma_i,
        ref_ambiguous=bool(getattr(ref, "ambiguous", False)),
        ref_layer=bool(getattr(ref, "layer_detected", True)),
        ref_n_alt=len(getattr(ref, "alternatives", ())),
    )
    # is the truth among the alternatives (each judged with the same criteria)?
    hits = [_truth_hit(truth, alt["depth_nm"], alt["strain_percent"], alt["thickness_nm"]) for alt in ref.alternatives]
    row["alt_strain_hit"] = any(hits)
    row["alt_rank"] = hits.index(True) + 1 if any(hits) else None
    row["alt_paths"] = [alt["path"] for alt in ref.alternatives]
    stage_cpu = {}
    for st in ref.stages:
        stage_cpu[st["stage"]] = stage_cpu.get(st["stage"], 0.0) + st.get("cpu_s", 0.0)
    row["stage_cpu_s"] = stage_cpu
    return row


def section_heldout(lines, n, seed, rows_path, ceiling_every=4, part=(0, 1), compute=True, options="{}"):
    import hashlib

    from xrd_strain_plugin.inference import Inverter
    from xrd_strain_plugin.inference.registry import ModelKey, ModelRegistry
    from xrd_strain_plugin.refinement import StartProfile, refine_curve

    entry = ModelRegistry().current(ModelKey(material="YSZ", hkl=(4, 0, 0), wavelength_angstrom=1.5406))
    inverter = Inverter(entry.path)
    code = hashlib.sha256(
        b"".join(p.read_bytes() for p in sorted((ROOT / "xrd_strain_plugin" / "refinement").glob("*.py")))
    ).hexdigest()[:12]
    rows_path = Path(rows_path)
    opts = refine_options(options)
    options = json.dumps(json.loads(options or "{}"), sort_keys=True)
    done = {}
    if rows_path.is_file():
        for line in rows_path.read_text().splitlines():
            row = json.loads(line)
            same = row.get("model") == entry.ref and row.get("seed") == seed and row.get("options", "{}") == options
            if same and (row.get("code") == code or not compute):
                done[row["index"]] = row
    load0 = _load()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = lambda x, **k: x
    with rows_path.open("a") as fh:
        for i, tt, counts, truth, refl in tqdm(_heldout_curves(n, seed), total=n, desc="held-out curves"):
            if not compute:
                break
            if i in done or i % part[1] != part[0]:
                continue
            row = {
                "index": i,
                "seed": seed,
                "model": entry.ref,
                "code": code,
                "options": options,
                "load": _load(),
                "thickness_true": truth["thickness_nm"],
                "emax_true": truth["strain_max_percent"],
            }
            try:
                net = inverter.invert(tt, counts, refl)
                ref = refine_curve(tt, counts, refl, start=net, options=opts)
                # the ceiling: the same refinement started from the true profile itself
                z = (np.arange(truth["strain"].size) + 0.5) / truth["strain"].size
                true_start = StartProfile(
                    depth_nm=z * truth["thickness_nm"],
                    strain_percent=100 * truth["strain"],
                    debye_waller=np.ones_like(z),
                    fwhm_deg=float(net.fwhm_deg),
                    source="truth",
                )
                ceil = (
                    refine_curve(tt, counts, refl, start=true_start, options=opts) if i % ceiling_every == 0 else None
                )
            except ValueError as error:
                row["error"] = str(error)
            else:
                row.update(_answer_figures(truth, net, ref, ceil))
            done[i] = row
            fh.write(json.dumps(row) + "\n")
            fh.flush()
    rows = [done[i] for i in sorted(done) if i < n and "error" not in done[i]]
    code = ", ".join(sorted({r.get("code", "?") for r in done.values()})) or code
    if not rows:
        lines += ["## Held-out curves: no rows yet", ""]
        return
    errors = [done[i] for i in sorted(done) if i < n and "error" in done[i]]
    acc = lambda key: 100 * np.mean([r[key] < 0.1 for r in rows if key in r])
    n_ceil = sum("ceil_t_err" in r for r in rows)
    cpu = np.array([r["ref_cpu_s"] for r in rows])
    wall = np.array([r["ref_wall_s"] for r in rows])
    paths = {p: sum(r["ref_path"] == p for r in rows) for p in sorted({r["ref_path"] for r in rows})}
    lines += [
        "## Held-out curves drawn with the paper's recipe (CNN2 ranges), network alone and refined",
        "",
        f"{len(rows)} curves (preset CNN2-PAPER, seed {seed}, exact physics, pseudo-Voigt eta 0.001, Poisson "
        f"counts; {len(errors)} refused as unusable input); model {entry.ref}; refinement code {code}, default "
        f"options; "
        f"load {load0:.1f} at start.",
        "",
        "| | a(t) | a(e_max) | a(strain) | median sigma_I |",
        "| --- | --- | --- | --- | --- |",
        f"| network alone | {acc('net_t_err'):.0f} % | {acc('net_emax_err'):.0f} % | {acc('net_strain_err'):.0f} % | "
        f"{np.median([r['net_sigma_i'] for r in rows]):.3f} |",
        f"| refined | {acc('ref_t_err'):.0f} % | {acc('ref_emax_err'):.0f} % | {acc('ref_strain_err'):.0f} % | "
        f"{np.median([r['ref_sigma_i'] for r in rows]):.3f} |",
        f"| refined from the true profile (ceiling at this noise; {n_ceil} curves) | {acc('ceil_t_err'):.0f} % | "
        f"{acc('ceil_emax_err'):.0f} % | {acc('ceil_strain_err'):.0f} % | "
        f"{np.median([r['ceil_sigma_i'] for r in rows if 'ceil_sigma_i' in r]):.3f} |",
        "| paper, CNN2 network | 91 % | 94 % | 82 % | |",
        "",
        f"Refinement time per curve: median {np.median(cpu):.2f} CPU s / {np.median(wall):.2f} wall s, 95th "
        f"percentile {np.percentile(cpu, 95):.2f} CPU s / {np.percentile(wall, 95):.2f} wall s. Paths that won: "
        + ", ".join(f"{k} {v}" for k, v in paths.items())
        + f"; flagged poor: {sum(r['ref_poor'] for r in rows)}. Median noise floor "
        f"{np.median([r['ref_floor'] for r in rows]):.3f}.",
        "",
    ]
    new = [r for r in rows if "ref_ambiguous" in r]
    if new:
        lines += _band_table(new)
        stages = sorted({k for r in new for k in r.get("stage_cpu_s", {})})
        if stages:
            lines += [
                "Median CPU s per stage (over the curves that ran it): "
                + ", ".join(
                    f"{k} {np.median([r['stage_cpu_s'][k] for r in new if k in r.get('stage_cpu_s', {})]):.2f}"
                    for k in stages
                )
                + f"; load average {min(r.get('load', np.nan) for r in new):.1f}-"
                f"{max(r.get('load', np.nan) for r in new):.1f} during the rows.",
                "",
            ]


BANDS = ((0.5, 1), (1, 2), (2, 4), (4, 8.01))


def _band_row(label, rows):
    """One line of the by-e_max table: accuracy, ambiguity, truth among alternatives, floor, CPU."""
    a = lambda key: 100 * np.mean([r[key] < 0.1 for r in rows])
    right = lambda r: r["ref_strain_err"] < 0.1 and r["ref_t_err"] < 0.1
    amb = [r for r in rows if r["ref_ambiguous"]]
    floor = [r["ref_sigma_i"] <= 1.2 * r["ref_floor"] for r in rows if r.get("ref_floor")]
    cpu = np.array([r["ref_cpu_s"] for r in rows])
    among = 100 * np.mean([r.get("alt_strain_hit", False) for r in amb]) if amb else float("nan")
    return (
        f"| {label} | {len(rows)} | {a('ref_strain_err'):.0f} % | {a('ref_emax_err'):.0f} % | {a('ref_t_err'):.0f} % | "
        f"{100 * np.mean([right(r) for r in rows]):.0f} % | "
        f"{100 * len(amb) / len(rows):.0f} % | {among:.0f} % | "
        f"{100 * np.mean([right(r) or r.get('alt_strain_hit', False) for r in rows]):.0f} % | "
        f"{100 * np.mean(floor) if floor else float('nan'):.0f} % | {np.median(cpu):.1f} | {np.percentile(cpu, 95):.1f} |"
    )


def _band_table(rows):
    """By band of the true e_max: a(strain), a(e_max), a(t); the answer right (strain and t); flagged
    ambiguous; of those, the truth among the alternatives; the answer or an alternative right; sigma_I
    within 1.2 x the noise floor; median and 95th-percentile CPU s."""
    out = [
        f"By true e_max ({len(rows)} curves with the search's fields). *right*: profile rms < 0.1 e_max and t "
        "within 10 %; *among alt.*: of the ambiguous curves, the truth (same criteria) among the returned "
        "alternatives; *answer or alt.*: the answer or one of its alternatives is right.",
        "",
        "| true e_max | n | a(strain) | a(e_max) | a(t) | right | ambiguous | among alt. | answer or alt. | "
        "<= 1.2 floor | CPU s median | CPU s 95th |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for lo, hi in BANDS:
        band = [r for r in rows if lo <= r["emax_true"] < hi]
        if band:
            out.append(_band_row(f"{lo}-{hi:g} %", band))
    out += [_band_row("all", rows), ""]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["jacobian", "paths", "real", "sic"],
        choices=["jacobian", "paths", "real", "sic", "heldout"],
        help="what to measure",
    )
    parser.add_argument("--heldout", type=int, default=200, help="held-out curves (section heldout)")
    parser.add_argument("--seed", type=int, default=20261130, help="seed of the held-out draw")
    parser.add_argument(
        "--ceiling-every",
        type=int,
        default=4,
        help="also refine from the true profile every K-th held-out curve (the ceiling)",
    )
    parser.add_argument(
        "--part",
        default="0/1",
        metavar="K/M",
        help="held-out curves i with i %% M == K only (run M processes side by side; they share --rows)",
    )
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="held-out table from the rows already in --rows, computing nothing new",
    )
    parser.add_argument(
        "--rows",
        default=str(ROOT / "out" / "bench_refinement_heldout.jsonl"),
        help="per-curve rows of the held-out section (appended; a rerun resumes)",
    )
    parser.add_argument(
        "--options",
        default="{}",
        help="RefineOptions overrides as JSON (held-out section), e.g. '{\"n_variant_fits\": 0}' for an ablation; "
        "rows are kept per options",
    )
    parser.add_argument("--out", default=None, help="write the markdown here (default: print)")
    args = parser.parse_args(argv)
    (ROOT / "out").mkdir(exist_ok=True)
    lines = [
        f"Machine: {_machine()}. Command: `{' '.join(['benchmarks/bench_refinement.py'] + (argv or sys.argv[1:]))}`. "
        f"Date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
    ]
    for name in args.sections:
        if name == "heldout":
            k, m = (int(x) for x in args.part.split("/"))
            section_heldout(
                lines,
                args.heldout,
                args.seed,
                args.rows,
                args.ceiling_every,
                (k, m),
                compute=not args.summary_only,
                options=args.options,
            )
        else:
            globals()[f"section_{name}"](lines)
        print("\n".join(lines), flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
