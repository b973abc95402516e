"""The paper's published generator recipe (issue 9) and the cheaper simulation paths."""

import numpy as np
import pytest

from xrd_strain_plugin.inference.labels import decode_labels, strain_max_percent
from xrd_strain_plugin.physics import instrument, profiles
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.physics.qspace import q_to_two_theta_deg
from xrd_strain_training.generate import _grouped_scans, per_curve_scans, shared_scans
from xrd_strain_training.presets import get_preset
from xrd_strain_training.sampling import (
    draw_parameters,
    paper_counts_exponents,
    paper_scan_limits,
    paper_shape_profiles,
    paper_weights,
)

YSZ = make_reflection("YSZ", (4, 0, 0), 1.5406)


def test_paper_shapes_peak_between_surface_and_0_3_t_from_the_interface():
    n_slices = 400
    shapes = paper_shape_profiles(np.random.default_rng(0), 5000, n_slices)
    np.testing.assert_allclose(shapes.max(axis=1), 1.0)
    z = profiles.slice_midpoints(n_slices)
    peak_from_interface = 1.0 - z[shapes.argmax(axis=1)]
    # peak in [0.3 t, t) from the interface (ties with a plateau may move the argmax deeper)
    unmixed = shapes.min(axis=1) < 0.5
    assert peak_from_interface[unmixed].min() >= 0.3 - 1.0 / n_slices
    assert peak_from_interface.max() <= 1.0
    # a quarter of the curves get a constant mixed in: their floor on one side stays high
    plateau = np.mean(np.minimum(shapes[:, 0], shapes[:, -1]) > 0.5)
    assert 0.03 < plateau < 0.25


def test_paper_weights_are_normalised_and_reach_the_interface():
    w = paper_weights(np.random.default_rng(1), 3000, 10, 200)
    np.testing.assert_allclose(w.max(axis=1), 1.0)
    assert w.min() >= 0.0
    assert not np.any(np.all(w[:, -2:] <= 0.01, axis=1))  # the redraw rule


def test_paper_counts_ratio_rule():
    s, b = paper_counts_exponents(np.random.default_rng(2), 20000, (3.0, 7.0), (0.0, 1.7))
    assert np.all((s - b > 3) & (s - b < 6))
    assert s.min() >= 3 and s.max() <= 7 and b.min() >= 0 and b.max() <= 1.7


def test_paper_scan_limits_are_rounded_and_cover_the_layer():
    e_max = np.random.default_rng(3).uniform(0.5, 8.0, 2000)
    low, high = paper_scan_limits(np.random.default_rng(4), e_max, YSZ.two_theta_bragg_deg)
    two_theta = lambda e: q_to_two_theta_deg(YSZ.q_bragg_inv_angstrom / (1 + e), YSZ.wavelength_angstrom)
    for e in (low, high):
        np.testing.assert_allclose(two_theta(e) * 100, np.round(two_theta(e) * 100), atol=1e-6)
    tan = np.tan(YSZ.theta_bragg)
    # linearised window: strain ~ -eps2 .. e_max + eps1 with eps in [0.002, 0.025] (+ rounding)
    slack = 0.005 / np.degrees(2 * tan)  # half a rounding step, in strain
    assert np.all(-low >= 0.002 - slack - 2e-4) and np.all(-low <= 0.025 + slack + 2e-4)
    assert np.all(high - e_max / 100 >= 0.002 - slack - 2e-3)


def test_paper_preset_draws_follow_the_recipe():
    preset = get_preset("CNN2-PAPER")
    draw = draw_parameters(np.random.default_rng(5), preset, 3000, two_theta_bragg_deg=YSZ.two_theta_bragg_deg)
    assert draw.paper_recipe.all()
    np.testing.assert_allclose(draw.thickness_nm % 10, 0.0, atol=1e-9)
    assert draw.thickness_nm.min() >= 100 and draw.thickness_nm.max() <= 1000
    np.testing.assert_allclose(
        strain_max_percent(draw.weights_percent, preset.n_slices), draw.strain_max_percent, rtol=1e-12
    )
    # the largest weight is the drawn e_max, in [0.5, 8] %
    top = draw.weights_percent.max(axis=1)
    assert top.min() >= 0.5 and top.max() <= 8.0
    assert np.all(draw.log10_background <= 1.7)
    with pytest.raises(ValueError, match="two_theta_bragg_deg"):
        draw_parameters(np.random.default_rng(5), preset, 3)


