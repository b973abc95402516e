"""``xrd-strain generate | train | evaluate``: training sets, training, Table-2 evaluation.

These wrap :mod:`training` (installed with the package from a checkout) and need the ``ml``
extra (Keras, h5py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xrd_strain_plugin.cli import CommandError, option_errors
from xrd_strain_plugin.cli.options import add_reflection_options


def register(subparsers) -> None:
    """Add the ``generate``, ``train``, ``evaluate`` and ``library`` subcommands."""
    _register_generate(subparsers)
    _register_train(subparsers)
    _register_evaluate(subparsers)
    _register_library(subparsers)


def _register_generate(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="simulate a training set and a held-out test set (sharded HDF5)",
        description="Simulate curves from a preset (the paper's Table 1 with our recipe: CNN1, "
        "CNN2, CNN3; the paper's published generator: CNN2-PAPER, CNN3-PAPER; both "
        "recipes and every shape option: CNN2-SUPERSET, CNN3-SUPERSET) into DIR/train and "
        "DIR/test (HDF5 shards + manifest.json). Deterministic from --seed; a rerun "
        "with the same options resumes, and a larger --n-curves extends the set.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  xrd-strain generate --preset CNN2 --n-curves 50000 --test-curves 5000 --out data/CNN2",
    )
    p.add_argument(
        "--preset",
        default="CNN2",
        help="CNN1, CNN2, CNN3, CNN2-PAPER, CNN3-PAPER, CNN2-SUPERSET or CNN3-SUPERSET (default: CNN2)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="preset option beyond the paper: strain_shapes=asymmetric_gaussian,"
        "bimodal,flat | background=sloped | noise=poisson_multiplicative | "
        "n_slices=N (repeatable)",
    )
    p.add_argument("--n-curves", type=int, required=True, help="training curves")
    p.add_argument("--test-curves", type=int, default=5000, help="held-out test curves (default: %(default)s; 0: none)")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset directory")
    p.add_argument("--seed", type=int, default=2023, help="seed (default: %(default)s)")
    p.add_argument("--shard-size", type=int, default=1000, help="curves per shard")
    p.add_argument(
        "--draws-per-profile",
        type=int,
        default=1,
        metavar="K",
        help="training curves per simulated profile: K resolution/scale/background/"
        "noise/scan-window draws share one intrinsic reflectivity (about K/1.4 "
        "times cheaper at K=4; the test split always uses 1) (default: %(default)s)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    add_reflection_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_generate)


def _register_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the CNN on a generated set and write a model bundle",
        description="Train the paper's network on DATA/train (10 % held out for validation), "
        "resuming from RUN if it holds the same run; evaluate on DATA/test if present "
        "and write the bundle with its measured Table-2 row.",
    )
    p.add_argument("data", metavar="DATA", help="dataset directory written by generate")
    p.add_argument("--run", required=True, metavar="RUN", help="run directory (checkpoints)")
    p.add_argument("--bundle", required=True, metavar="BUNDLE", help="output bundle directory")
    p.add_argument("--model-id", default=None, help="model id (default: derived from the data)")
    p.add_argument("--version", default="1", help="model version (default: 1)")
    _network_options(p)
    _schedule_options(p)
    _budget_options(p)
    _monitor_options(p)
    p.add_argument(
        "--test", default=None, metavar="DIR", help="held-out test set to evaluate on (default: DATA/test if present)"
    )
    p.set_defaults(func=run_train)


def _network_options(parser) -> None:
    """Architecture, targets and loss of the network; its initial weights."""
    g = parser.add_argument_group("network")
    g.add_argument(
        "--filters",
        type=int,
        nargs="+",
        default=(16, 32, 64, 128),
        metavar="F",
        help="filters of each conv block (default: the paper's 16 32 64 128)",
    )
    g.add_argument("--kernel-size", type=int, default=15, help="conv kernel length (default: the paper's %(default)s)")
    g.add_argument(
        "--dense-units",
        type=int,
        nargs="+",
        default=(1000, 100),
        metavar="N",
        help="hidden dense widths (default: the paper's 1000 100)",
    )
    g.add_argument(
        "--input-pool",
        type=int,
        default=1,
        metavar="K",
        help="average the 1001-point input over K points before the convolutions "
        "(decimation; default: 1, the paper's network)",
    )
    g.add_argument(
        "--targets",
        choices=("paper", "relative"),
        default="paper",
        help="paper: the 14 min-max scaled labels; relative: weights / e_max, ln e_max, "
        "ln DW_min, ln t, ln H, DR (default: %(default)s)",
    )
    g.add_argument(
        "--loss",
        choices=("mse", "profile"),
        default="mse",
        help="mse (the paper) or profile: sigma_e/e_max of the decoded profile plus "
        "squared relative errors of the scalars (needs --targets relative)",
    )
    g.add_argument(
        "--hypotheses",
        type=int,
        default=1,
        metavar="K",
        help="alternative answers per curve (multi-hypothesis head, --loss profile)",
    )
    g.add_argument(
        "--profile-weight",
        type=float,
        default=1.0,
        metavar="W",
        help="weight of the profile term of --loss profile against its five scalar terms (default: %(default)s)",
    )
    g.add_argument(
        "--init-from",
        default=None,
        metavar="KERAS_OR_BUNDLE",
        help="start from these weights (same architecture), e.g. the general model for a low-strain specialist",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the train/validation split and the initial weights")


def _schedule_options(parser) -> None:
    """Optimiser and learning-rate schedule (the paper's plateau rule or a cosine)."""
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=70, help="maximum epochs (default: %(default)s, as in the paper)")
    g.add_argument("--batch-size", type=int, default=256, help="mini-batch size")
    g.add_argument(
        "--learning-rate", type=float, default=1e-3, help="initial RMSprop learning rate (default: %(default)s)"
    )
    g.add_argument(
        "--optimizer",
        choices=("rmsprop", "adam"),
        default="rmsprop",
        help="optimiser (default: %(default)s, the paper's)",
    )
    g.add_argument(
        "--schedule",
        choices=("plateau", "cosine"),
        default="plateau",
        help="learning-rate schedule: the paper's plateau rule (with --patience and "
        "--final-anneal), or a cosine decay to 1e-6 over the budget given by "
        "--total-samples, --max-cpu-minutes and/or --max-minutes (default: %(default)s)",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=10,
        metavar="N",
        help="learning rate x 0.1 after N epochs without validation gain (default: the "
        "paper's %(default)s; short noisy epochs may need more)",
    )
    g.add_argument(
        "--final-anneal",
        type=float,
        default=0.75,
        metavar="F",
        help="learning rate x 0.1 once this share of the (wall or CPU) budget is spent; "
        "0: never (default: %(default)s)",
    )
    g.add_argument(
        "--total-samples",
        type=int,
        default=None,
        metavar="N",
        help="sample budget of the cosine schedule (curves seen, repeats counted); training stops when it is spent",
    )
    g.add_argument(
        "--warmup-fraction",
        type=float,
        default=0.02,
        metavar="F",
        help="cosine schedule: share of the budget spent ramping the rate up (default: %(default)s)",
    )


