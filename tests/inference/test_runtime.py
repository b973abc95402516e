"""The numpy runtime: the bundle's network without TensorFlow, equal to Keras to float tolerance,
and checked (sha256, shapes) like the Keras weights."""

import json

import numpy as np
import pytest

from tests.inference.test_bundle import _card
from xrd_strain_plugin.inference import BundleError, default_bundle_path, load_bundle, save_bundle
from xrd_strain_plugin.inference.predictor import Predictor
from xrd_strain_plugin.inference.runtime import NumpyNetwork, UnsupportedLayer, check_against_keras, export_network
from xrd_strain_training.networks import build_cnn


def _inputs(n, n_points, seed=0):
    # log10 relative intensities: <= 0, a few decades deep, with a peak
    rng = np.random.default_rng(seed)
    x = -np.abs(rng.normal(2.0, 1.5, size=(n, n_points))).cumsum(axis=1) / n_points * 5
    return x.astype(np.float32)


def test_shipped_bundle_numpy_equals_keras():
    path = default_bundle_path()
    fast, reference = load_bundle(path), load_bundle(path, runtime="keras")
    assert fast.runtime == "numpy" and reference.runtime == "keras"
    x = _inputs(32, fast.card.grid.n_points)
    a = Predictor(fast).predict_scaled(x)
    b = Predictor(reference).predict_scaled(x)
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=0)
    assert fast.card.runtime["numpy"]["max_abs_diff_vs_keras"] < 1e-5


@pytest.mark.parametrize(
    "kw", [dict(), dict(input_pool=2, filters=(3, 4, 5, 6)), dict(input_pool=3, filters=(2, 2, 2, 2), dense_units=(7,))]
)
def test_variants_match_keras(kw, tmp_path):
    model = build_cnn(n_input=1001, **{"filters": (2, 3, 4, 5), "dense_units": (6, 5), **kw})
    # non-trivial batch-norm statistics
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(np.linspace(-0.5, 0.5, n))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, n))
    export_network(model, tmp_path / "n.npz")
    net = NumpyNetwork.load(tmp_path / "n.npz")
    assert net.input_shape == model.input_shape and net.output_shape == model.output_shape
    x = _inputs(8, 1001)[..., None]
    assert check_against_keras(model, net, x, atol=1e-5) < 1e-5


def test_bundle_carries_and_checks_the_numpy_network(tmp_path):
    model = build_cnn(n_input=301, filters=(2, 2, 2, 2), dense_units=(4, 4))
    card = save_bundle(tmp_path / "b", model, _card())
    assert card.runtime["numpy"]["file"] == "network.npz"
    assert load_bundle(tmp_path / "b").runtime == "numpy"
    data = bytearray((tmp_path / "b" / "network.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "b" / "network.npz").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="network.npz is corrupt or was modified"):
        load_bundle(tmp_path / "b")
    assert load_bundle(tmp_path / "b", runtime="keras").runtime == "keras"  # Keras still loads
    with pytest.raises(BundleError, match="runtime must be one of"):
        load_bundle(tmp_path / "b", runtime="onnx")


def test_bundle_without_numpy_network(tmp_path, monkeypatch):
    model = build_cnn(n_input=301, filters=(2, 2, 2, 2), dense_units=(4, 4))
    save_bundle(tmp_path / "b", model, _card())
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    card["runtime"] = {}
    (tmp_path / "b" / "card.json").write_text(json.dumps(card))
    assert load_bundle(tmp_path / "b").runtime == "keras"  # old bundles: Keras
    with pytest.raises(BundleError, match="has no numpy network"):
        load_bundle(tmp_path / "b", runtime="numpy")
    monkeypatch.setenv("XRD_STRAIN_RUNTIME", "numpy")
    with pytest.raises(BundleError, match="has no numpy network"):
        load_bundle(tmp_path / "b")


def test_unsupported_layer_is_named(tmp_path):
    import keras

    inputs = keras.Input(shape=(301, 1))
    x = keras.layers.Conv1D(2, 3, dilation_rate=2)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    with pytest.raises(UnsupportedLayer, match="dilated"):
        export_network(model, tmp_path / "n.npz")
