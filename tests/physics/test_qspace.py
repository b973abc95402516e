"""Angles, Q, strain axis and the model grid (xrd_strain_plugin.physics.qspace)."""

from pathlib import Path

import numpy as np
import pytest

from xrd_strain_plugin.physics import qspace
from xrd_strain_plugin.physics.qspace import CurveError, ModelGrid

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
WAVELENGTH = 1.5406  # Cu K-alpha1, angstrom
A_YSZ = 5.145  # cubic YSZ lattice parameter, angstrom
Q_BRAGG = 2 * np.pi * 4 / A_YSZ  # 400 reflection: |H| = 2 pi * 4 / a


def bragg_two_theta_deg(d_angstrom):
    """Bragg's law lambda = 2 d sin(theta), solved independently of the module."""
    return 2 * np.degrees(np.arcsin(WAVELENGTH / (2 * d_angstrom)))


def test_ysz_400_bragg_q():
    """Fact: Q_B of YSZ 400 at Cu K-alpha1 is 2 pi 4 / a = 4.885 1/angstrom, at 2theta = 73.578 deg."""
    two_theta = bragg_two_theta_deg(A_YSZ / 4)
    assert two_theta == pytest.approx(73.578, abs=1e-3)
    assert qspace.two_theta_deg_to_q(two_theta, WAVELENGTH) == pytest.approx(4.885, abs=1e-3)
    assert qspace.two_theta_deg_to_q(two_theta, WAVELENGTH) == pytest.approx(Q_BRAGG, rel=1e-12)


def test_q_two_theta_round_trip_and_limits():
    two_theta = np.linspace(1.0, 179.0, 50)
    q = qspace.two_theta_deg_to_q(two_theta, WAVELENGTH)
    np.testing.assert_allclose(qspace.q_to_two_theta_deg(q, WAVELENGTH), two_theta, rtol=1e-12)
    # Fact: back-scattering (2theta = 180 deg) gives the largest Q, 4 pi / lambda.
    assert qspace.two_theta_deg_to_q(180.0, WAVELENGTH) == pytest.approx(4 * np.pi / WAVELENGTH)
    with pytest.raises(ValueError, match="unreachable"):
        qspace.q_to_two_theta_deg(4 * np.pi / WAVELENGTH * 1.01, WAVELENGTH)
    with pytest.raises(ValueError, match="wavelength_angstrom"):
        qspace.two_theta_deg_to_q(70.0, 0.0)


@pytest.mark.parametrize("strain", [-0.01, 0.0, 0.003, 0.02, 0.08])
def test_strained_lattice_lands_at_its_strain(strain):
    """Fact: a lattice with d = d0 (1 + e) diffracts at e on the strain axis q_B/q - 1."""
    two_theta = bragg_two_theta_deg(A_YSZ / 4 * (1 + strain))
    q = qspace.two_theta_deg_to_q(two_theta, WAVELENGTH)
    assert qspace.strain_axis(q, Q_BRAGG) == pytest.approx(strain, abs=1e-12)


def test_model_grid_is_frozen_keyword_only_and_validated():
    grid = ModelGrid(strain_min=-0.01, strain_max=0.04)
    assert grid.n_points == 1001
    assert grid.strain[0] == -0.01 and grid.strain[-1] == 0.04 and grid.strain.size == 1001
    with pytest.raises(TypeError):
        ModelGrid(-0.01, 0.04)  # keyword-only
    with pytest.raises(AttributeError):
        grid.n_points = 5  # frozen
    with pytest.raises(ValueError, match="strain_min < strain_max"):
        ModelGrid(strain_min=0.02, strain_max=0.01)
    with pytest.raises(ValueError, match="n_points"):
        ModelGrid(strain_min=0.0, strain_max=0.01, n_points=1)


def peak_curve(center_strain, two_theta):
    """Gaussian peak in 2theta at the Bragg angle of a lattice strained by center_strain."""
    center = bragg_two_theta_deg(A_YSZ / 4 * (1 + center_strain))
    return 1e-6 + 250.0 * np.exp(-0.5 * ((two_theta - center) / 0.01) ** 2)