def _budget_options(parser) -> None:
    """How much of the set is used, per epoch and in all; wall-clock and CPU budgets."""
    g = parser.add_argument_group("data and budgets")
    g.add_argument("--max-curves", type=int, default=None, help="use the first N curves only")
    g.add_argument(
        "--epoch-curves",
        type=int,
        default=None,
        metavar="N",
        help="curves per (short) epoch, drawn at random from the training part; "
        "checkpoints and the time-budget check come once per epoch (default: all)",
    )
    g.add_argument(
        "--validation-curves",
        type=int,
        default=None,
        metavar="N",
        help="validate on at most N of the held-out validation curves per epoch",
    )
    g.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    g.add_argument(
        "--max-cpu-minutes",
        type=float,
        default=None,
        help="budget in CPU minutes of the process (all threads): equal budgets on a machine whose load varies",
    )
    g.add_argument(
        "--snapshot-epochs",
        type=int,
        nargs="*",
        default=(),
        help="keep the best-so-far weights after these epochs (set-size studies)",
    )


def _monitor_options(parser) -> None:
    """Curves scored after every epoch, for accuracy-versus-samples figures (never for selection)."""
    g = parser.add_argument_group("monitoring")
    g.add_argument(
        "--monitor",
        default=None,
        metavar="DIR",
        help="test-set directory whose first --monitor-curves curves are scored after "
        "every epoch (accuracy versus samples seen; never used for selection)",
    )
    g.add_argument(
        "--monitor-curves",
        type=int,
        default=1000,
        metavar="N",
        help="curves of --monitor scored after every epoch (default: %(default)s)",
    )


