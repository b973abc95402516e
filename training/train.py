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

    The stages, in order: the targets and their scaling (:func:`_prepare_targets`), the run to
    resume or a new network (:func:`_resume_or_start`), then one epoch at a time: the learning
    rate (:func:`_cosine_step`), the fit on a shuffled subset, the batch-norm recalibration and the
    validation (:func:`_fit_epoch`), the record (:func:`_record_epoch`), the rate rules
    (:func:`_plateau_step`, :func:`_anneal_step`), the checkpoint and ``state.json``
    (:func:`_save_epoch`) and the budgets (:class:`_Clock`).

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

    from xrd_strain_training.networks import recalibrate_batch_norm

    head = _check_head(config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = _prepare_targets(dataset, config, head)
    model, history, plateau_state, state = _resume_or_start(keras, run_dir, config, dataset, data, n_input)
    start_epoch = len(history["loss"])
    clock = _Clock.start(config, history)
    x_train, y_train = data.x[data.train_idx], data.y[data.train_idx]
    x_val, y_val = data.x[data.val_idx], data.y[data.val_idx]
    x_calib = x_train[:CALIBRATION_CURVES]
    rng = np.random.default_rng([config.seed, start_epoch])
    for epoch in range(start_epoch, config.epochs):
        if config.schedule == "cosine" and not _cosine_step(model, config, history, clock.cpu_done, verbose):
            break
        t0, c0 = time.perf_counter(), _cpu_seconds()
        order = rng.permutation(x_train.shape[0])[: config.epoch_curves]
        fit_loss, val_loss, lr = _fit_epoch(keras, model, config, x_train[order], y_train[order], x_calib, x_val, y_val)
        seconds = time.perf_counter() - t0
        cpu = _cpu_seconds() - c0
        clock.cpu_done += cpu
        watch = lambda: _monitor(model, monitor, data.scaling, head, data.paper_scaling, data.n_weights, data.n_slices)
        _record_epoch(history, fit_loss, val_loss, lr, seconds, cpu, order.size, watch if monitor is not None else None)
        plateau_state = _plateau_step(model, config, plateau_state, val_loss, lr, run_dir)
        if config.schedule == "plateau" and clock.anneal_due() and not state.get("annealed"):
            _multiply_rate(keras, model, config)
            state["annealed"] = epoch + 1
        _save_epoch(model, run_dir, config, epoch, state, history, plateau_state)
        if verbose:
            _print_epoch(config, epoch, history, val_loss, lr, seconds, cpu)
        reason = clock.stop_reason(seconds, cpu)
        if reason is not None:
            if verbose:
                print(f"stopping: {reason}", flush=True)
            break
    best = keras.models.load_model(run_dir / BEST, compile=False)
    recalibrate_batch_norm(best, x_calib)  # runs saved before this fix are repaired here
    return TrainResult(model=best, scaling=data.scaling, history=history, state=state, head=head)


@dataclass(frozen=True, kw_only=True)
class _Targets:
    """The network's inputs and scaled targets, the split, and what decoding them needs."""

    x: np.ndarray  # (n_curves, n_points, 1)
    y: np.ndarray  # (n_curves, n_targets), min-max scaled
    scaling: object  # LabelScaling of the targets
    paper_scaling: object  # LabelScaling of the paper's 14 labels (Table 2's MSE)
    train_idx: np.ndarray
    val_idx: np.ndarray
    n_weights: int
    n_slices: int


def _prepare_targets(dataset, config: TrainConfig, head: dict) -> _Targets:
    """Curves, targets (paper or relative) and their scaling fitted on the training part.

    With relative targets ``head["paper_labels"]`` is set (Table 2's MSE stays in the paper's
    scaled labels); a warm start from a bundle keeps the bundle's scaling.
    """
    from xrd_strain_plugin.inference import labels as lab
    from xrd_strain_plugin.inference.labels import LabelScaling

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
    return _Targets(
        x=x[..., np.newaxis],
        y=scaling.scale(labels),
        scaling=scaling,
        paper_scaling=paper_scaling,
        train_idx=train_idx,
        val_idx=val_idx,
        n_weights=n_weights,
        n_slices=n_slices,
    )


def _make_loss(config: TrainConfig, data: _Targets):
    """``"mse"`` or the :class:`~xrd_strain_training.losses.ProfileLoss` (importing it registers the class)."""
    if config.loss != "profile":
        return "mse"
    from xrd_strain_training.losses import ProfileLoss  # registers the class for load_model

    return ProfileLoss(
        data.scaling.minimum,
        data.scaling.maximum,
        n_weights=data.n_weights,
        n_hypotheses=config.n_hypotheses,
        profile_weight=config.profile_weight,
    )


def _resume_or_start(keras, run_dir: Path, config: TrainConfig, dataset, data: _Targets, n_input):
    """``(model, history, plateau_state, state)``: the run in ``run_dir`` when it is this run, else a new one.

    A run resumes when its checkpoint exists, its dataset fingerprint and size are these and its
    config matches (:func:`_same_config`: epochs and budgets may grow). A new network is seeded
    with ``config.seed`` (``keras.utils.set_random_seed``) just before it is built.
    """
    identity = {
        "config": json.loads(json.dumps(asdict(config))),
        "fingerprint": dataset.fingerprint,
        "n_curves": int(data.x.shape[0]),
    }
    state_path = run_dir / STATE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    resume = (
        (run_dir / CHECKPOINT).is_file()
        and all(state.get(k) == v for k, v in identity.items() if k != "config")
        and _same_config(state.get("config"), identity["config"])
    )
    loss = _make_loss(config, data)
    if resume:
        return keras.models.load_model(run_dir / CHECKPOINT), state["history"], state["plateau"], state
    model = _new_model(keras, config, data, loss, n_input)
    history = {"loss": [], "val_loss": [], "learning_rate": [], "seconds": [], "cpu_seconds": [], "samples": []}
    state = {
        **identity,
        "scaling": data.scaling.to_dict(),
        "n_train": int(data.train_idx.size),
        "n_val": int(data.val_idx.size),
        "n_params": int(model.count_params()),
    }
    return model, history, {"best": float("inf"), "wait": 0}, state


def _new_model(keras, config: TrainConfig, data: _Targets, loss, n_input):
    """The network, seeded, optionally started from ``config.init_from``'s weights, compiled."""
    from xrd_strain_plugin.inference import labels as lab
    from xrd_strain_training.networks import build_cnn

    keras.utils.set_random_seed(config.seed)
    model = build_cnn(
        n_input=n_input or data.x.shape[1],
        n_labels=lab.head_outputs(data.y.shape[1], config.n_hypotheses),
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
    return model


class _Clock:
    """The wall-clock and CPU budgets of one call of :func:`train` (CPU seconds summed over resumptions)."""

    def __init__(self, *, t_budget, t_anneal, cpu_done, cpu_budget, cpu_anneal):
        self.t_budget, self.t_anneal = t_budget, t_anneal
        self.cpu_done, self.cpu_budget, self.cpu_anneal = cpu_done, cpu_budget, cpu_anneal

    @classmethod
    def start(cls, config: TrainConfig, history: dict) -> _Clock:
        t_start = time.perf_counter()
        minutes, anneal = config.max_minutes, config.final_anneal
        cpu_budget = 60 * config.max_cpu_minutes if config.max_cpu_minutes else None
        return cls(
            t_budget=t_start + 60 * minutes if minutes else None,
            t_anneal=t_start + 60 * minutes * anneal if minutes and anneal else None,
            cpu_done=sum(history.get("cpu_seconds", [])),
            cpu_budget=cpu_budget,
            cpu_anneal=cpu_budget * anneal if cpu_budget and anneal else None,
        )

    def anneal_due(self) -> bool:
        """``final_anneal`` of a wall-clock or CPU budget is spent."""
        return (self.t_anneal is not None and time.perf_counter() > self.t_anneal) or (
            self.cpu_anneal is not None and self.cpu_done > self.cpu_anneal
        )

    def stop_reason(self, seconds: float, cpu: float) -> str | None:
        """Why to stop before another epoch as long as the last (``seconds``, ``cpu``), or ``None``."""
        if self.t_budget is not None and time.perf_counter() + seconds > self.t_budget:
            return "wall-clock budget reached"
        if self.cpu_budget is not None and self.cpu_done + cpu > self.cpu_budget:
            return "CPU budget reached"
        return None


def _cosine_step(model, config: TrainConfig, history: dict, cpu_done: float, verbose: int) -> bool:
    """Set the cosine schedule's rate for the next epoch; ``False`` once its budget is spent."""
    progress = _budget_progress(config, history, cpu_done)
    if progress >= 1.0:
        if verbose:
            print("stopping: cosine schedule complete", flush=True)
        return False
    model.optimizer.learning_rate.assign(cosine_rate(config, progress))
    return True


def _fit_epoch(keras, model, config: TrainConfig, x_epoch, y_epoch, x_calib, x_val, y_val):
    """One pass over the epoch's curves, the batch-norm recalibration, the validation: ``(loss, val_loss, lr)``."""
    from xrd_strain_training.networks import recalibrate_batch_norm

    fit = model.fit(x_epoch, y_epoch, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0)
    recalibrate_batch_norm(model, x_calib)
    val_loss = float(model.evaluate(x_val, y_val, batch_size=1024, verbose=0))
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    return float(fit.history["loss"][-1]), val_loss, lr


def _record_epoch(history: dict, loss, val_loss, lr, seconds, cpu, n_seen: int, monitor=None) -> None:
    """Append one epoch to ``history`` (``samples`` is cumulative; ``monitor()`` gives the monitor's row)."""
    history["loss"].append(loss)
    history.setdefault("cpu_seconds", []).append(round(cpu, 2))
    seen = history.setdefault("samples", [])
    seen.append(int((seen[-1] if seen else 0) + n_seen))
    if monitor is not None:
        history.setdefault("monitor", []).append(monitor())
    history["val_loss"].append(val_loss)
    history["learning_rate"].append(lr)
    history["seconds"].append(round(seconds, 2))


def _plateau_step(model, config: TrainConfig, plateau_state: dict, val_loss: float, lr: float, run_dir: Path) -> dict:
    """Keep the best weights (``best.keras``); under the plateau rule, lower the rate after ``patience`` stalls."""
    if val_loss < plateau_state["best"]:
        model.save(run_dir / BEST)
        return {"best": val_loss, "wait": 0}
    if config.schedule == "plateau":
        plateau_state["wait"] += 1
        if plateau_state["wait"] >= config.patience and lr > config.min_learning_rate:
            model.optimizer.learning_rate.assign(max(lr * config.factor, config.min_learning_rate))
            plateau_state["wait"] = 0
    return plateau_state


def _multiply_rate(keras, model, config: TrainConfig) -> None:
    """The final anneal: the current rate times ``factor``, not below ``min_learning_rate``."""
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    model.optimizer.learning_rate.assign(max(rate * config.factor, config.min_learning_rate))


def _save_epoch(model, run_dir: Path, config: TrainConfig, epoch: int, state, history, plateau_state) -> None:
    """``checkpoint.keras``, the epoch's snapshot of ``best.keras`` if asked for, then ``state.json``."""
    model.save(run_dir / CHECKPOINT)
    if epoch + 1 in config.snapshot_epochs:
        shutil.copyfile(run_dir / BEST, run_dir / f"best-at-epoch{epoch + 1}.keras")
    state.update(
        history=history,
        plateau=plateau_state,
        epochs_done=epoch + 1,
        train_seconds=round(sum(history["seconds"]), 1),
    )
    _write_json(run_dir / STATE, state)


def _print_epoch(config: TrainConfig, epoch: int, history: dict, val_loss, lr, seconds, cpu) -> None:
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
