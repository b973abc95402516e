"""The static Debye-Waller factor DW between 0 and 1, uniform and depth-varying, against independent references.

Our model: chi_H and chi_-H of each lamella are multiplied by its DW; chi_0 is not (forward scattering sees
no static disorder). References:

- xrayutilities' DynamicalModel (4x4 transfer matrices) with an atomic displacement factor B on every atom
  of each lamella's cell, B chosen so that exp(-B (|H_n|/4 pi)^2) = DW at that lamella's H_n = H/(1+e_n):
  xrayutilities applies it to chi_H and chi_-H and not to chi_0 (tests/physics/xu_reference.py);
- the kinematic limit (thin layer): the layer's amplitude is DW times its DW = 1 amplitude, so R(DW) is a
  quadratic in DW at every angle and the layer peak far from the substrate scales as DW^2.

Measured figures and their command: docs/physics.md ("Debye-Waller factor"). DW = 0 (Beer-Lambert) and DW = 1
(every other xrayutilities comparison) are tested in test_dynamical.py and test_xu_sweep.py.
"""

import math

import numpy as np
import pytest

from xrd_strain_plugin.physics.materials import make_reflection

from .xu_reference import (
    b_factor_for_dw,
    compare_with_xu,
    coupled_dw,
    dw_profile,
    graded_profile,
    kinematic_dw_bound,
    layer_peak_dw_ratio,
    quadratic_dw_deviation,
    rms_log10_tolerance,
    ysz_cell,
)

R = make_reflection("YSZ", (4, 0, 0), 1.5406)


def test_b_factor_scales_chi_h_and_chi_minus_h_by_dw_and_leaves_chi_0():
    """The reference's premise, checked inside xrayutilities: with B from b_factor_for_dw, the strained
    cell's chi_H (hence chi_-H, centrosymmetric cell) is DW times its B = 0 value at H_n and chi_0 is unchanged."""
    import xrayutilities as xu

    en = xu.lam2en(1.5406)
    for e, dw in ((0.0, 0.6), (0.02, 0.3), (0.08, 0.1)):
        plain, damped = ysz_cell(e), ysz_cell(e, b_angstrom2=float(b_factor_for_dw(dw, e)))
        q = plain.Q(0, 0, 4)
        assert np.linalg.norm(q) == pytest.approx(R.q_bragg_inv_angstrom / (1 + e), rel=1e-12)
        assert damped.StructureFactor(q, en=en) == pytest.approx(dw * plain.StructureFactor(q, en=en), rel=1e-12)
        assert np.array(damped.chih(q, en=en)) == pytest.approx(dw * np.array(plain.chih(q, en=en)), rel=1e-12)
        assert damped.chi0(en=en) == plain.chi0(en=en)
    with pytest.raises(ValueError, match="0 < DW"):
        b_factor_for_dw(0.0, 0.01)


@pytest.mark.parametrize("thickness_nm,strain,dws", [(300.0, 0.01, (0.9, 0.6, 0.3, 0.1)), (1000.0, 0.04, (0.9, 0.1))])
def test_uniform_intermediate_dw_agrees_with_xrayutilities(thickness_nm, strain, dws):
    """Uniform layer at DW between 0.9 and 0.1 = xrayutilities given per-lamella B factors, within the sweep's
    tolerance (measured 3.2e-5 to 1.5e-4 rms log10 over the sweep, after a 0.02 deg Gaussian in theta);
    a 3 % error in DW (xrayutilities given 0.97 DW) is 10x above that tolerance."""
    prof = np.full(20, strain)
    for dw in dws:
        assert compare_with_xu(prof, thickness_nm, debye_waller=np.full(20, dw)) < rms_log10_tolerance(thickness_nm)
    wrong = compare_with_xu(prof, thickness_nm, debye_waller=np.full(20, 0.6), xu_debye_waller=np.full(20, 0.97 * 0.6))
    assert wrong > 10 * rms_log10_tolerance(thickness_nm)


@pytest.mark.parametrize(
    "strain,dw,thickness_nm,check_mirror",
    [
        (graded_profile("gauss", 0.02), coupled_dw(graded_profile("gauss", 0.02), 0.1), 500.0, False),
        (graded_profile("ramp", 0.08), coupled_dw(graded_profile("ramp", 0.08), 0.5), 300.0, False),
        (np.full(30, 0.01), dw_profile("rising"), 1000.0, True),
        (0.01 * (2 - (np.arange(30) + 0.5) / 30), dw_profile("low"), 300.0, True),
    ],
    ids=["gauss-2%-coupled-0.1", "ramp-8%-coupled-0.5", "const-1%-dw-rising", "ramp-2to1%-dw-near-0.1"],
)
def test_depth_varying_dw_agrees_with_xrayutilities(strain, dw, thickness_nm, check_mirror):
    """DW varying with depth, coupled to a graded strain (DW = DW_min^((e/e_max)^2)) or decoupled from it
    (a DW rising from 0.1 at the surface under a constant strain; DW near 0.1 throughout while the strain
    halves): each lamella's DW acts on its own chi_H, chi_-H as B factors do in xrayutilities; measured
    3.4e-5 to 1.1e-4 rms log10 for these four (full sweep in test_xu_sweep.py: 3.1e-5 to 1.2e-4).
    A decoupled DW profile read backwards is detected."""
    assert compare_with_xu(strain, thickness_nm, debye_waller=dw) < rms_log10_tolerance(thickness_nm)
    if check_mirror:
        assert compare_with_xu(strain, thickness_nm, debye_waller=dw, xu_debye_waller=dw[::-1]) > 0.01


