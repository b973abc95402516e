"""The random draws follow the preset's distributions and give physical profiles."""

import numpy as np
import pytest

from xrd_strain_plugin.inference.labels import strain_max_percent
from xrd_strain_plugin.physics import profiles
from xrd_strain_training.presets import get_preset
from xrd_strain_training.sampling import draw_parameters, shape_profiles


@pytest.mark.parametrize("name", ["CNN1", "CNN2", "CNN3"])
def test_draws_fill_the_preset_ranges_uniformly(name):
    preset = get_preset(name)
    draw = draw_parameters(np.random.default_rng(0), preset, 4000)
    for key, values in (
        ("thickness_nm", draw.thickness_nm),
        ("strain_max_percent", draw.strain_max_percent),
        ("dw_min", draw.dw_min),
        ("resolution_fwhm_deg", draw.resolution_fwhm_deg),
        ("log10_scale", draw.log10_scale),
        ("log10_background", draw.log10_background),
    ):
        low, high = getattr(preset, key)
        span = high - low
        assert values.min() >= low and values.max() <= high, key
        # Uniform: both ends reached within 1 % and the mean within 3 % of the middle.
        assert values.min() < low + 0.01 * span and values.max() > high - 0.01 * span, key
        assert abs(values.mean() - (low + high) / 2) < 0.03 * span, key


def test_weights_carry_e_max_and_the_strain_is_tensile():
    preset = get_preset("CNN2")
    draw = draw_parameters(np.random.default_rng(1), preset, 500)
    np.testing.assert_allclose(
        strain_max_percent(draw.weights_percent, preset.n_slices), draw.strain_max_percent, rtol=1e-12
    )
    strain = draw.weights_percent @ profiles.profile_basis(10, preset.n_slices).T
    assert strain.min() >= 0.0
    # The spline is pinned to zero at the interface with the substrate.
    end = draw.weights_percent @ profiles.bspline_basis(11, np.array([1.0]))[:, :10].T
    np.testing.assert_allclose(end, 0.0, atol=1e-12)


def test_scan_limits_cover_substrate_and_layer():
    draw = draw_parameters(np.random.default_rng(2), get_preset("CNN2"), 1000)
    assert np.all(draw.strain_low <= -0.003)
    assert np.all(draw.strain_high >= 1.1 * draw.strain_max_percent / 100 + 0.003)


def test_shapes_have_unit_peak_and_every_option_works():
    rng = np.random.default_rng(3)
    shapes = shape_profiles(rng, 300, 100, ("asymmetric_gaussian", "bimodal", "flat"))
    np.testing.assert_allclose(shapes.max(axis=1), 1.0)
    assert shapes.min() >= 0.0


def test_same_seed_same_draw():
    a = draw_parameters(np.random.default_rng(9), get_preset("CNN3"), 50)
    b = draw_parameters(np.random.default_rng(9), get_preset("CNN3"), 50)
    np.testing.assert_array_equal(a.weights_percent, b.weights_percent)
