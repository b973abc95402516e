"""The diffraction geometry's one home (xrd_strain_plugin.physics.bragg) against hand-computed values."""

import math

import numpy as np
import pytest

from xrd_strain_plugin.physics import bragg
from xrd_strain_plugin.physics.materials import make_reflection

CU_KA1 = 1.5406


def test_bragg_law_for_si_004_at_cu_ka1_matches_the_hand_computed_angle():
    # Fact: lambda = 2 d sin(theta). Si a = 5.4310 A, d_004 = a / 4 = 1.35775 A:
    # sin(theta) = 1.5406 / 2.7155 = 0.567336, theta = 34.5645 deg, 2theta = 69.129 deg (tables: 69.13).
    d_004 = 5.4310 / 4
    assert 2 * math.degrees(bragg.bragg_angle(d_004, CU_KA1)) == pytest.approx(69.129, abs=2e-3)
    # the material database gives the same angle through the same law
    assert make_reflection("Si", (0, 0, 4), CU_KA1).two_theta_bragg_deg == pytest.approx(69.13, abs=0.01)


def test_bragg_angle_refuses_a_wavelength_with_no_bragg_angle():
    # Fact: no angle when lambda >= 2d.
    with pytest.raises(ValueError, match="no Bragg angle"):
        bragg.bragg_angle(1.0, 2.0)
    with pytest.raises(ValueError, match="> 0"):
        bragg.bragg_angle(np.array([1.0, -1.0]), CU_KA1)


def test_q_at_the_bragg_angle_is_the_reciprocal_lattice_vector():
    # Fact: at theta_B, Q = 4 pi sin(theta_B) / lambda = 2 pi / d.
    d = 1.28625  # YSZ 400
    two_theta = 2 * math.degrees(bragg.bragg_angle(d, CU_KA1))
    assert bragg.two_theta_deg_to_q(two_theta, CU_KA1) == pytest.approx(bragg.q_bragg_inv_angstrom(d), rel=1e-12)
    assert bragg.q_bragg_inv_angstrom(d) == pytest.approx(2 * math.pi / d, rel=1e-15)
    np.testing.assert_allclose(
        bragg.q_to_two_theta_deg(bragg.two_theta_deg_to_q([30.0, 73.0, 150.0], CU_KA1), CU_KA1),
        [30.0, 73.0, 150.0],
        rtol=1e-12,
    )


def test_a_strained_layer_diffracts_where_the_bragg_law_puts_its_own_spacing():
    # Fact: a lattice strained by e has d (1 + e); its peak is the Bragg angle of that spacing.
    d = 1.28625
    theta_b = bragg.bragg_angle(d, CU_KA1)
    strain = np.array([-0.01, 0.0, 0.005, 0.03])
    expected = [2 * math.degrees(bragg.bragg_angle(d * (1 + e), CU_KA1)) for e in strain]
    np.testing.assert_allclose(bragg.layer_peak_two_theta_deg(strain, theta_b), expected, rtol=1e-13)
    np.testing.assert_allclose(bragg.strain_at_two_theta_deg(expected, theta_b), strain, atol=1e-13)
    # a strain that takes the peak beyond 2theta = 180 deg has none
    assert np.isnan(bragg.layer_peak_two_theta_deg(-0.5, theta_b))


def test_fringe_period_is_two_pi_over_t_in_q_and_matches_a_kinematic_layer():
    # Fact: N planes of spacing d scatter with |sum_n exp(i Q n d)|, whose zeros are 2 pi / (N d) apart.
    d = 1.28625
    n_planes = 800  # t = 102.9 nm
    t_nm = n_planes * d / 10
    assert bragg.fringe_period_q_inv_angstrom(t_nm) == pytest.approx(2 * math.pi / (10 * t_nm), rel=1e-15)
    theta_b = bragg.bragg_angle(d, CU_KA1)
    two_theta = np.linspace(2 * math.degrees(theta_b) - 0.6, 2 * math.degrees(theta_b) + 0.6, 40001)
    q = bragg.two_theta_deg_to_q(two_theta, CU_KA1)
    x = q * d / 2
    amplitude = np.abs(np.sin(n_planes * x) / np.sin(x))
    minima = two_theta[1:-1][(amplitude[1:-1] < amplitude[:-2]) & (amplitude[1:-1] < amplitude[2:])]
    near = minima[np.abs(minima - 2 * math.degrees(theta_b)) < 0.3]
    measured = np.median(np.diff(near))
    assert measured == pytest.approx(bragg.fringe_period_two_theta_deg(t_nm, CU_KA1, theta_b), rel=5e-3)