def test_peak_at_strain_e_lands_at_e_on_the_model_grid():
    """A curve peaked at the Bragg angle of strain e has its model-input maximum at e."""
    grid = ModelGrid(strain_min=-0.005, strain_max=0.03, n_points=3501)  # 1e-5 spacing
    two_theta = np.linspace(70.0, 74.0, 4001)
    strains = np.array([0.0, 0.004, 0.012, 0.025])
    curves = np.stack([peak_curve(e, two_theta) for e in strains])
    x = qspace.to_model_input(
        two_theta, curves, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG, grid=grid
    )
    assert x.shape == (4, 3501) and x.dtype == np.float32
    np.testing.assert_allclose(grid.strain[np.argmax(x, axis=1)], strains, atol=2e-5)
    np.testing.assert_allclose(x.max(axis=1), 0.0, atol=1e-3)  # log10(I / I_max) <= 0


def test_outside_measured_range_is_filled_with_the_curve_minimum():
    grid = ModelGrid(strain_min=-0.05, strain_max=0.05, n_points=1001)
    two_theta = np.linspace(72.0, 74.0, 500)  # covers only about -0.004 .. 0.02
    curve = peak_curve(0.01, two_theta)
    x = qspace.to_model_input(
        two_theta, curve, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG, grid=grid
    )[0]
    minimum = np.log10(curve.min() / curve.max())
    assert x[0] == pytest.approx(minimum, abs=1e-5) and x[-1] == pytest.approx(minimum, abs=1e-5)
    assert x.min() == pytest.approx(minimum, abs=1e-5)


def test_shared_and_per_curve_angles_agree():
    grid = ModelGrid(strain_min=-0.01, strain_max=0.03, n_points=1001)
    two_theta = np.linspace(71.0, 74.0, 800)
    curves = np.stack([peak_curve(e, two_theta) for e in (0.002, 0.02)])
    shared = qspace.to_model_input(
        two_theta, curves, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG, grid=grid
    )
    per_curve = qspace.to_model_input(
        np.stack([two_theta, two_theta]),
        curves,
        wavelength_angstrom=WAVELENGTH,
        q_bragg_inv_angstrom=Q_BRAGG,
        grid=grid,
    )
    np.testing.assert_allclose(shared, per_curve, atol=1e-6)


def read_measured():
    data = np.loadtxt(DATA / "ysz_400_irradiated.xy")
    return data[:, 0], data[:, 1]


def test_measured_curve_round_trip_through_the_model_grid():
    """Resampling onto a grid finer than the data and back reproduces the measured curve."""
    two_theta, intensity = read_measured()
    q = qspace.two_theta_deg_to_q(two_theta, WAVELENGTH)
    strain = qspace.strain_axis(q, Q_BRAGG)
    grid = ModelGrid(strain_min=strain.min() - 1e-3, strain_max=strain.max() + 1e-3, n_points=20001)
    x = qspace.to_model_input(
        two_theta, intensity, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG, grid=grid
    )
    back = qspace.from_model_grid(
        x, grid=grid, two_theta_deg=two_theta, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG
    )
    error = np.log10(back[0]) - np.log10(intensity / intensity.max())
    # The two end points share a grid interval with the fill beyond the data.
    interior = error[1:-1]
    assert np.sqrt(np.mean(interior**2)) < 3e-3 and np.max(np.abs(interior)) < 0.02
    # The substrate peak (sharp maximum near 73.57 deg) sits near strain 0.
    assert abs(grid.strain[np.argmax(x[0])]) < 5e-4


def test_zero_counts_are_floored_at_the_smallest_positive_value():
    two_theta = np.linspace(72.0, 74.0, 200)
    counts = np.round(peak_curve(0.005, two_theta))
    assert np.any(counts == 0)
    grid = ModelGrid(strain_min=-0.005, strain_max=0.02, n_points=501)
    x = qspace.to_model_input(
        two_theta, counts, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG, grid=grid
    )
    assert np.all(np.isfinite(x))
    assert x.min() == pytest.approx(np.log10(1.0 / counts.max()), abs=1e-5)


def test_grid_two_theta_matches_bragg_law():
    grid = ModelGrid(strain_min=-0.01, strain_max=0.05, n_points=7)
    two_theta = qspace.grid_two_theta_deg(grid, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG)
    np.testing.assert_allclose(two_theta, bragg_two_theta_deg(A_YSZ / 4 * (1 + grid.strain)), rtol=1e-12)