def _register_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="Table-2 accuracies of a model on a held-out test set",
        description="Predict a test set with a bundle; write report.md (Table 2 and a(strain) "
        "by e_max, t and DW_min bands), metrics.json and PNG figures to OUT.",
    )
    p.add_argument("--model", required=True, metavar="BUNDLE", help="model bundle directory")
    p.add_argument("--test", required=True, metavar="DIR", help="test set directory")
    p.add_argument(
        "--train",
        default=None,
        metavar="DIR",
        help="training set directory, for the train MSE (first --max-curves curves)",
    )
    p.add_argument(
        "--max-curves", type=int, default=20000, help="training curves used for the train MSE (default: %(default)s)"
    )
    p.add_argument("--out", required=True, metavar="OUT", help="report directory")
    p.set_defaults(func=run_evaluate)


def _register_library(subparsers) -> None:
    p = subparsers.add_parser(
        "library",
        help="a proposal library for the refinement's search, from a generated training set",
        description="Keep N distinct profiles of a training set (one per K-draw group) as principal-"
        "component coordinates of their smoothed model input plus their labels, in FILE (library.npz). "
        "Put it in a model bundle's directory: the refinement screens the profiles of the curves "
        "nearest to a measured one beside its own grid (refinement/library.py).",
    )
    p.add_argument("data", metavar="DATA", help="dataset directory written by generate (its train split is read)")
    p.add_argument("--out", required=True, metavar="FILE", help="library file to write (e.g. BUNDLE/library.npz)")
    p.add_argument("--curves", type=int, default=20000, help="profiles kept (default: %(default)s)")
    p.add_argument("--components", type=int, default=32, help="principal components kept (default: %(default)s)")
    p.set_defaults(func=run_library)


def run_library(args) -> int:
    from xrd_strain_training.library import build_library

    with option_errors("DATA"):
        lib = build_library(Path(args.data) / "train", n_curves=args.curves, n_components=args.components)
    path = lib.save(args.out)
    print(f"{path}: {lib.n_curves} profiles, {lib.basis.shape[1]} components, {path.stat().st_size / 1e6:.1f} MB")
    return 0


