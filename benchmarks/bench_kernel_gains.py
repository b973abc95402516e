"""What the fused simulator kernel buys the refinement (issue 15), side by side in one run.

The same work on the real YSZ 400 curve with the array reference path and with the fused kernel
(``engine="auto"`` falls back to the array path when the kernel is switched off), one thread:

- ``refine_curve`` from the shipped network's start, default options: CPU seconds per curve;
- the global stage alone (differential evolution, 5 generations, its whole population one batched
  call per generation): generations per CPU second;
- a batched finite-difference Jacobian of the full model (the local fits' unit of work): per CPU second.

Run:  nice .venv/bin/python benchmarks/bench_kernel_gains.py [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "ysz_400_irradiated.xy"


def _cpu(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="also write the markdown table here")
    args = p.parse_args(argv)
    from xrd_strain_plugin.inference import Inverter, default_bundle_path
    from xrd_strain_plugin.io import read_curve
    from xrd_strain_plugin.physics import dynamical
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.refinement import CurveModel, RefineOptions, refine_curve
    from xrd_strain_plugin.refinement import refine as stages
    from xrd_strain_plugin.refinement.fitter import Budget, fit_local
    from xrd_strain_plugin.refinement.objective import Objective

    tt, counts = read_curve(REAL)
    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    net = Inverter(default_bundle_path()).invert(tt, counts, refl)
    have = dynamical.HAVE_NUMBA
    rows = {}
    for kernel in (False, True):
        dynamical.HAVE_NUMBA = kernel and have
        refine_curve(tt, counts, refl, start=net)  # warm-up (compilation, caches)
        result = {}
        result["refine"] = _cpu(lambda: result.setdefault("r", refine_curve(tt, counts, refl, start=net)))
        objective = Objective.from_data(tt, counts)
        model = CurveModel(refl, tt)
        best = fit_local(
            model, objective, stages._start_values(model, stages.StartProfile.from_inversion(net)), max_nfev=3
        )
        opts = replace(RefineOptions(), global_generations=5)
        result["global"] = 5 / _cpu(
            lambda: stages._global_stage(model, objective, best, opts, Budget(600), 0.006, 0.01)
        )
        v = np.array([p.value for p in best.parameters])
        jac_rows = np.repeat(v[None, :], 20, axis=0)
        step, pad = model.grid_for(v)
        result["jacobian"] = 1 / _cpu(lambda: model.reflectivity(jac_rows, fine_step_deg=step, pad_deg=pad), repeat=3)
        rows["fused kernel" if kernel else "array path"] = result
    dynamical.HAVE_NUMBA = have
    a, f = rows["array path"], rows["fused kernel"]
    load = os.getloadavg()[0]
    lines = [
        f"Real YSZ 400 curve ({tt.size} points), one thread, load average {load:.1f} at the end; "
        f"command `nice .venv/bin/python benchmarks/bench_kernel_gains.py`.",
        "",
        "| work | array path | fused kernel | ratio |",
        "| --- | --- | --- | --- |",
        f"| `refine_curve` from the network's start, default options (CPU s per curve) | {a['refine']:.1f} | "
        f"{f['refine']:.1f} | {a['refine'] / f['refine']:.1f}x |",
        f"| global stage: differential-evolution generations per CPU s | {a['global']:.2f} | {f['global']:.2f} | "
        f"{f['global'] / a['global']:.1f}x |",
        f"| 20-row batched Jacobian of the full model, per CPU s | {a['jacobian']:.1f} | {f['jacobian']:.1f} | "
        f"{f['jacobian'] / a['jacobian']:.1f}x |",
        "",
        f"Same answer both ways: sigma_I {a['r'].sigma_i:.4f} (array) vs {f['r'].sigma_i:.4f} (kernel).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
