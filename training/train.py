"""Training the CNN on a generated dataset, with checkpoints so an interrupted run resumes.

The recipe is the paper's: RMSprop at 1e-3, learning rate x0.1 after 10 epochs without
improvement of the validation loss, MSE on labels min-max scaled to [0, 1], 10 % of the training
set held out for validation (the test set is a separate directory, never read here). The
weights with the best validation loss are kept. After every epoch the batch-normalisation
statistics are recomputed under the current weights
(:func:`xrd_strain_training.networks.recalibrate_batch_norm`): Keras' moving averages lag far behind on
small sets, which made inference-mode losses 3.5x the training-mode ones.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["TrainConfig", "TrainResult", "split_indices", "train"]

CHECKPOINT = "checkpoint.keras"
BEST = "best.keras"
STATE = "state.json"
#: Training curves over which the batch-norm statistics are averaged after every epoch.
CALIBRATION_CURVES = 4096


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Training hyper-parameters.

    Attributes
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Mini-batch size (the paper: a few thousand for 1.5 M curves; smaller sets need smaller
        batches to get enough updates per epoch).
    learning_rate : float
        Initial RMSprop learning rate.
    patience : int
        Epochs without validation improvement before the learning rate is multiplied by
        ``factor``.
    factor : float
        Learning-rate reduction factor.
    min_learning_rate : float
        Floor of the learning rate.
    validation_fraction : float
        Share of the training set held out for validation.
    seed : int
        Seed of the train/validation split and of the weight initialisation.
    max_curves : int or None
        Use only the first curves of the dataset (set-size studies).
    max_minutes : float or None
        Wall-clock budget; training stops after the epoch that would overrun it.
    filters, dense_units : tuple of int
        Network widths (:func:`xrd_strain_training.networks.build_cnn`; defaults are the paper's).
    input_pool : int
        Input decimation of :func:`xrd_strain_training.networks.build_cnn` (1: the paper's network).
    init_from : str or None
        A ``.keras`` file or a bundle directory of the same architecture whose weights start
        the run (warm start / fine-tuning, e.g. the low-strain specialist from the general
        model). From a bundle the label scaling is the bundle's (its outputs keep their meaning);
        from a ``.keras`` file it is fitted on this run's data.
    epoch_curves : int or None
        Train on a random subset of this many curves per epoch (a short "epoch": checkpoints,
        validation, batch-norm recalibration and the time-budget check come that often on a slow
        CPU). None: the whole training part.
    snapshot_epochs : tuple of int
        After these epochs, keep a copy of the best-so-far weights as
        ``best-at-epoch<k>.keras`` (set-size studies compare runs at equal epochs).
    final_anneal : float or None
        With ``max_minutes`` (or ``max_cpu_minutes``): once this fraction of the budget is spent,
        multiply the learning rate by ``factor`` once (a short CPU run never sees 10 stalled
        epochs, so the paper's plateau rule alone would never lower the rate).
    targets : {"paper", "relative"}
        The paper's 14 labels, or the score-aligned targets (weights / e_max, ln e_max, ln DW_min,
        ln t, ln H, DR; :mod:`xrd_strain_plugin.inference.labels`). Both min-max scaled.
    loss : {"mse", "profile"}
        MSE on the scaled targets (the paper), or :class:`xrd_strain_training.losses.ProfileLoss`
        (relative targets only): sigma_e / e_max of the decoded profile plus the squared
        relative errors of the scalars.
    n_hypotheses : int
        K answers per curve (relaxed winner-takes-all with logits; "profile" loss only).
    profile_weight : float
        Weight of the profile term of the "profile" loss against its scalar terms.
    kernel_size : int
        Conv kernel length (the paper: 15).
    validation_curves : int or None
        Validate on at most this many of the held-out validation curves (every epoch).
    max_cpu_minutes : float or None
        Budget in CPU time of this process (user + system, all threads): equal budgets for runs
        on a machine whose load varies. Checked after every epoch, like ``max_minutes``.
    optimizer : {"rmsprop", "adam"}
        RMSprop (the paper) or Adam.
    schedule : {"plateau", "cosine"}
        The paper's plateau rule (with ``final_anneal``), or a cosine decay from
        ``learning_rate`` to ``min_learning_rate`` after a linear warm-up of
        ``warmup_fraction``. The cosine's progress is the largest of samples seen /
        ``total_samples``, CPU seconds / ``max_cpu_minutes`` and epoch wall seconds /
        ``max_minutes`` (all summed over resumptions), so the rate is low when any budget runs
        out; training stops when progress reaches 1.
    total_samples : int or None
        Sample budget of the cosine schedule (curves seen, repeats counted).
    warmup_fraction : float
        Share of the cosine budget spent ramping the rate up linearly from 1 % of its peak.
    """

    epochs: int = 70
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 10
    factor: float = 0.1
    min_learning_rate: float = 1e-6
    validation_fraction: float = 0.1
    seed: int = 0
    max_curves: int | None = None
    max_minutes: float | None = None
    filters: tuple[int, ...] = (16, 32, 64, 128)
    dense_units: tuple[int, ...] = (1000, 100)
    input_pool: int = 1
    init_from: str | None = None
    epoch_curves: int | None = None
    snapshot_epochs: tuple[int, ...] = ()
    final_anneal: float | None = 0.75
    targets: str = "paper"
    loss: str = "mse"
    n_hypotheses: int = 1
    profile_weight: float = 1.0
    kernel_size: int = 15
    validation_curves: int | None = None
    max_cpu_minutes: float | None = None
    optimizer: str = "rmsprop"
    schedule: str = "plateau"
    total_samples: int | None = None
    warmup_fraction: float = 0.02


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    model : keras.Model
        The network with the best validation loss.
    scaling : LabelScaling
        Label scaling fitted on the training part.
    history : dict
        Per-epoch ``loss``, ``val_loss``, ``learning_rate``, ``seconds``, ``cpu_seconds``,
        ``samples`` (cumulative) and, with a monitor set, ``monitor`` (Table-2 accuracies).
    state : dict
        Contents of the run's ``state.json`` (config, dataset fingerprint, sizes, epochs, timing).
    head : dict
        The card's ``head`` (``targets``, ``n_hypotheses``).
    """

    model: object
    scaling: object
    history: dict
    state: dict
    head: dict


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted training and validation indices of ``n`` curves (deterministic from ``seed``)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train(
    dataset, run_dir, config: TrainConfig = TrainConfig(), *, verbose: int = 1, n_input: int | None = None, monitor=None
) -> TrainResult:
    """Train (or resume training) the paper's network.

    Parameters
    ----------
    dataset : xrd_strain_training.dataset.Dataset
        Training split (labels are physical; scaling is fitted here).
    run_dir : str or Path
        Directory for ``checkpoint.keras`` (every epoch, with the optimiser state),
        ``best.keras`` and ``state.json``. If it holds a run with the same config and dataset,
        training resumes from its last epoch.
    config : TrainConfig
    verbose : int
        0 silent, 1 one line per epoch.
    n_input : int, optional
        Input points (default: the dataset's grid).
    monitor : xrd_strain_training.dataset.Dataset, optional
        Curves whose Table-2 accuracies are recorded after every epoch (``history["monitor"]``),
        for accuracy-versus-samples curves. Recorded only: model selection uses the validation
        part of ``dataset``.

    Returns
    -------
    TrainResult
    """
    import keras

    from xrd_strain_plugin.inference import labels as lab
    from xrd_strain_plugin.inference.labels import LabelScaling
    from xrd_strain_training.networks import build_cnn, recalibrate_batch_norm

    head = _check_head(config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    x, labels = dataset.x, dataset.labels
    if config.max_curves is not None:
        x, labels = x[: config.max_curves], labels[: config.max_curves]
    train_idx, val_idx = split_indices(x.shape[0], config.validation_fraction, config.seed)
    if config.validation_curves is not None:
        val_idx = val_idx[: config.validation_curves]
    n_weights = sum(name.startswith("w") for name in dataset.label_names)
    n_slices = int(dataset.manifest["preset"].get("n_slices", 200))
    paper_scaling = LabelScaling.fit(labels[train_idx], dataset.label_names)
    names = dataset.label_names
    if config.targets == lab.RELATIVE:
        labels = lab.relative_from_paper(labels, n_weights=n_weights, n_slices=n_slices)
        names = lab.relative_names(n_weights)
    scaling = LabelScaling.fit(labels[train_idx], names)
    if config.targets == lab.RELATIVE:  # the MSE of Table 2 stays in the paper's scaled labels
        head["paper_labels"] = paper_scaling.to_dict()
    if config.init_from and Path(config.init_from).is_dir():
        # warm start from a bundle: keep its label scaling, so its outputs mean the same at once
        from xrd_strain_plugin.inference.bundle import read_card

        scaling = read_card(config.init_from).labels
        if tuple(scaling.names) != tuple(names):
            raise ValueError(f"{config.init_from} predicts other labels than this dataset's")
    y = scaling.scale(labels)
    x = x[..., np.newaxis]
    identity = {
        "config": json.loads(json.dumps(asdict(config))),
        "fingerprint": dataset.fingerprint,
        "n_curves": int(x.shape[0]),
    }
    state_path = run_dir / STATE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    resume = (
        (run_dir / CHECKPOINT).is_file()
        and all(state.get(k) == v for k, v in identity.items() if k != "config")
        and _same_config(state.get("config"), identity["config"])
    )
    if config.loss == "profile":
        from xrd_strain_training.losses import ProfileLoss  # registers the class for load_model

        loss = ProfileLoss(
            scaling.minimum,
            scaling.maximum,
            n_weights=n_weights,
            n_hypotheses=config.n_hypotheses,
            profile_weight=config.profile_weight,
        )
    else:
        loss = "mse"
    if resume:
        model = keras.models.load_model(run_dir / CHECKPOINT)
        history = state["history"]
        plateau_state = state["plateau"]
    else:
        keras.utils.set_random_seed(config.seed)
        model = build_cnn(
            n_input=n_input or x.shape[1],
            n_labels=lab.head_outputs(y.shape[1], config.n_hypotheses),
            filters=config.filters,
            dense_units=config.dense_units,
            input_pool=config.input_pool,
            kernel_size=config.kernel_size,
        )
        if config.init_from:
            source = Path(config.init_from)
            source = source / "model.keras" if source.is_dir() else source
            model.set_weights(keras.models.load_model(source, compile=False).get_weights())
        model.compile(optimizer=_optimizer(keras, config), loss=loss)
        history = {"loss": [], "val_loss": [], "learning_rate": [], "seconds": [], "cpu_seconds": [], "samples": []}
        plateau_state = {"best": float("inf"), "wait": 0}
        state = {
            **identity,
            "scaling": scaling.to_dict(),
            "n_train": int(train_idx.size),
            "n_val": int(val_idx.size),
            "n_params": int(model.count_params()),
        }
    start_epoch = len(history["loss"])
    t_start = time.perf_counter()
    t_budget = t_start + 60 * config.max_minutes if config.max_minutes else None
    t_anneal = (
        t_start + 60 * config.max_minutes * config.final_anneal if config.max_minutes and config.final_anneal else None
    )
    cpu_done = sum(history.get("cpu_seconds", []))
    cpu_budget = 60 * config.max_cpu_minutes if config.max_cpu_minutes else None
    cpu_anneal = cpu_budget * config.final_anneal if cpu_budget and config.final_anneal else None
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    x_calib = x_train[:CALIBRATION_CURVES]
    rng = np.random.default_rng([config.seed, start_epoch])
    for epoch in range(start_epoch, config.epochs):
        if config.schedule == "cosine":
            progress = _budget_progress(config, history, cpu_done)
            if progress >= 1.0:
                if verbose:
                    print("stopping: cosine schedule complete", flush=True)
                break
            model.optimizer.learning_rate.assign(cosine_rate(config, progress))
        t0, c0 = time.perf_counter(), _cpu_seconds()
        order = rng.permutation(x_train.shape[0])[: config.epoch_curves]
        fit = model.fit(
            x_train[order], y_train[order], batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0
        )
        recalibrate_batch_norm(model, x_calib)
        val_loss = float(model.evaluate(x_val, y_val, batch_size=1024, verbose=0))
        lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        seconds = time.perf_counter() - t0
        cpu = _cpu_seconds() - c0
        cpu_done += cpu
        history["loss"].append(float(fit.history["loss"][-1]))
        history.setdefault("cpu_seconds", []).append(round(cpu, 2))
        seen = history.setdefault("samples", [])
        seen.append(int((seen[-1] if seen else 0) + order.size))
        if monitor is not None:
            history.setdefault("monitor", []).append(
                _monitor(model, monitor, scaling, head, paper_scaling, n_weights, n_slices)
            )
        history["val_loss"].append(val_loss)
        history["learning_rate"].append(lr)
        history["seconds"].append(round(seconds, 2))
        if val_loss < plateau_state["best"]:
            plateau_state = {"best": val_loss, "wait": 0}
            model.save(run_dir / BEST)
        elif config.schedule == "plateau":
            plateau_state["wait"] += 1
            if plateau_state["wait"] >= config.patience and lr > config.min_learning_rate:
                model.optimizer.learning_rate.assign(max(lr * config.factor, config.min_learning_rate))
                plateau_state["wait"] = 0
        if (
            config.schedule == "plateau"
            and (
                (t_anneal is not None and time.perf_counter() > t_anneal)
                or (cpu_anneal is not None and cpu_done > cpu_anneal)
            )
            and not state.get("annealed")
        ):
            model.optimizer.learning_rate.assign(
                max(
                    float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) * config.factor,
                    config.min_learning_rate,
                )
            )
            state["annealed"] = epoch + 1
        model.save(run_dir / CHECKPOINT)
        if epoch + 1 in config.snapshot_epochs:
            shutil.copyfile(run_dir / BEST, run_dir / f"best-at-epoch{epoch + 1}.keras")
        state.update(
            history=history,
            plateau=plateau_state,
            epochs_done=epoch + 1,
            train_seconds=round(sum(history["seconds"]), 1),
        )
        _write_json(state_path, state)
        if verbose:
            extra = ""
            if history.get("monitor"):
                m = history["monitor"][-1]
                extra = (
                    f"  a(t) {m['a_t']:.2f} a(e) {m['a_emax']:.2f} a(s) {m['a_strain']:.2f}"
                    f" any-of-K a(s) {m.get('a_strain_any', float('nan')):.2f}"
                )
            print(
                f"epoch {epoch + 1}/{config.epochs}  loss {history['loss'][-1]:.5f}  "
                f"val_loss {val_loss:.5f}  lr {lr:.1e}  {seconds:.0f} s  cpu {cpu:.0f} s  "
                f"samples {history['samples'][-1]}{extra}",
                flush=True,
            )
        if t_budget is not None and time.perf_counter() + seconds > t_budget:
            if verbose:
                print("stopping: wall-clock budget reached", flush=True)
            break
        if cpu_budget is not None and cpu_done + cpu > cpu_budget:
            if verbose:
                print("stopping: CPU budget reached", flush=True)
            break
    best = keras.models.load_model(run_dir / BEST, compile=False)
    recalibrate_batch_norm(best, x_calib)  # runs saved before this fix are repaired here
    return TrainResult(model=best, scaling=scaling, history=history, state=state, head=head)


def cosine_rate(config: TrainConfig, progress: float) -> float:
    """Learning rate of the cosine schedule at ``progress`` (0 start, 1 end of the budget).

    A linear warm-up from 1 % of ``learning_rate`` over ``warmup_fraction``, then a half cosine
    from ``learning_rate`` down to ``min_learning_rate``.
    """
    lr0, lr_min, warm = config.learning_rate, config.min_learning_rate, config.warmup_fraction
    progress = min(max(progress, 0.0), 1.0)
    if warm > 0 and progress < warm:
        return lr0 * (0.01 + 0.99 * progress / warm)
    phase = (progress - warm) / (1.0 - warm) if warm < 1 else 1.0
    return lr_min + 0.5 * (lr0 - lr_min) * (1.0 + np.cos(np.pi * phase))


def _budget_progress(config: TrainConfig, history: dict, cpu_done: float) -> float:
    parts = []
    if config.total_samples:
        seen = history.get("samples") or [0]
        parts.append(seen[-1] / config.total_samples)
    if config.max_cpu_minutes:
        parts.append(cpu_done / (60.0 * config.max_cpu_minutes))
    if config.max_minutes:  # wall time summed over the run's epochs, resumptions included
        parts.append(sum(history.get("seconds", [])) / (60.0 * config.max_minutes))
    return max(parts)


def _optimizer(keras, config: TrainConfig):
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=config.learning_rate)
    return keras.optimizers.RMSprop(learning_rate=config.learning_rate)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _check_head(config: TrainConfig) -> dict:
    if config.targets not in ("paper", "relative"):
        raise ValueError(f"targets must be 'paper' or 'relative', got {config.targets!r}")
    if config.loss not in ("mse", "profile"):
        raise ValueError(f"loss must be 'mse' or 'profile', got {config.loss!r}")
    if config.loss == "profile" and config.targets != "relative":
        raise ValueError("the profile loss needs targets='relative'")
    if config.n_hypotheses < 1 or (config.n_hypotheses > 1 and config.loss != "profile"):
        raise ValueError("n_hypotheses > 1 needs the profile loss")
    if config.optimizer not in ("rmsprop", "adam"):
        raise ValueError(f"optimizer must be 'rmsprop' or 'adam', got {config.optimizer!r}")
    if config.schedule not in ("plateau", "cosine"):
        raise ValueError(f"schedule must be 'plateau' or 'cosine', got {config.schedule!r}")
    if config.schedule == "cosine" and not (config.total_samples or config.max_cpu_minutes or config.max_minutes):
        raise ValueError("the cosine schedule needs total_samples or max_cpu_minutes (its budget)")
    return {"targets": config.targets, "n_hypotheses": int(config.n_hypotheses), "loss": config.loss}


def _monitor(model, data, scaling, head, paper_scaling, n_weights, n_slices) -> dict:
    """Table-2 accuracies of the current (batch-norm recalibrated) weights on ``data``, and for
    K > 1 the share of curves where one of the K hypotheses meets the a(strain) threshold."""
    from xrd_strain_plugin.inference.labels import labels_from_output
    from xrd_strain_training.evaluate import evaluate_predictions

    out = np.concatenate(
        [np.asarray(model(data.x[i : i + 1024, :, None], training=False)) for i in range(0, data.n, 1024)]
    )
    hyp, _ = labels_from_output(out, scaling=scaling, head=head, n_weights=n_weights, n_slices=n_slices)
    ev = evaluate_predictions(data.labels, hyp[:, 0], scaling=paper_scaling, n_weights=n_weights, n_slices=n_slices)
    row = {"mse_paper_labels": ev.mse, **ev.accuracies}
    if hyp.shape[1] > 1:
        any_ok = np.zeros(data.n, bool)
        for k in range(hyp.shape[1]):
            e = evaluate_predictions(
                data.labels, hyp[:, k], scaling=paper_scaling, n_weights=n_weights, n_slices=n_slices
            )
            any_ok |= e.relative_errors["strain_profile"] < 0.1
        row["a_strain_any"] = float(any_ok.mean())
    return row


_DEFAULTS = asdict(TrainConfig())


def _same_config(old, new) -> bool:
    # epochs and the time budgets may grow on resumption; everything else must match.
    if old is None:
        return False
    keys = set(new) - {"epochs", "max_minutes", "max_cpu_minutes", "snapshot_epochs", "final_anneal"}
    # options newer than the run: absent from its state and at their default
    keys = {k for k in keys if k in old or new[k] != _DEFAULTS.get(k)}
    return all(old.get(k) == (list(new[k]) if isinstance(new[k], tuple) else new[k]) for k in keys)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
