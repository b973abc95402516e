"""A tiny real training run lowers the loss, checkpoints, resumes, and exports a loadable bundle."""

import json

import numpy as np
import pytest

from xrd_strain_plugin.inference import Inverter, load_bundle
from xrd_strain_training.dataset import load_dataset
from xrd_strain_training.export import export_bundle
from xrd_strain_training.networks import build_cnn
from xrd_strain_training.train import TrainConfig, train

SMALL = dict(filters=(4, 4, 8, 8), dense_units=(32, 16), batch_size=8, learning_rate=3e-3)


def test_paper_network_has_about_1_1_million_parameters():
    model = build_cnn()
    assert model.count_params() == 1_109_234
    assert model.get_layer("flatten").output.shape[-1] == 512  # 4 x 128, as in the paper
    assert model.output_shape == (None, 14)


def test_training_reduces_the_loss_and_resumes(tiny_dataset_dir, tmp_path):
    ds = load_dataset(tiny_dataset_dir)
    run = tmp_path / "run"
    first = train(ds, run, TrainConfig(epochs=4, **SMALL), verbose=0)
    loss = first.history["loss"]
    assert len(loss) == 4 and loss[-1] < loss[0]
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 4 and state["n_train"] + state["n_val"] == 48
    # Resuming with more epochs continues from epoch 4 instead of starting over.
    second = train(ds, run, TrainConfig(epochs=6, **SMALL), verbose=0)
    assert len(second.history["loss"]) == 6
    assert second.history["loss"][:4] == loss
    # A different config is a different run: it starts from scratch.
    third = train(ds, run, TrainConfig(epochs=1, seed=1, **SMALL), verbose=0)
    assert len(third.history["loss"]) == 1

    bundle_dir = tmp_path / "bundle"
    card = export_bundle(
        bundle_dir,
        model=second.model,
        scaling=second.scaling,
        train_manifest=ds.manifest,
        train_state=second.state,
        model_id="tiny",
        metrics={"a_t": 0.0},
    )
    bundle = load_bundle(bundle_dir)
    assert bundle.card == card and bundle.card.metrics == {"a_t": 0.0}
    assert bundle.card.dataset["train_fingerprint"] == ds.fingerprint
    assert bundle.card.dataset["train_set_fingerprint"] == ds.manifest["fingerprint"]
    x = ds.x[:3]
    np.testing.assert_allclose(
        Inverter(bundle).predictor.predict_scaled(x),
        second.model.predict(x[..., None], verbose=0),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.slow  # three short training runs
def test_warm_start_from_a_bundle_keeps_its_scaling(tiny_dataset_dir, tmp_path):
    ds = load_dataset(tiny_dataset_dir)
    base = train(ds, tmp_path / "base", TrainConfig(epochs=1, **SMALL), verbose=0)
    export_bundle(
        tmp_path / "b",
        model=base.model,
        scaling=base.scaling,
        train_manifest=ds.manifest,
        train_state=base.state,
        model_id="base",
    )
    # a warm start on another subset: short epochs, the bundle's weights and label scaling
    sub = load_dataset(tiny_dataset_dir, max_curves=24)
    warm = train(
        sub, tmp_path / "warm", TrainConfig(epochs=2, epoch_curves=8, init_from=str(tmp_path / "b"), **SMALL), verbose=0
    )
    assert warm.scaling == base.scaling
    assert len(warm.history["loss"]) == 2
    # first epoch starts from the bundle's weights: its loss is near the base's, not a fresh net's
    fresh = train(sub, tmp_path / "fresh", TrainConfig(epochs=1, epoch_curves=8, **SMALL), verbose=0)
    assert warm.history["val_loss"][0] < fresh.history["val_loss"][0]


def test_cosine_schedule_has_the_textbook_shape():
    # Independent reference: the half cosine's closed form at its ends and midpoint, and the
    # warm-up's linear ramp from 1 % of the peak.
    from xrd_strain_training.train import cosine_rate

    cfg = TrainConfig(
        learning_rate=1e-3, min_learning_rate=1e-6, schedule="cosine", total_samples=1000, warmup_fraction=0.1
    )
    assert cosine_rate(cfg, 0.0) == pytest.approx(1e-5)
    assert cosine_rate(cfg, 0.05) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert cosine_rate(cfg, 0.1) == pytest.approx(1e-3)
    assert cosine_rate(cfg, 0.55) == pytest.approx(0.5 * (1e-3 + 1e-6))
    assert cosine_rate(cfg, 1.0) == pytest.approx(1e-6)
    assert cosine_rate(cfg, 3.0) == pytest.approx(1e-6)
    rates = [cosine_rate(cfg, p) for p in np.linspace(0.1, 1.0, 50)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # monotone after the warm-up
    with pytest.raises(ValueError, match="budget"):
        train(None, "unused", TrainConfig(schedule="cosine"), verbose=0)


def test_cosine_schedule_with_adam_stops_at_its_sample_budget(tiny_dataset_dir, tmp_path):
    ds = load_dataset(tiny_dataset_dir)
    cfg = TrainConfig(
        epochs=50, optimizer="adam", schedule="cosine", total_samples=120, epoch_curves=40, warmup_fraction=0.0, **SMALL
    )
    result = train(ds, tmp_path / "run", cfg, verbose=0)
    # 120 samples in epochs of 40 curves: three epochs, whatever the epoch limit
    assert result.history["samples"] == [40, 80, 120]
    lr = result.history["learning_rate"]
    assert lr[0] == pytest.approx(3e-3) and lr[0] > lr[1] > lr[2]
    assert lr[1] == pytest.approx(1e-6 + 0.5 * (3e-3 - 1e-6) * (1 + np.cos(np.pi / 3)))


def test_cosine_progress_is_the_most_spent_budget():
    from xrd_strain_training.train import _budget_progress

    history = {"samples": [100, 200], "seconds": [30.0, 30.0]}
    cfg = TrainConfig(schedule="cosine", total_samples=1000, max_cpu_minutes=10, max_minutes=4)
    # samples 0.2, CPU 120 s of 600 = 0.2, wall 60 s of 240 = 0.25: the wall budget leads
    assert _budget_progress(cfg, history, cpu_done=120.0) == pytest.approx(0.25)
    assert _budget_progress(cfg, history, cpu_done=300.0) == pytest.approx(0.5)
