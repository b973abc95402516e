"""Speed of dataset generation, training, and inference (issue 3); not a test.

Usage::

    .venv/bin/python benchmarks/bench_training.py [--quick] [--bundle DIR]

Prints one markdown table row per figure, with the 1-minute load average at the time (the
machine is shared: compare figures taken at similar load only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _row(what, value, unit, note=""):
    print(f"| {what} | {value:.4g} {unit} | {os.getloadavg()[0]:.1f} | {note} |", flush=True)


def bench_generation(n: int) -> None:
    """Curves per second, one process: the v1 generator against the issue-9 levers, same draws,
    on the simulator's array reference path and on its fused kernel (issue 15), side by side."""
    from xrd_strain_plugin.physics import dynamical
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.physics.qspace import ModelGrid
    from xrd_strain_training.generate import simulate_batch
    from xrd_strain_training.presets import get_preset
    from xrd_strain_training.sampling import draw_parameters

    refl, grid = make_reflection(), ModelGrid(strain_min=-0.01, strain_max=0.10)
    two_theta_b = refl.two_theta_bragg_deg
    cases = (
        ("v1 generator (sub-batches of 16 on one padded axis)", "grouped", 1),
        ("each curve on its own grid, cache-sized calls", "per_curve", 1),
        ("same, 4 draws per intrinsic curve", "per_curve", 4),
    )
    have_numba = dynamical.HAVE_NUMBA
    for name in ("CNN2", "CNN2-PAPER", "CNN3-PAPER"):
        preset = get_preset(name)
        for (label, layout, k), kernel in [(c, False) for c in cases] + [(cases[-1], True)] * have_numba:
            dynamical.HAVE_NUMBA = kernel  # engine="auto": the fused kernel, or the array path without it
            label = f"{label}, {'fused kernel' if kernel else 'array path'}"
            rng = np.random.default_rng(0)
            warm = draw_parameters(rng, preset, 8, two_theta_bragg_deg=two_theta_b, per_profile=k)
            simulate_batch(warm, preset, refl, grid, rng, draws_per_profile=k, layout=layout)
            rng = np.random.default_rng(1)
            draw = draw_parameters(rng, preset, n, two_theta_bragg_deg=two_theta_b, per_profile=k)
            t0, c0 = time.perf_counter(), time.process_time()
            simulate_batch(draw, preset, refl, grid, rng, draws_per_profile=k, layout=layout)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            _row(
                f"generation {name}: {label}",
                n / cpu,
                "curves per CPU-second",
                f"{n / wall:.1f} curves/s wall; {preset.n_slices} lamellae, noise + grid",
            )
    dynamical.HAVE_NUMBA = have_numba


def bench_training(n: int) -> None:
    import keras

    from xrd_strain_training.networks import build_cnn

    x = np.random.default_rng(0).normal(size=(n, 1001, 1)).astype("float32")
    y = np.random.default_rng(1).uniform(size=(n, 14)).astype("float32")
    for batch in (256, 512, 1024):
        model = build_cnn()
        model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse")
        model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        _row(f"training, batch {batch} ({keras.backend.backend()})", n / (time.perf_counter() - t0), "samples/s")


#: Network variants measured side by side (issue 9): the paper's network is the reference.
VARIANTS = {
    "paper (16-32-64-128, dense 1000-100)": dict(),
    "paper, input averaged by 2": dict(input_pool=2),
    "lean (8-16-32-64), input averaged by 2": dict(filters=(8, 16, 32, 64), input_pool=2),
    "lean (8-16-32-64), dense 500-100, input averaged by 2": dict(
        filters=(8, 16, 32, 64), dense_units=(500, 100), input_pool=2
    ),
}


def bench_training_variants(n: int, batches=(512,), bf16: bool = True) -> None:
    """Training samples/s of the paper's network and leaner variants on the same data."""
    import keras

    from xrd_strain_training.networks import build_cnn

    x = np.random.default_rng(0).normal(size=(n, 1001, 1)).astype("float32")
    y = np.random.default_rng(1).uniform(size=(n, 14)).astype("float32")
    policies = ("float32", "mixed_bfloat16") if bf16 else ("float32",)
    for policy in policies:
        keras.mixed_precision.set_global_policy(policy)
        for name, kw in VARIANTS.items():
            if policy != "float32" and kw:
                continue  # bf16 on the reference network only
            for batch in batches:
                model = build_cnn(**kw)
                model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="mse")
                model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)
                t0 = time.perf_counter()
                model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
                _row(
                    f"training {name}, batch {batch}, {policy} ({keras.backend.backend()})",
                    n / (time.perf_counter() - t0),
                    "samples/s",
                    f"{model.count_params() / 1e6:.2f} M parameters",
                )
    keras.mixed_precision.set_global_policy("float32")


def bench_inference(bundle_dir) -> None:
    from xrd_strain_plugin.inference import Inverter, default_bundle_path
    from xrd_strain_plugin.io import read_curve
    from xrd_strain_plugin.physics.materials import make_reflection

    inverter = Inverter(bundle_dir or default_bundle_path())
    model = inverter.bundle.model
    x1 = np.random.default_rng(0).normal(size=(1, 1001)).astype("float32")
    predictor = inverter.predictor
    for _ in range(3):
        predictor.predict_scaled(x1)
    t0 = time.perf_counter()
    for _ in range(50):
        predictor.predict_scaled(x1)
    _row("network, one curve (compiled model(x, training=False))", (time.perf_counter() - t0) / 50 * 1e3, "ms")
    model.predict(x1[..., None], verbose=0)
    t0 = time.perf_counter()
    for _ in range(10):
        model.predict(x1[..., None], verbose=0)
    _row("network, one curve (model.predict, for comparison)", (time.perf_counter() - t0) / 10 * 1e3, "ms")
    xb = np.random.default_rng(1).normal(size=(20000, 1001)).astype("float32")
    predictor.predict_scaled(xb[:1024])
    t0 = time.perf_counter()
    predictor.predict_scaled(xb)
    _row("network, batch of 20 000 curves", (time.perf_counter() - t0) / xb.shape[0] * 1e6, "us/curve")
    real = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ysz_400_irradiated.xy"
    two_theta, intensity = read_curve(real)
    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    inverter.invert(two_theta, intensity, refl)
    times = [inverter.invert(two_theta, intensity, refl) for _ in range(10)]
    _row(
        "Inverter.invert, real YSZ curve (501 points), end to end",
        np.median([r.elapsed_s for r in times]) * 1e3,
        "ms",
        "network {:.1f} ms, simulate {:.1f} ms, fit {:.1f} ms".format(
            *(1e3 * np.median([r.timings[k] for r in times]) for k in ("network", "simulate", "fit"))
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller samples")
    parser.add_argument("--bundle", default=None, help="bundle for the inference figures")
    parser.add_argument("--only", choices=("generation", "training", "variants", "inference"), default=None)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}\n\n| what | figure | load | note |\n|---|---|---|---|")
    if args.only in (None, "generation"):
        bench_generation(64 if args.quick else 256)
    if args.only in (None, "training"):
        bench_training(2048 if args.quick else 8192)
    if args.only in (None, "variants"):
        bench_training_variants(2048 if args.quick else 6144)
    if args.only in (None, "inference"):
        bench_inference(args.bundle)


if __name__ == "__main__":
    main()
