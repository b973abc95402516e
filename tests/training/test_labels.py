"""Labels round-trip: scaling is invertible and decoding reproduces the profile that was encoded."""

import numpy as np
import pytest

from xrd_strain_plugin.inference.labels import LabelScaling, decode_labels
from xrd_strain_plugin.physics import profiles
from xrd_strain_training.presets import get_preset
from xrd_strain_training.sampling import draw_parameters


def _labels(n=200):
    preset = get_preset("CNN2")
    d = draw_parameters(np.random.default_rng(4), preset, n)
    dr = np.random.default_rng(5).uniform(3, 6, n)
    return preset, np.column_stack([d.weights_percent, d.dw_min, d.thickness_nm, d.resolution_fwhm_deg, dr]), d


def test_min_max_scaling_round_trips_to_unit_interval():
    preset, labels, _ = _labels()
    scaling = LabelScaling.fit(labels, preset.label_names)
    scaled = scaling.scale(labels)
    assert scaled.min() == pytest.approx(0.0, abs=1e-6)
    assert scaled.max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(scaling.unscale(scaled), labels, rtol=1e-5, atol=1e-6)
    assert LabelScaling.from_dict(scaling.to_dict()) == scaling


def test_decoding_recovers_the_drawn_parameters():
    preset, labels, draw = _labels()
    dec = decode_labels(labels, n_weights=10, n_slices=preset.n_slices)
    np.testing.assert_allclose(dec.strain_max_percent, draw.strain_max_percent, rtol=1e-12)
    np.testing.assert_allclose(100 * dec.strain.max(axis=1), draw.strain_max_percent, rtol=1e-12)
    np.testing.assert_array_equal(dec.thickness_nm, draw.thickness_nm)
    # Coupled DW: DW_min exactly where the strain peaks, 1 where it vanishes.
    np.testing.assert_allclose(dec.debye_waller.min(axis=1), draw.dw_min, rtol=1e-9)


def test_profile_to_weights_to_profile():
    # Fitting the decoded profile gives back the weights (the spline basis is full rank).
    preset, labels, draw = _labels(20)
    dec = decode_labels(labels, n_weights=10, n_slices=preset.n_slices)
    refit = profiles.fit_weights(100 * dec.strain, 10)
    np.testing.assert_allclose(refit, draw.weights_percent, atol=1e-9)


def test_wrong_label_count_is_refused():
    with pytest.raises(ValueError, match="14 columns"):
        decode_labels(np.zeros((2, 12)), n_weights=10, n_slices=50)
