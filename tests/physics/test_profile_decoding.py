"""One home for encoding and decoding profiles (xrd_strain_plugin.physics.profiles): the basis rule,
weights fitted at any depths, the depth table with coupled DW."""

import numpy as np
import pytest

from xrd_strain_plugin.physics import profiles


def test_the_weights_basis_drops_the_interface_function_so_every_profile_ends_at_zero():
    # Fact: of the n + 1 clamped functions only the last is non-zero at z = 1; it is dropped.
    full = profiles.bspline_basis(11, np.array([0.0, 0.37, 1.0]))
    pinned = profiles.weights_basis(10, np.array([0.0, 0.37, 1.0]))
    np.testing.assert_array_equal(pinned, full[:, :10])
    np.testing.assert_array_equal(pinned[-1], 0.0)
    np.testing.assert_allclose(
        profiles.profile_basis(10, 50), profiles.weights_basis(10, profiles.slice_midpoints(50)), rtol=0, atol=0
    )


def test_weights_fitted_at_any_depths_give_back_the_profile_they_came_from():
    rng = np.random.default_rng(7)
    weights = rng.uniform(0, 2, 8)
    z = np.sort(rng.uniform(0, 1, 60))
    values = profiles.weights_basis(8, z) @ weights
    np.testing.assert_allclose(profiles.fit_weights_at(z, values, 8), weights, rtol=1e-9, atol=1e-12)


def test_depth_table_runs_from_the_surface_to_the_interface_with_the_coupled_dw_law():
    weights = np.array([0.2, 0.8, 1.6, 2.0, 1.2, 0.5, 0.1, 0.0, 0.0, 0.0])
    depth, strain_pct, dw = profiles.depth_table(weights, thickness_nm=300.0, dw_min=0.4, n_depth=201)
    assert depth[0] == 0.0 and depth[-1] == 300.0 and depth.size == 201
    assert strain_pct[-1] == 0.0 and dw[-1] == 1.0
    # Fact (the paper's coupling): DW = exp(ln(DW_min) (e / e_max)^2), DW_min where |e| is largest.
    i = int(np.argmax(np.abs(strain_pct)))
    assert dw[i] == pytest.approx(0.4)
    np.testing.assert_allclose(dw, np.exp(np.log(0.4) * (strain_pct / strain_pct[i]) ** 2), rtol=1e-12)
    # rescaled so the largest |strain| is the given e_max; the shape is kept
    _, scaled, dw_scaled = profiles.depth_table(
        weights, thickness_nm=300.0, dw_min=0.4, n_depth=201, strain_max_percent=3.0
    )
    assert np.max(np.abs(scaled)) == pytest.approx(3.0)
    np.testing.assert_allclose(scaled, strain_pct * 3.0 / strain_pct[i], rtol=1e-12)
    np.testing.assert_allclose(dw_scaled, dw, rtol=1e-12)


def test_an_unknown_dw_mode_is_named():
    assert profiles.check_dw_mode("coupled") == "coupled"
    with pytest.raises(ValueError, match="dw_mode must be one of"):
        profiles.check_dw_mode("linked")
