"""Table 2 side by side: several bundles (and the general + specialist routing) on held-out test
sets, plus sigma_I of the network alone on the real YSZ curve (issue 9); not a test.

Usage::

    .venv/bin/python benchmarks/bench_model_table.py --model v1=BUNDLE --model v2=BUNDLE \\
        --specialist cnn3=BUNDLE --route v2+cnn3 --test CNN2=DIR --test CNN3=DIR [--json OUT]

Prints one markdown table per test set (with the paper's row) and the sigma_I table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAPER = {
    "CNN2": ("paper CNN2 network, its CNN2 test set", "91 % | 94 % | 90 % | 93 % | 100 % | 82 %"),
    "CNN3": ("paper CNN3 specialist, its CNN3 test set", "86 % | 94 % | - | - | - | 76 %"),
}
KEYS = ("a_t", "a_emax", "a_dw", "a_h", "a_dr", "a_strain")


def _pairs(items):
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=BUNDLE")
    parser.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="GENERAL+SPECIALIST",
        help="also evaluate the routed pair (names from --model)",
    )
    parser.add_argument(
        "--ensemble",
        action="append",
        default=[],
        metavar="M1+M2[+...]",
        help="also evaluate an EnsemblePredictor of these --model names (the "
        "first answers; any-of-K counts every member's hypotheses)",
    )
    parser.add_argument("--test", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument(
        "--real", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ysz_400_irradiated.xy")
    )
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=RUN_DIR",
        help="accuracy versus budget: evaluate the run's best-at-epoch*.keras snapshots on the first --test set",
    )
    parser.add_argument("--json", default=None, help="write all figures here")
    args = parser.parse_args()

    from xrd_strain_plugin.inference import Inverter, load_bundle
    from xrd_strain_plugin.inference.predictor import EnsemblePredictor, Predictor
    from xrd_strain_plugin.inference.specialist import RoutedPredictor
    from xrd_strain_plugin.io import read_curve
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_training.dataset import load_dataset
    from xrd_strain_training.evaluate import evaluate_predictions

    bundles = {name: load_bundle(path) for name, path in _pairs(args.model).items()}
    predictors = {name: Predictor(b) for name, b in bundles.items()}
    for pair in args.route:
        general, specialist = pair.split("+")
        predictors[pair] = RoutedPredictor(bundles[general], bundles[specialist])
    for group in args.ensemble:
        predictors[group] = EnsemblePredictor([bundles[n] for n in group.split("+")])
    results = {}
    # One MSE scaling for every row (the first paper-head model's labels), so that a relative
    # head's MSE compares with the paper heads' (issue 14).
    mse_scaling = next(
        (b.card.labels for b in bundles.values() if not b.card.head or b.card.head.get("targets") == "paper"), None
    )
    for test_name, test_dir in _pairs(args.test).items():
        test = load_dataset(test_dir)
        print(
            f"\n### {test_name}: {test.n} curves, preset {test.manifest['preset']['name']}, "
            f"fingerprint {test.manifest['fingerprint'][:12]}\n"
        )
        print(
            "| model | test MSE | a(t) | a(e_max) | a(DW) | a(H) | a(DR) | a(strain) | "
            "a(strain) any of K | specialist answered | load |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, predictor in predictors.items():
            t0 = time.perf_counter()
            card = predictor.bundle.card
            any_k = "-"
            if isinstance(predictor, (Predictor, EnsemblePredictor)):
                hyp, _ = predictor.predict_proposals(test.x)
                pred = hyp[:, 0]
            else:
                hyp, pred = None, predictor.predict_labels(test.x)
            ev = evaluate_predictions(
                test.labels, pred, scaling=mse_scaling or card.labels, n_weights=card.n_weights, n_slices=card.n_slices
            )
            if hyp is not None and hyp.shape[1] > 1:
                ok = np.zeros(test.n, bool)
                for k in range(hyp.shape[1]):
                    ok |= (
                        evaluate_predictions(
                            test.labels,
                            hyp[:, k],
                            scaling=mse_scaling or card.labels,
                            n_weights=card.n_weights,
                            n_slices=card.n_slices,
                        ).relative_errors["strain_profile"]
                        < 0.1
                    )
                any_k = f"{100 * ok.mean():.0f} % (K={hyp.shape[1]})"
                results[f"{test_name}/{name}"] = {"a_strain_any": float(ok.mean())}
            routed = getattr(predictor, "last_models", None)
            share = f"{100 * np.mean([m['role'] == 'specialist' for m in routed]):.0f} %" if routed else "-"
            accs = " | ".join(f"{100 * ev.accuracies[k]:.0f} %" for k in KEYS)
            print(f"| {name} | {ev.mse:.2e} | {accs} | {any_k} | {share} | {os.getloadavg()[0]:.1f} |", flush=True)
            results[f"{test_name}/{name}"] = {
                **results.get(f"{test_name}/{name}", {}),
                "mse": ev.mse,
                **ev.accuracies,
                "n": ev.n,
                "seconds": time.perf_counter() - t0,
                "bands": {"strain_max_percent": ev.by_band("strain_max_percent")},
            }
        label, row = PAPER.get(test_name.split("-")[0], (None, None))
        if label:
            print(f"| {label} | - | {row} | | | |")
    if args.run:
        _budget_curve(_pairs(args.run), next(iter(_pairs(args.test).values())), results)
    two_theta, intensity = read_curve(args.real)
    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    print(
        "\n| model | sigma_I (network alone) | e_max (%) | t (nm) | DW_min | best of K proposals |"
        "\n|---|---|---|---|---|---|"
    )
    for name, predictor in predictors.items():
        inverter = Inverter(predictor.bundle)
        inverter.predictor = predictor
        r = inverter.invert(two_theta, intensity, refl)
        best = "-"
        if isinstance(predictor, EnsemblePredictor) or (
            isinstance(predictor, Predictor) and predictor.bundle.card.n_hypotheses > 1
        ):
            props, _ = inverter.propose(two_theta, intensity, refl)
            j = int(np.argmin([p.sigma_i for p in props]))
            best = (
                f"{props[j].sigma_i:.3f} (#{j}: e_max {props[j].strain_max_percent:.2f} %, "
                f"t {props[j].thickness_nm:.0f} nm)"
            )
            results[f"real/{name}/proposals"] = [p.sigma_i for p in props]
        print(
            f"| {name} | {r.sigma_i:.3f} | {r.strain_max_percent:.2f} | {r.thickness_nm:.0f} | "
            f"{r.dw_min:.2f} | {best} |"
        )
        results[f"real/{name}"] = {
            "sigma_i": r.sigma_i,
            "strain_max_percent": r.strain_max_percent,
            "thickness_nm": r.thickness_nm,
            "dw_min": r.dw_min,
        }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float) + "\n")


def _budget_curve(runs: dict, test_dir: str, results: dict) -> None:
    """Snapshots of training runs on one test set: samples seen and training time against
    accuracy (the run's state.json gives the history and the label scaling)."""
    import re

    import keras

    from xrd_strain_plugin.inference.labels import LabelScaling
    from xrd_strain_training.dataset import load_dataset
    from xrd_strain_training.evaluate import evaluate_predictions

    test = load_dataset(test_dir)
    print(f"\n### Accuracy versus training budget ({test.manifest['preset']['name']}, {test.n} curves)\n")
    print("| run | epoch | samples seen | training s | test MSE | a(t) | a(e_max) | a(strain) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        state = json.loads((Path(run) / "state.json").read_text())
        scaling = LabelScaling.from_dict(state["scaling"])
        per_epoch = state["config"].get("epoch_curves") or state["n_train"]
        seconds = np.cumsum(state["history"]["seconds"])
        snaps = sorted(Path(run).glob("best-at-epoch*.keras"), key=lambda p: int(re.findall(r"\d+", p.name)[-1]))
        for snap in snaps + [Path(run) / "best.keras"]:
            epoch = int(re.findall(r"\d+", snap.name)[-1]) if "epoch" in snap.name else len(seconds)
            model = keras.models.load_model(snap, compile=False)
            out = np.concatenate(
                [np.asarray(model(test.x[i : i + 1000, :, None], training=False)) for i in range(0, test.n, 1000)]
            )
            ev = evaluate_predictions(test.labels, scaling.unscale(out), scaling=scaling, n_weights=10, n_slices=200)
            a = ev.accuracies
            print(
                f"| {name} | {epoch} | {epoch * per_epoch} | {seconds[epoch - 1]:.0f} | "
                f"{ev.mse:.2e} | {100 * a['a_t']:.0f} % | {100 * a['a_emax']:.0f} % | "
                f"{100 * a['a_strain']:.0f} % |",
                flush=True,
            )
            results[f"budget/{name}/{snap.name}"] = {
                "epoch": epoch,
                "samples": epoch * per_epoch,
                "seconds": float(seconds[epoch - 1]),
                "mse": ev.mse,
                **a,
            }


if __name__ == "__main__":
    main()
