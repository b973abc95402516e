"""The issue-17 redesign side by side: the same work on the code before it and after it.

    .venv/bin/python benchmarks/bench_redesign.py [--before REV] [--after REV] [--rounds N]

Each side runs in its own subprocess on ``git archive`` of the package at its revision, rounds alternating so that a change of machine load hits both alike. Measured, in
process CPU seconds: ``simulate_scan`` of 64 curves (290 points, 200 lamellae), ``Inverter.invert`` of
the real YSZ 400 curve (shipped model, numpy runtime; min and median of 40 calls) and
``refine_curve`` of it from the network's start (the engine's default budget). The answers are
printed too: the redesign moved code, so sigma_I and the refinement's path must not change.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / ".." / "shared" / "data" / "ysz_400_irradiated.xy"
BEFORE = "c4336cf"  # the last commit before the redesign's physics floor (issue 17)

CHILD = r"""
import json, sys, time
import numpy as np
from xrd_strain_plugin.io import read_curve
from xrd_strain_plugin.physics.instrument import simulate_scan
try:
    from xrd_strain_plugin.physics.materials import make_reflection
except ImportError:  # revisions before the rename (issue 17)
    from xrd_strain_plugin.physics.materials import reflection as make_reflection
from xrd_strain_plugin.inference import Inverter, default_bundle_path
from xrd_strain_plugin.refinement import refine_curve

r = make_reflection("YSZ", (4, 0, 0), 1.5406)
rng = np.random.default_rng(1)
tt = np.arange(71.0, 73.9, 0.01)
e = 0.02 * np.linspace(1, 0, 200)[None, :] * rng.uniform(0.1, 1, (64, 1))
dw, t, f = np.exp(-30 * e), rng.uniform(100, 800, 64), rng.uniform(0.005, 0.05, 64)
simulate_scan(tt, e, dw, t, r, resolution_fwhm_deg=f)
sim = []
for _ in range(5):
    t0 = time.process_time(); simulate_scan(tt, e, dw, t, r, resolution_fwhm_deg=f); sim.append(time.process_time() - t0)
inv = Inverter(default_bundle_path())
two_theta, counts = read_curve(sys.argv[1])
net = inv.invert(two_theta, counts, r)
times = []
for _ in range(40):
    t0 = time.process_time(); net = inv.invert(two_theta, counts, r); times.append(time.process_time() - t0)
ref = refine_curve(two_theta, counts, r, start=net)
print(json.dumps({"simulate_s": min(sim), "invert_min_s": min(times), "invert_median_s": float(np.median(times)),
                  "network_sigma_i": net.sigma_i, "refine_cpu_s": ref.cpu_s, "refined_sigma_i": ref.sigma_i,
                  "path": ref.path}))
"""


def _package(rev: str, into: Path) -> Path:
    """The package (and its shipped model) at ``rev`` under ``into``."""
    into.mkdir(parents=True)
    archive = into / "pkg.tar"
    subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), rev, "xrd_strain_plugin"], check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def _side(path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(path))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(REAL)], capture_output=True, text=True, env=env, check=True, cwd=path
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE, help="revision before the redesign (default: %(default)s)")
    parser.add_argument("--after", default="HEAD", help="revision after it (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per side (default: %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            "before": _package(args.before, Path(tmp) / "before"),
            "after": _package(args.after, Path(tmp) / "after"),
        }
        runs = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, path in sides.items():
                runs[name].append(_side(path))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; before = {args.before}, after = {args.after}\n")
    print(
        "| side | simulate_scan 64 curves, CPU s (min of 5) | invert, CPU ms (min / median of 40) | "
        "refine_curve, CPU s | network sigma_I | refined sigma_I, path |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, results in runs.items():
        for res in results:
            print(
                f"| {name} | {res['simulate_s']:.3f} | {1e3 * res['invert_min_s']:.1f} / "
                f"{1e3 * res['invert_median_s']:.1f} | {res['refine_cpu_s']:.2f} | {res['network_sigma_i']:.4f} | "
                f"{res['refined_sigma_i']:.4f}, {res['path']} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