def test_superset_mixes_both_recipes_and_shares_profiles():
    preset = get_preset("CNN2-SUPERSET")
    draw = draw_parameters(
        np.random.default_rng(6), preset, 4000, two_theta_bragg_deg=YSZ.two_theta_bragg_deg, per_profile=4
    )
    assert 0.55 < draw.paper_recipe.mean() < 0.65
    rows = draw.weights_percent.reshape(1000, 4, -1)
    assert np.all(rows == rows[:, :1]) and np.all(
        draw.paper_recipe.reshape(1000, 4) == draw.paper_recipe.reshape(1000, 4)[:, :1]
    )
    # resolution and counts are drawn per curve
    assert np.all(np.ptp(draw.resolution_fwhm_deg.reshape(1000, 4), axis=1) > 0)


def test_our_recipe_stream_is_unchanged_by_the_new_options():
    a = draw_parameters(np.random.default_rng(9), get_preset("CNN2"), 50)
    b = draw_parameters(
        np.random.default_rng(9), get_preset("CNN2"), 50, per_profile=1, two_theta_bragg_deg=YSZ.two_theta_bragg_deg
    )
    np.testing.assert_array_equal(a.weights_percent, b.weights_percent)
    np.testing.assert_array_equal(a.log10_background, b.log10_background)


def _scan_inputs(preset, n, k, seed):
    draw = draw_parameters(
        np.random.default_rng(seed), preset, n, per_profile=k, two_theta_bragg_deg=YSZ.two_theta_bragg_deg
    )
    lam, q_b, step = YSZ.wavelength_angstrom, YSZ.q_bragg_inv_angstrom, preset.step_deg
    start = np.floor(q_to_two_theta_deg(q_b / (1 + draw.strain_high), lam) / step + 1e-9).astype(int)
    stop = np.ceil(q_to_two_theta_deg(q_b / (1 + draw.strain_low), lam) / step - 1e-9).astype(int)
    labels = np.column_stack(
        [draw.weights_percent, draw.dw_min, draw.thickness_nm, draw.resolution_fwhm_deg, np.zeros(n)]
    )
    prof = decode_labels(labels, n_weights=preset.n_weights, n_slices=preset.n_slices, clip=False)
    return draw, start, stop, step, prof


def test_per_curve_scans_equal_simulate_scan_of_each_curve_alone():
    preset = get_preset("CNN2-PAPER", n_slices=40)
    draw, start, stop, step, prof = _scan_inputs(preset, 6, 1, 11)
    kw = dict(shape=preset.resolution_shape, eta=preset.resolution_eta)
    curves = per_curve_scans(
        start, stop, step, prof.strain, prof.debye_waller, draw.thickness_nm, draw.resolution_fwhm_deg, YSZ, **kw
    )
    for i in range(6):
        alone = instrument.simulate_scan(
            np.arange(start[i], stop[i] + 1) * step,
            prof.strain[i],
            prof.debye_waller[i],
            draw.thickness_nm[i],
            YSZ,
            resolution_fwhm_deg=draw.resolution_fwhm_deg[i],
            **kw,
        )[0]
        # equal up to the pseudo-Voigt tails from the group's padded (longer) window
        np.testing.assert_allclose(curves[i], alone, rtol=1e-4, atol=1e-14)
    # the v1 layout gives the same curves up to its padded-grid approximation (< 2 %)
    grouped = _grouped_scans(start, stop, step, prof, draw, YSZ, **kw)
    for a, b in zip(grouped, curves):
        np.testing.assert_allclose(a, b, rtol=0.02, atol=1e-9 * b.max())


def test_shared_scans_match_separate_simulations():
    """One intrinsic curve, four resolutions and windows: within 4 % of four separate simulations
    (the difference is the coarser cell averaging of the substrate peak in the separate ones)."""
    preset = get_preset("CNN2-PAPER", n_slices=40)
    draw, start, stop, step, prof = _scan_inputs(preset, 8, 4, 12)
    kw = dict(shape=preset.resolution_shape, eta=preset.resolution_eta)
    shared = shared_scans(
        start,
        stop,
        step,
        prof.strain,
        prof.debye_waller,
        draw.thickness_nm,
        draw.resolution_fwhm_deg,
        YSZ,
        draws_per_profile=4,
        **kw,
    )
    direct = per_curve_scans(
        start, stop, step, prof.strain, prof.debye_waller, draw.thickness_nm, draw.resolution_fwhm_deg, YSZ, **kw
    )
    for a, b in zip(shared, direct):
        assert a.shape == b.shape
        # far tails: within 1e-5 of the peak (below the counting noise of any drawn scale)
        np.testing.assert_allclose(a, b, rtol=0.04, atol=1e-5 * b.max())
        assert np.median(np.abs(a - b) / b) < 0.01
