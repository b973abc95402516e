"""Batch inference per curve on one core, and the network of one curve, for model bundles
(numpy runtime; issue 14). Not a test; run it pinned to one core for the one-core figure::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 0 .venv/bin/python \\
        benchmarks/bench_inference_speed.py BUNDLE [BUNDLE ...]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from xrd_strain_plugin.inference import load_bundle
    from xrd_strain_plugin.inference.predictor import Predictor

    print("| bundle | runtime | parameters | batch of 5 000: us/curve | one curve: ms | load |")
    print("|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        bundle = load_bundle(path)
        predictor = Predictor(bundle)
        x = np.random.default_rng(1).normal(-3, 1, size=(5000, bundle.card.grid.n_points)).astype("float32")
        predictor.predict_proposals(x[:256])
        t0 = time.perf_counter()
        predictor.predict_proposals(x)
        batch_us = (time.perf_counter() - t0) / x.shape[0] * 1e6
        for _ in range(3):
            predictor.predict_proposals(x[:1])
        t0 = time.perf_counter()
        for _ in range(50):
            predictor.predict_proposals(x[:1])
        one_ms = (time.perf_counter() - t0) / 50 * 1e3
        n_params = bundle.card.training.get("n_params", "-")
        print(
            f"| {path} | {bundle.runtime} | {n_params} | {batch_us:.0f} | {one_ms:.2f} | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
