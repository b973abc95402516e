"""Strain and Debye-Waller depth profiles (xrd_strain_plugin.physics.profiles)."""

import numpy as np
import pytest
from scipy.interpolate import BSpline

from xrd_strain_plugin.physics import profiles


@pytest.mark.parametrize("n_basis", [4, 5, 11, 20])
def test_basis_matches_scipy_bspline(n_basis):
    """Fact: our Cox-de Boor basis equals scipy's independent B-spline implementation."""
    z = np.linspace(0.0, 1.0, 397)
    ours = profiles.bspline_basis(n_basis, z)
    m = n_basis - 3
    knots = np.r_[[0.0] * 3, np.linspace(0.0, 1.0, m + 1), [1.0] * 3]
    for k in range(n_basis):
        coefficients = np.zeros(n_basis)
        coefficients[k] = 1.0
        reference = BSpline(knots, coefficients, 3, extrapolate=False)(z)
        np.testing.assert_allclose(ours[:, k], reference, atol=1e-12, err_msg=f"basis {k}")


def test_basis_partition_of_unity_and_clamped_ends():
    """Fact: B-splines are non-negative, sum to 1, and clamped ends interpolate."""
    z = np.linspace(0.0, 1.0, 1001)
    basis = profiles.bspline_basis(11, z)
    assert np.all(basis >= -1e-15)
    np.testing.assert_allclose(basis.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(basis[0], np.eye(11)[0])
    np.testing.assert_allclose(basis[-1], np.eye(11)[-1])


def test_strain_profile_is_zero_at_interface_and_scaled_to_strain_max():
    """Fact: the profile reaches strain_max exactly and vanishes at the interface."""
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.0, 1.0, size=(50, 10))
    strain_max = rng.uniform(0.001, 0.08, size=50)
    strain = profiles.strain_from_weights(weights, strain_max, 2000)
    assert strain.shape == (50, 2000)
    np.testing.assert_allclose(strain.max(axis=1), strain_max, rtol=1e-12)
    assert np.all(strain >= 0)
    # The spline itself is 0 at z = 1: the interface basis function is the only one
    # non-zero there, and it is dropped.
    np.testing.assert_array_equal(profiles.bspline_basis(11, [1.0])[0, :10], 0.0)
    # So the last slice (midpoint 1/(2 n_slices) above the interface) goes to 0
    # linearly: doubling the slices halves its strain.
    finer = profiles.strain_from_weights(weights, strain_max, 4000)
    np.testing.assert_allclose(finer[:, -1] / strain[:, -1], 0.5, rtol=2e-2)


