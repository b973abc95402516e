"""The low-strain specialist answers where the general model's answer falls in its range."""

import numpy as np
import pytest

from tests.inference.test_bundle import NAMES, _card
from xrd_strain_plugin.inference import load_bundle, save_bundle
from xrd_strain_plugin.inference.labels import LabelScaling, decode_labels
from xrd_strain_plugin.inference.specialist import RoutedPredictor, SpecialistRange
from xrd_strain_training.networks import build_cnn

SCALING = LabelScaling(names=NAMES, minimum=(0.0,) * 14, maximum=(10.0,) * 10 + (1.0, 1000.0, 0.1, 6.0))


def _constant_bundle(path, labels, *, model_id, preset):
    """A real bundle whose network answers ``labels`` for every curve (last layer: bias only)."""
    model = build_cnn(n_input=301, filters=(2, 2, 2, 2), dense_units=(4, 4))
    last = model.layers[-1]
    kernel, _ = last.get_weights()
    last.set_weights([np.zeros_like(kernel), SCALING.scale(np.asarray(labels)[None])[0]])
    save_bundle(path, model, _card(model_id=model_id, labels=SCALING, preset=preset))
    return load_bundle(path)


def _labels(e_max_percent, thickness_nm):
    weights = np.array([0.2, 0.5, 1.0, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02]) * e_max_percent
    return np.r_[weights, 0.5, thickness_nm, 0.02, 4.5]


CNN2 = {"strain_max_percent": [0.5, 8.0], "thickness_nm": [100.0, 1000.0]}
CNN3 = {"strain_max_percent": [0.5, 2.0], "thickness_nm": [100.0, 1000.0]}


@pytest.fixture(scope="module")
def specialist(tmp_path_factory):
    return _constant_bundle(tmp_path_factory.mktemp("s") / "s", _labels(0.9, 300.0), model_id="low-strain", preset=CNN3)


@pytest.mark.parametrize("e_max, routed", [(1.2, True), (5.0, False), (2.3, False)])
def test_routing_follows_the_general_answer(tmp_path, specialist, e_max, routed):
    general = _constant_bundle(tmp_path / "g", _labels(e_max, 400.0), model_id="general", preset=CNN2)
    predictor = RoutedPredictor(general, specialist)
    out = predictor.predict_labels(np.full((3, 301), -2.0, dtype=np.float32))
    expected = _labels(0.9, 300.0) if routed else _labels(e_max, 400.0)
    np.testing.assert_allclose(out, np.tile(expected, (3, 1)), rtol=1e-5, atol=1e-5)
    roles = {m["role"] for m in predictor.last_models}
    assert roles == ({"specialist"} if routed else {"general"})
    ids = {m["id"] for m in predictor.last_models}
    assert ids == ({"low-strain"} if routed else {"general"})
    assert len(predictor.last_models) == 3


def test_range_from_card_and_margin():
    r = SpecialistRange(strain_max_percent=(0.5, 2.0), thickness_nm=(100.0, 1000.0))
    np.testing.assert_array_equal(
        r.contains([0.4, 0.6, 1.89, 1.91, 1.0], [500, 500, 500, 500, 50]), [False, True, True, False, False]
    )
    e = decode_labels(_labels(1.2, 400.0)[None], n_weights=10, n_slices=50).strain_max_percent
    assert 0.8 * 1.2 < e[0] <= 1.2  # the spline peaks a little below the largest weight


def test_incompatible_bundles_are_refused(tmp_path):
    general = _constant_bundle(tmp_path / "g", _labels(1.0, 400.0), model_id="general", preset=CNN2)
    other = build_cnn(n_input=301, filters=(2, 2, 2, 2), dense_units=(4, 4))
    save_bundle(tmp_path / "o", other, _card(model_id="other", labels=SCALING, preset=CNN3, n_slices=80))
    with pytest.raises(ValueError, match="decodes profiles differently"):
        RoutedPredictor(general, load_bundle(tmp_path / "o"))
    no_range = _constant_bundle(tmp_path / "n", _labels(1.0, 400.0), model_id="n", preset={})
    with pytest.raises(ValueError, match="no training ranges"):
        RoutedPredictor(general, no_range)
