"""Score-aligned targets, the profile loss and the multi-hypothesis head (issue 14)."""

import json
from pathlib import Path

import numpy as np
import pytest

from xrd_strain_plugin.inference import Inverter, load_bundle
from xrd_strain_plugin.inference.labels import (
    LabelScaling,
    decode_labels,
    labels_from_output,
    paper_from_relative,
    relative_from_paper,
    relative_names,
    split_hypotheses,
)
from xrd_strain_plugin.inference.predictor import Predictor
from xrd_strain_plugin.io import read_curve
from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_training.dataset import load_dataset
from xrd_strain_training.evaluate import evaluate_predictions
from xrd_strain_training.export import export_bundle
from xrd_strain_training.train import TrainConfig, train

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ysz_400_irradiated.xy"

SMALL = dict(filters=(4, 8), dense_units=(16,), batch_size=8, learning_rate=3e-3, kernel_size=5)


def test_relative_targets_round_trip_the_paper_labels(tiny_dataset_dir):
    ds = load_dataset(tiny_dataset_dir)
    n_slices = ds.manifest["preset"]["n_slices"]
    rel = relative_from_paper(ds.labels, n_weights=10, n_slices=n_slices)
    assert rel.shape == (ds.n, 15)
    # the shape weights have a spline maximum of 1; ln e_max is the decoded e_max
    decoded = decode_labels(ds.labels, n_weights=10, n_slices=n_slices, clip=False)
    np.testing.assert_allclose(np.exp(rel[:, 10]), decoded.strain_max_percent, rtol=1e-12)
    np.testing.assert_allclose(
        np.abs(rel[:, :10] @ profiles.profile_basis(10, n_slices).T).max(axis=1), 1.0, rtol=1e-12
    )
    back = paper_from_relative(rel, n_weights=10, n_slices=n_slices)
    np.testing.assert_allclose(back, ds.labels, rtol=1e-9, atol=1e-12)


def test_profile_loss_is_the_squared_relative_error():
    import keras

    from xrd_strain_training.losses import ProfileLoss

    rng = np.random.default_rng(1)
    n, n_w = 6, 10
    shape = np.abs(rng.normal(size=(n, n_w)))
    shape /= np.abs(shape @ profiles.profile_basis(n_w, 64).T).max(axis=1, keepdims=True)
    true = np.column_stack(
        [
            shape,
            np.log(rng.uniform(0.5, 8, n)),
            np.log(rng.uniform(0.05, 1, n)),
            np.log(rng.uniform(100, 1000, n)),
            np.log(rng.uniform(0.003, 0.1, n)),
            rng.uniform(3, 6, n),
        ]
    )
    scaling = LabelScaling.fit(np.vstack([true, true + 1.0]), relative_names(n_w))
    loss = ProfileLoss(scaling.minimum, scaling.maximum, n_weights=n_w, n_z=64)
    y_true = scaling.scale(true)
    assert float(keras.ops.max(loss.per_hypothesis(y_true, y_true))) < 1e-10
    # e_max 5 % too high, shape exact: the profile term is 0.05^2 <S^2>, plus the (ln 1.05)^2 term
    pred = true.copy()
    pred[:, 10] += np.log(1.05)
    got = np.asarray(loss.per_hypothesis(y_true, scaling.scale(pred)))[:, 0]
    s = shape @ profiles.profile_basis(n_w, 64).T
    expected = 0.05**2 * np.mean(s**2, axis=1) + np.log(1.05) ** 2
    np.testing.assert_allclose(got, expected, rtol=1e-3)
    heavy = ProfileLoss(scaling.minimum, scaling.maximum, n_weights=n_w, n_z=64, profile_weight=10)
    got = np.asarray(heavy.per_hypothesis(y_true, scaling.scale(pred)))[:, 0]
    np.testing.assert_allclose(got, 10 * 0.05**2 * np.mean(s**2, axis=1) + np.log(1.05) ** 2, rtol=1e-3)