def _parse_options(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--option: expected KEY=VALUE, got {item!r}")
        if key == "strain_shapes":
            out[key] = tuple(value.split(","))
        elif key == "n_slices":
            out[key] = int(value)
        else:
            out[key] = value
    return out


def run_generate(args) -> int:
    from xrd_strain_training.generate import DatasetSpec, generate
    from xrd_strain_training.presets import get_preset

    with option_errors("--preset/--option"):
        try:
            preset = get_preset(args.preset, **_parse_options(args.option))
        except (KeyError, TypeError) as error:
            raise ValueError(str(error)) from error
    out = Path(args.out)
    common = dict(
        preset=preset,
        seed=args.seed,
        shard_size=args.shard_size,
        material=args.material,
        hkl=tuple(args.hkl),
        wavelength_angstrom=args.wavelength_angstrom,
    )
    splits = [("test", args.test_curves), ("train", args.n_curves)]
    if args.draws_per_profile < 1:
        raise CommandError("--draws-per-profile must be >= 1")
    for split, n in splits:
        if n <= 0:
            continue
        k = args.draws_per_profile if split == "train" else 1
        with option_errors("--out"):
            manifest = generate(
                DatasetSpec(split=split, n_curves=n, draws_per_profile=k, **common),
                out / split,
                workers=args.workers,
                progress=not args.no_progress,
            )
        print(
            f"{out / split}: {manifest['n_curves']} curves ({manifest['n_drawn']} drawn), "
            f"fingerprint {manifest['fingerprint'][:12]}"
        )
    return 0


def run_train(args) -> int:
    from xrd_strain_plugin.inference import load_bundle
    from xrd_strain_training.dataset import load_dataset
    from xrd_strain_training.export import export_bundle
    from xrd_strain_training.report import evaluate_bundle, table_row
    from xrd_strain_training.train import TrainConfig, split_indices, train

    data = Path(args.data)
    with option_errors("DATA"):
        dataset = load_dataset(data / "train", max_curves=args.max_curves)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_curves=args.max_curves,
        max_minutes=args.max_minutes,
        seed=args.seed,
        snapshot_epochs=tuple(args.snapshot_epochs),
        filters=tuple(args.filters),
        dense_units=tuple(args.dense_units),
        input_pool=args.input_pool,
        init_from=args.init_from,
        epoch_curves=args.epoch_curves,
        kernel_size=args.kernel_size,
        targets=args.targets,
        loss=args.loss,
        n_hypotheses=args.hypotheses,
        profile_weight=args.profile_weight,
        validation_curves=args.validation_curves,
        max_cpu_minutes=args.max_cpu_minutes,
        final_anneal=args.final_anneal or None,
        patience=args.patience,
        optimizer=args.optimizer,
        schedule=args.schedule,
        total_samples=args.total_samples,
        warmup_fraction=args.warmup_fraction,
    )
    monitor = None
    if args.monitor:
        with option_errors("--monitor"):
            monitor = load_dataset(args.monitor, max_curves=args.monitor_curves)
    result = train(dataset, args.run, config, monitor=monitor)
    manifest = dataset.manifest
    model_id = args.model_id or "{}-{}-{}".format(
        str(manifest["material"]).lower(), "".join(map(str, manifest["hkl"])), manifest["preset"]["name"].lower()
    )
    test_manifest, metrics = None, {}
    bundle_path = Path(args.bundle)
    export_bundle(
        bundle_path,
        model=result.model,
        scaling=result.scaling,
        train_manifest=manifest,
        train_state=result.state,
        model_id=model_id,
        version=args.version,
        head=result.head,
    )
    test_dir = Path(args.test) if args.test else data / "test"
    if (test_dir / "manifest.json").is_file():
        test = load_dataset(test_dir)
        test_manifest = test.manifest
        bundle = load_bundle(bundle_path)
        ev, _ = evaluate_bundle(bundle, test)
        # Train MSE on the training part only (not the 10 % validation curves).
        train_idx, _ = split_indices(
            min(dataset.n, args.max_curves or dataset.n), config.validation_fraction, config.seed
        )
        ev_train, _ = evaluate_bundle(bundle, dataset, indices=train_idx[:20000])
        metrics = table_row(ev, mse_train=ev_train.mse)
        export_bundle(
            bundle_path,
            model=result.model,
            scaling=result.scaling,
            train_manifest=manifest,
            train_state=result.state,
            model_id=model_id,
            version=args.version,
            metrics=metrics,
            test_manifest=test_manifest,
            head=result.head,
        )
        print(json.dumps(metrics, indent=1))
    print(f"bundle written to {bundle_path}")
    return 0


def run_evaluate(args) -> int:
    from xrd_strain_plugin.inference import load_bundle
    from xrd_strain_training.dataset import load_dataset
    from xrd_strain_training.report import evaluate_bundle, table_row, write_report

    with option_errors("--model"):
        bundle = load_bundle(args.model)
    with option_errors("--test"):
        test = load_dataset(args.test)
    ev, pred = evaluate_bundle(bundle, test)
    mse_train = None
    if args.train:
        with option_errors("--train"):
            train_set = load_dataset(args.train, max_curves=args.max_curves)
        mse_train = evaluate_bundle(bundle, train_set, max_curves=args.max_curves)[0].mse
    row = table_row(ev, mse_train=mse_train)
    report = write_report(
        args.out, name=bundle.card.model_id, ev=ev, row=row, bundle=bundle, dataset=test, predicted=pred
    )
    print(report.read_text())
    return 0
