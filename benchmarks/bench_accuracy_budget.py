"""Accuracy at a fixed training budget: network variants side by side on the same data (issue 9).

Each variant trains for the same wall-clock budget on the first ``--curves`` curves of a training
set, then is evaluated on the first ``--test-curves`` curves of a held-out test set. One markdown
row per variant: epochs, samples seen, samples/s, CPU seconds (this process), MSE and accuracies,
with the load average (the machine is shared).

Usage::

    .venv/bin/python benchmarks/bench_accuracy_budget.py TRAIN_DIR TEST_DIR --minutes 3 \\
        [--curves 30000] [--variants paper lean ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {
    "paper": dict(),
    "paper-pool2": dict(input_pool=2),
    "lean": dict(filters=(8, 16, 32, 64)),
    "lean-pool2": dict(filters=(8, 16, 32, 64), input_pool=2),
    "lean-pool2-d500": dict(filters=(8, 16, 32, 64), dense_units=(500, 100), input_pool=2),
}


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", help="training set directory")
    parser.add_argument("test", help="held-out test set directory")
    parser.add_argument("--minutes", type=float, default=3.0, help="budget per variant")
    parser.add_argument("--curves", type=int, default=30000, help="training curves used")
    parser.add_argument("--test-curves", type=int, default=2000, help="test curves used")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="/tmp/bench_accuracy_budget", help="run directories")
    args = parser.parse_args()

    from xrd_strain_training.dataset import load_dataset
    from xrd_strain_training.evaluate import evaluate_predictions
    from xrd_strain_training.train import TrainConfig, train

    data = load_dataset(args.train, max_curves=args.curves)
    test = load_dataset(args.test, max_curves=args.test_curves)
    print(
        f"train {data.n} curves ({data.manifest['preset']['name']}), test {test.n} "
        f"({test.manifest['preset']['name']}), {args.minutes} min per variant\n"
    )
    print(
        "| variant | epochs | samples seen | samples/s | CPU s | test MSE | a(t) | a(e_max) | "
        "a(DW) | a(H) | a(DR) | a(strain) | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for name in args.variants:
        config = TrainConfig(
            max_minutes=args.minutes, epochs=1000, batch_size=args.batch_size, final_anneal=0.75, **VARIANTS[name]
        )
        run = Path(args.out) / f"{name}-{data.n}-{args.minutes:g}min"
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        result = train(data, run, config, verbose=0)
        cpu, wall = _cpu_seconds() - cpu0, time.perf_counter() - t0
        import numpy as np

        scaled = np.asarray(result.model(test.x[..., None], training=False))
        pred = result.scaling.unscale(scaled)
        ev = evaluate_predictions(
            test.labels, pred, scaling=result.scaling, n_weights=10, n_slices=data.manifest["preset"]["n_slices"]
        )
        epochs = len(result.history["loss"])
        seen = epochs * result.state["n_train"]
        a = ev.accuracies
        print(
            f"| {name} | {epochs} | {seen} | {seen / sum(result.history['seconds']):.0f} | "
            f"{cpu:.0f} | {ev.mse:.2e} | {100 * a['a_t']:.0f} % | {100 * a['a_emax']:.0f} % | "
            f"{100 * a['a_dw']:.0f} % | {100 * a['a_h']:.0f} % | {100 * a['a_dr']:.0f} % | "
            f"{100 * a['a_strain']:.0f} % | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )
        (run / "bench.json").write_text(
            json.dumps(
                {"variant": name, "wall_s": wall, "cpu_s": cpu, "accuracies": a, "mse": ev.mse, "epochs": epochs},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