def test_winner_takes_all_rewards_the_right_hypothesis():
    from xrd_strain_training.losses import ProfileLoss

    n_w, k = 10, 3
    true = np.r_[np.linspace(1, 0.2, n_w), np.log(2.0), np.log(0.5), np.log(400.0), np.log(0.01), 4.0]
    scaling = LabelScaling.fit(np.vstack([true - 1, true + 1]), relative_names(n_w))
    loss = ProfileLoss(scaling.minimum, scaling.maximum, n_weights=n_w, n_hypotheses=k)
    wrong = true.copy()
    wrong[10] += 0.5
    hyps = [scaling.scale(wrong[None])[0], scaling.scale(true[None])[0], scaling.scale(wrong[None])[0]]
    y_pred = np.r_[np.concatenate(hyps), [0.0, 5.0, 0.0]].astype(np.float32)[None]  # trusts #1
    y_pred_bad = np.r_[np.concatenate(hyps), [5.0, 0.0, 0.0]].astype(np.float32)[None]
    y_true = scaling.scale(true[None])
    good, bad = float(loss(y_true, y_pred)), float(loss(y_true, y_pred_bad))
    assert good < bad  # same hypotheses; the logits that pick the winner cost less
    hyp, prob = labels_from_output(
        y_pred, scaling=scaling, head={"targets": "relative", "n_hypotheses": k}, n_weights=n_w, n_slices=200
    )
    assert hyp.shape == (1, k, 14) and prob[0, 0] > 0.9
    np.testing.assert_allclose(hyp[0, 0], paper_from_relative(true[None], n_weights=n_w, n_slices=200)[0], rtol=1e-5)
    with pytest.raises(ValueError, match="outputs"):
        split_hypotheses(y_pred[:, :-1], 15, k)


def test_relaxed_winner_takes_all_weighs_the_best_hypothesis_most():
    # The winner weighs 1 - eps, each loser eps / (K - 1): the shares sum to 1, so K equal losses
    # cost that loss; with eps = 0 only the best hypothesis counts. The logits' cross-entropy
    # against the winner is added: confident logits for the winner cost (almost) nothing.
    from keras import ops

    from xrd_strain_training.losses import _relaxed_winner_takes_all

    losses = np.array([[0.5, 0.2, 0.9], [0.3, 0.3, 0.3]], dtype=np.float32)
    flat = np.zeros((2, 3), dtype=np.float32)
    got = np.asarray(_relaxed_winner_takes_all(ops, losses, flat, eps=0.0, logit_weight=0.0))
    np.testing.assert_allclose(got, [0.2, 0.3], rtol=1e-6)
    got = np.asarray(_relaxed_winner_takes_all(ops, losses, flat, eps=0.1, logit_weight=0.0))
    np.testing.assert_allclose(got, [0.9 * 0.2 + 0.05 * (0.5 + 0.9), 0.3], rtol=1e-6)
    sure = np.array([[0.0, 20.0, 0.0], [20.0, 0.0, 0.0]], dtype=np.float32)  # the winners: 1, then 0 (first min)
    with_ce = np.asarray(_relaxed_winner_takes_all(ops, losses, sure, eps=0.0, logit_weight=1.0))
    np.testing.assert_allclose(with_ce, [0.2, 0.3], atol=1e-6)
    unsure = np.asarray(_relaxed_winner_takes_all(ops, losses, flat, eps=0.0, logit_weight=1.0))
    np.testing.assert_allclose(unsure, [0.2 + np.log(3), 0.3 + np.log(3)], rtol=1e-5)