def test_first_weight_sets_the_surface_value():
    """Fact: a clamped spline starts at its first coefficient (w0 at the surface)."""
    weights = np.array([1.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
    strain = profiles.strain_from_weights(weights, 0.02, 10000)
    assert strain[0, 0] == pytest.approx(0.02, rel=1e-3)  # surface-peaked
    assert np.argmax(strain[0]) == 0


def test_strain_equals_direct_evaluation_of_the_spline():
    """Fact: the batched matmul equals scipy evaluating each spline separately."""
    rng = np.random.default_rng(2)
    weights = rng.uniform(-1.0, 1.0, size=(4, 10))
    n_slices = 300
    strain = profiles.strain_from_weights(weights, 0.03, n_slices)
    knots = np.r_[[0.0] * 3, np.linspace(0.0, 1.0, 9), [1.0] * 3]
    z = (np.arange(n_slices) + 0.5) / n_slices
    for row, w in zip(strain, weights):
        shape = BSpline(knots, np.r_[w, 0.0], 3)(z)
        np.testing.assert_allclose(row, 0.03 * shape / np.abs(shape).max(), rtol=1e-10)


def test_zero_weights_give_a_perfect_crystal():
    strain = profiles.strain_from_weights(np.zeros(10), 0.02, 50)
    assert np.all(strain == 0)
    np.testing.assert_array_equal(profiles.dw_coupled(strain, 0.02, 0.5), 1.0)


def test_dw_coupled_follows_the_gaussian_law():
    """Fact: DW = exp(-alpha (e/e_max)^2), alpha = -ln(DW_min): DW_min at e_max, 1 at e = 0."""
    strain = np.array([[0.0, 0.01, 0.02], [0.0, 0.005, 0.01]])
    dw = profiles.dw_coupled(strain, [0.02, 0.01], [0.3, 0.8])
    np.testing.assert_allclose(dw[:, 0], 1.0)
    np.testing.assert_allclose(dw[:, 2], [0.3, 0.8])
    np.testing.assert_allclose(dw[0, 1], 0.3**0.25)
    np.testing.assert_allclose(dw[1, 1], 0.8**0.25)


def test_dw_from_weights_spans_dw_min_to_one():
    rng = np.random.default_rng(3)
    dw = profiles.dw_from_weights(rng.uniform(0, 1, size=(20, 10)), 0.4, 1000)
    np.testing.assert_allclose(dw.min(axis=1), 0.4, rtol=1e-12)
    assert np.all(dw <= 1.0)
    assert np.all(dw[:, -1] > 0.98)  # 1/2000 of the thickness above the interface
    with pytest.raises(ValueError, match="non-negative"):
        profiles.dw_from_weights(-np.ones(10), 0.4, 100)
    with pytest.raises(ValueError, match="dw_min"):
        profiles.dw_from_weights(np.ones(10), 0.0, 100)


def test_fit_weights_round_trip():
    """Fact: a profile made from 10 weights is recovered exactly by a 10-weight fit."""
    rng = np.random.default_rng(4)
    weights = rng.uniform(0, 1, size=(30, 10))
    strain = profiles.strain_from_weights(weights, 0.025, 500)
    fitted = profiles.fit_weights(strain, 10)
    assert fitted.shape == (30, 10)
    back = profiles.strain_from_weights(fitted, 0.025, 500)
    np.testing.assert_allclose(back, strain, atol=1e-12)
    # Weights are recovered up to the common scale of the normalisation.
    np.testing.assert_allclose(
        fitted / fitted.max(axis=1, keepdims=True), weights / weights.max(axis=1, keepdims=True), atol=1e-8
    )


def test_fit_weights_approximates_a_smooth_foreign_shape():
    """A Gaussian damage peak (not a spline) is fitted within 2 % of its maximum."""
    z = (np.arange(400) + 0.5) / 400
    shape = 0.02 * np.exp(-(((z - 0.4) / 0.15) ** 2)) * (1 - z)
    fitted = profiles.strain_from_weights(profiles.fit_weights(shape, 10), shape.max(), 400)
    assert np.max(np.abs(fitted - shape)) < 0.02 * shape.max()


def test_lamellae_from_table_interpolates_at_slice_midpoints():
    """Fact: linear table, midpoints of equal slices, depth 0 at the surface."""
    layers = profiles.lamellae_from_table([0, 100, 200], [2.0, 1.0, 0.0], [0.5, 0.75, 1.0], 4)
    assert layers.thickness_nm == 200
    # Midpoints at 25, 75, 125, 175 nm.
    np.testing.assert_allclose(layers.strain, [0.0175, 0.0125, 0.0075, 0.0025])
    np.testing.assert_allclose(layers.debye_waller, [0.5625, 0.6875, 0.8125, 0.9375])
    thickness_nm, strain, dw = layers  # unpacks like a tuple
    assert strain.shape == dw.shape == (4,)


def test_lamellae_from_table_first_row_below_surface_holds_its_value():
    layers = profiles.lamellae_from_table([50, 100], [1.0, 0.0], [1.0, 1.0], 4)
    np.testing.assert_allclose(layers.strain, [0.01, 0.01, 0.0075, 0.0025])


@pytest.mark.parametrize(
    ("depth", "strain", "dw", "message"),
    [
        ([0, 100, 100], [1, 1, 0], [1, 1, 1], "strictly increasing"),
        ([0, 200, 100], [1, 1, 0], [1, 1, 1], "strictly increasing"),
        ([-5, 100], [1, 0], [1, 1], "depth_nm must be >= 0"),
        ([0.0], [1.0], [1.0], "thickness"),
        ([0, 100], [np.nan, 0], [1, 1], "strain_percent contains NaN"),
        ([0, 100], [1, 0], [1.2, 1], "debye_waller must lie within"),
        ([0, 100], [1, 0, 0], [1, 1], "same length"),
    ],
)
def test_lamellae_from_table_rejects_bad_tables(depth, strain, dw, message):
    with pytest.raises(ValueError, match=message):
        profiles.lamellae_from_table(depth, strain, dw, 10)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="n_basis"):
        profiles.bspline_basis(3, [0.5])
    with pytest.raises(ValueError, match="within"):
        profiles.bspline_basis(5, [1.5])
    with pytest.raises(ValueError, match="n_slices"):
        profiles.strain_from_weights(np.ones(10), 0.01, 0)
    with pytest.raises(ValueError, match="strain_max"):
        profiles.strain_from_weights(np.ones((3, 10)), [0.01, 0.02], 10)