GOOD_ANGLES = np.linspace(72.0, 74.0, 20)
GOOD_COUNTS = np.linspace(1.0, 20.0, 20)


@pytest.mark.parametrize(
    ("angles", "counts", "message"),
    [
        (GOOD_ANGLES, np.r_[GOOD_COUNTS[:-1], np.nan], "intensity contains NaN or inf"),
        (GOOD_ANGLES, np.r_[np.inf, GOOD_COUNTS[1:]], "intensity contains NaN or inf"),
        (np.r_[GOOD_ANGLES[:-1], np.nan], GOOD_COUNTS, "two_theta_deg contains NaN or inf"),
        (GOOD_ANGLES, np.r_[-1.0, GOOD_COUNTS[1:]], "negative intensity"),
        (GOOD_ANGLES[:5], GOOD_COUNTS[:5], "too few points"),
        (GOOD_ANGLES[::-1], GOOD_COUNTS, "not sorted"),
        (np.r_[GOOD_ANGLES[:10], GOOD_ANGLES[9:-1]], GOOD_COUNTS, "duplicate angles"),
        (GOOD_ANGLES, np.zeros(20), "zero everywhere"),
        (GOOD_ANGLES, GOOD_COUNTS[:-1], "length mismatch"),
        (GOOD_ANGLES + 110.0, GOOD_COUNTS, r"outside \(0, 180\)"),
    ],
)
def test_validate_curve_names_the_problem(angles, counts, message):
    with pytest.raises(CurveError, match=message):
        qspace.validate_curve(angles, counts)
    # to_model_input goes through the same checks.
    with pytest.raises(ValueError, match=message):
        qspace.to_model_input(
            angles,
            counts,
            wavelength_angstrom=WAVELENGTH,
            q_bragg_inv_angstrom=Q_BRAGG,
            grid=ModelGrid(strain_min=0.0, strain_max=0.01),
        )


def test_validate_curve_reports_the_bad_curve_in_a_batch():
    counts = np.stack([GOOD_COUNTS, GOOD_COUNTS, np.r_[GOOD_COUNTS[:-1], -2.0]])
    with pytest.raises(CurveError, match="curve 2, point 19"):
        qspace.validate_curve(GOOD_ANGLES, counts)
    angles, batch = qspace.validate_curve(GOOD_ANGLES, GOOD_COUNTS, min_points=20)
    assert angles.shape == (20,) and batch.shape == (1, 20)


def test_large_batches_resample_exactly_like_single_curves():
    """The batched (sparse-matrix) path equals np.interp curve by curve, both ways."""
    grid = ModelGrid(strain_min=-0.01, strain_max=0.03, n_points=1001)
    two_theta = np.linspace(71.5, 74.0, 700)
    rng = np.random.default_rng(5)
    curves = np.stack([peak_curve(e, two_theta) for e in rng.uniform(-0.002, 0.02, 40)])
    curves = rng.poisson(curves * 100).astype(float) + (curves > 0)  # counting noise
    batch = qspace.to_model_input(
        two_theta, curves, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG, grid=grid
    )
    single = np.concatenate(
        [
            qspace.to_model_input(two_theta, c, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG, grid=grid)
            for c in curves
        ]
    )
    np.testing.assert_allclose(batch, single, atol=1e-5)
    back_batch = qspace.from_model_grid(
        batch, grid=grid, two_theta_deg=two_theta, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG
    )
    back_single = np.concatenate(
        [
            qspace.from_model_grid(
                row, grid=grid, two_theta_deg=two_theta, wavelength_angstrom=WAVELENGTH, q_bragg_inv_angstrom=Q_BRAGG
            )
            for row in batch
        ]
    )
    np.testing.assert_allclose(back_batch, back_single, rtol=1e-9)


def test_validate_curve_points_at_the_offending_angle():
    angles = GOOD_ANGLES.copy()
    angles[7] = angles[6]
    with pytest.raises(CurveError, match=r"duplicate angles in two_theta_deg \(first at point 7\)"):
        qspace.validate_curve(angles, GOOD_COUNTS)