def test_multi_hypothesis_run_exports_a_bundle_that_proposes(tiny_dataset_dir, tmp_path):
    ds = load_dataset(tiny_dataset_dir)
    config = TrainConfig(epochs=3, targets="relative", loss="profile", n_hypotheses=3, **SMALL)
    result = train(ds, tmp_path / "run", config, verbose=0, monitor=ds)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert {k: result.head[k] for k in ("targets", "n_hypotheses", "loss")} == {
        "targets": "relative",
        "n_hypotheses": 3,
        "loss": "profile",
    }
    assert LabelScaling.from_dict(result.head["paper_labels"]).names == ds.label_names
    monitor = result.history["monitor"]
    assert len(monitor) == 3 and 0.0 <= monitor[-1]["a_strain"] <= monitor[-1]["a_strain_any"]
    assert result.history["samples"] == [43, 86, 129]  # 48 curves, 10 % for validation
    bundle_dir = tmp_path / "bundle"
    (bundle_dir).mkdir()
    (bundle_dir / "proposals.npz").write_bytes(b"a library another step adds")
    card = export_bundle(
        bundle_dir,
        model=result.model,
        scaling=result.scaling,
        train_manifest=ds.manifest,
        train_state=result.state,
        model_id="tiny",
        head=result.head,
    )
    assert card.n_outputs == 3 * 16 and "proposals.npz" in card.files
    assert json.loads((bundle_dir / "card.json").read_text())["head"]["n_hypotheses"] == 3
    fast, keras_bundle = load_bundle(bundle_dir), load_bundle(bundle_dir, runtime="keras")
    assert fast.runtime == "numpy"
    labels, prob = Predictor(fast).predict_proposals(ds.x[:5])
    labels_k, _ = Predictor(keras_bundle).predict_proposals(ds.x[:5])
    np.testing.assert_allclose(labels, labels_k, rtol=1e-3, atol=1e-4)
    assert labels.shape == (5, 3, 14) and np.all(np.diff(prob, axis=1) <= 0)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    np.testing.assert_array_equal(Predictor(fast).predict_labels(ds.x[:5]), labels[:, 0])
    ev = evaluate_predictions(
        ds.labels[:5],
        labels[:, 0],
        scaling=LabelScaling.fit(ds.labels, ds.label_names),
        n_weights=10,
        n_slices=ds.manifest["preset"]["n_slices"],
    )
    assert ev.n == 5
    # an ensemble: every member's hypotheses, the first member answers
    from xrd_strain_plugin.inference import default_bundle_path
    from xrd_strain_plugin.inference.predictor import EnsemblePredictor

    shipped = load_bundle(default_bundle_path())
    ensemble = EnsemblePredictor([fast, shipped])
    e_labels, e_prob = ensemble.predict_proposals(ds.x[:5])
    k_shipped = shipped.card.n_hypotheses
    assert e_labels.shape == (5, 3 + k_shipped, 14)
    np.testing.assert_array_equal(e_labels[:, :3], labels)
    np.testing.assert_allclose(e_labels[:, 3:], Predictor(shipped).predict_proposals(ds.x[:5])[0])
    np.testing.assert_allclose(e_prob.sum(axis=1), 1.0)
    np.testing.assert_array_equal(ensemble.predict_labels(ds.x[:5]), labels[:, 0])
    # Inverter.propose: K full answers on the real curve, the first one invert's
    two_theta, counts = read_curve(REAL)
    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    inverter = Inverter(fast)
    results, p = inverter.propose(two_theta, counts, refl)
    assert len(results) == 3 and p.shape == (3,) and np.all(np.diff(p) <= 0)
    first = inverter.invert(two_theta, counts, refl)
    assert results[0].sigma_i == pytest.approx(first.sigma_i, rel=1e-9)
    assert all(np.isfinite(r.sigma_i) for r in results)
    assert len({round(r.strain_max_percent, 9) for r in results}) == 3  # distinct hypotheses


def test_profile_loss_needs_relative_targets(tiny_dataset_dir, tmp_path):
    ds = load_dataset(tiny_dataset_dir)
    with pytest.raises(ValueError, match="relative"):
        train(ds, tmp_path / "r", TrainConfig(epochs=1, loss="profile", **SMALL), verbose=0)
    with pytest.raises(ValueError, match="profile loss"):
        train(ds, tmp_path / "r", TrainConfig(epochs=1, n_hypotheses=2, **SMALL), verbose=0)