@pytest.mark.parametrize("strain", [0.04, 0.08])
def test_layer_peak_scales_as_dw_squared_in_the_kinematic_limit(strain):
    """Thin (50 nm) uniform layer, peak 4-8 % from the substrate: the layer's amplitude is DW times its DW = 1
    amplitude, so R(DW)/R(1) = DW^2 at the layer peak, up to the interference with the substrate's tail.
    That tail's relative amplitude rho = sqrt(R(0)/R(1)) is measured (R(DW = 0): the substrate seen through
    the same absorbing layer) and bounds the deviation by 2 rho (1 + rho)(1/DW - 1) + rho^2 (1/DW^2 - 1);
    5e-4 is left for the layer's own second-order (dynamical) scattering, measured 1.6e-4 at 50 nm.
    Measured deviations: at most 1.7e-2 (4 %, DW 0.1) and 5.0e-3 (8 %): they fall as the layer peak moves
    away from the substrate, as the tail does."""
    dws = (0.9, 0.6, 0.3, 0.1)
    rho, dev = layer_peak_dw_ratio(strain, 50.0, dws)
    assert rho < 0.02  # far from the substrate: a weak tail
    for d, x in zip(dws, dev):
        assert abs(x) <= kinematic_dw_bound(rho, d) + 5e-4, (d, x)
        assert abs(x) < 0.03
    if strain == 0.08:
        _, dev_closer = layer_peak_dw_ratio(0.04, 50.0, dws)
        assert abs(dev[-1]) < 0.5 * abs(dev_closer[-1])


def test_layer_peak_near_the_substrate_departs_from_dw_squared_within_the_bound():
    """At 0.5 % the substrate's tail is strong (rho = 0.085 at 50 nm): R(DW)/R(1) departs from DW^2 by
    +110 % at DW 0.1 (measured), which the kinematic bound allows; the plain DW^2 law needs the layer
    peak far from the substrate."""
    dws = (0.9, 0.3, 0.1)
    rho, dev = layer_peak_dw_ratio(0.005, 50.0, dws)
    assert rho > 0.05
    assert dev[-1] > 0.5
    for d, x in zip(dws, dev):
        assert abs(x) <= kinematic_dw_bound(rho, d) + 5e-4


@pytest.mark.parametrize("profile", ["uniform", "ramp"])
@pytest.mark.parametrize("e_max", [0.005, 0.02])
def test_reflectivity_is_quadratic_in_dw_for_a_thin_layer(profile, e_max):
    """Kinematic limit at every angle, the substrate peak included: the amplitude is A_S + DW A_L (chi_0,
    hence the absorption and refraction of the layer, does not depend on DW), so R(DW) = a DW^2 + b DW + c.
    For a 20 nm layer the quadratic through DW = 0, 0.5, 1 predicts R at DW 0.9, 0.6, 0.3, 0.1 to 1e-3 of
    |a| DW^2 + |b| DW + c (measured at most 5.0e-4, second-order scattering in the layer; it grows as t^2).
    Negative control: DW entering as DW^2 (a quartic) fails the same test by far."""
    th_l = math.asin(math.sin(R.theta_bragg) / (1 + e_max))
    th = np.radians(np.linspace(math.degrees(th_l) - 0.3, math.degrees(R.theta_bragg) + 0.1, 1500))
    z = (np.arange(20) + 0.5) / 20
    strain = e_max * (np.ones(20) if profile == "uniform" else 1 - z)
    dev = quadratic_dw_deviation(th, strain, 20.0, (0.9, 0.6, 0.3, 0.1))
    assert max(dev) < 1e-3, dev
    assert quadratic_dw_deviation(th, strain, 20.0, (0.3,), dw_map=lambda d: d * d)[0] > 0.05


def test_pi_polarization_with_depth_varying_dw_agrees_with_xrayutilities():
    """pi polarisation multiplies the coupling by |cos 2theta| on top of DW: a graded 2 % layer with coupled DW
    (DW_min 0.3, 500 nm) = xrayutilities' "P" polarisation (measured 4.3e-5 rms log10 after the 0.02 deg
    Gaussian, as for sigma; unconvolved, our sigma curve is 1.05 rms log10 from xrayutilities' pi curve)."""
    e = graded_profile("gauss", 0.02)
    dw = coupled_dw(e, 0.3)
    assert compare_with_xu(e, 500.0, debye_waller=dw, polarization="pi") < rms_log10_tolerance(500.0)
