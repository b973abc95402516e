"""The measured curve, validated and ordered once (xrd_strain_plugin.physics.curve)."""

import numpy as np
import pytest

from xrd_strain_plugin.physics.curve import Curve, CurveError
from xrd_strain_plugin.physics.materials import make_reflection

YSZ_400 = make_reflection("YSZ", (4, 0, 0), 1.5406)  # 2theta_B = 73.578 deg
ANGLES = np.linspace(72.6, 73.9, 131)
COUNTS = 10.0 + 1e4 * np.exp(-0.5 * ((ANGLES - 73.578) / 0.01) ** 2)


def test_a_descending_scan_is_reversed_with_its_counts():
    curve = Curve.measured(ANGLES[::-1], COUNTS[::-1], YSZ_400)
    np.testing.assert_array_equal(curve.two_theta_deg, ANGLES)
    np.testing.assert_array_equal(curve.counts, COUNTS)
    assert curve.reflection is YSZ_400 and curve.n_points == ANGLES.size


def test_the_curve_is_a_copy_and_cannot_be_changed():
    angles = ANGLES.copy()
    curve = Curve.measured(angles, COUNTS)
    angles[0] = 0.0
    assert curve.two_theta_deg[0] == pytest.approx(72.6)
    with pytest.raises(ValueError):
        curve.counts[0] = 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, c: (a, np.where(np.arange(a.size) == 5, np.nan, c)), "intensity contains NaN or inf"),
        (lambda a, c: (a, np.where(np.arange(a.size) == 5, -1.0, c)), "negative intensity"),
        (lambda a, c: (a[:9], c[:9]), "too few points: 9"),
        (lambda a, c: (np.r_[a[:50], a[51], a[50], a[52:]], c), "not sorted in increasing order"),
        (lambda a, c: (np.r_[a[:50], a[50], a[50:-1]], c), "duplicate angles"),
        (lambda a, c: (a, np.zeros_like(c)), "zero everywhere"),
        (lambda a, c: (a, c[:-1]), "length mismatch"),
        (lambda a, c: (np.stack([a, a]), np.stack([c, c])), "one curve is 1-D"),
    ],
)
def test_an_unusable_curve_is_refused_naming_the_problem(change, message):
    angles, counts = change(ANGLES, COUNTS)
    with pytest.raises(CurveError, match=message):
        Curve.measured(angles, counts)


def test_a_scan_without_the_reflections_bragg_peak_is_refused():
    # Fact: YSZ 400 at Cu K-alpha1 diffracts at 2theta = 73.58 deg, outside a scan 10 deg higher.
    Curve.measured(ANGLES, COUNTS)  # no reflection: nothing to check against
    with pytest.raises(CurveError, match="does not contain the Bragg peak of YSZ"):
        Curve.measured(ANGLES + 10.0, COUNTS, YSZ_400)


def test_direct_construction_checks_the_same_and_does_not_reorder():
    with pytest.raises(CurveError, match="not sorted"):
        Curve(two_theta_deg=ANGLES[::-1], counts=COUNTS[::-1])
    curve = Curve(two_theta_deg=ANGLES, counts=COUNTS, reflection=YSZ_400)
    # Q = 4 pi sin(theta) / lambda at the Bragg angle is 2 pi / d
    i = int(np.argmin(np.abs(ANGLES - YSZ_400.two_theta_bragg_deg)))
    assert curve.q_inv_angstrom[i] == pytest.approx(YSZ_400.q_bragg_inv_angstrom, rel=2e-4)


def test_a_scan_too_short_for_a_layer_is_refused_with_the_strain_it_reaches():
    # Fact: a layer of strain e peaks where sin(theta) = sin(theta_B) / (1 + e); a scan reaching
    # less than 0.1 % strain on both sides of the substrate peak cannot hold a layer's signal.
    from xrd_strain_plugin.physics.bragg import layer_peak_two_theta_deg

    theta_b = YSZ_400.theta_bragg
    lo, hi = layer_peak_two_theta_deg(0.0005, theta_b), layer_peak_two_theta_deg(-0.0005, theta_b)
    short = np.linspace(lo, hi, 50)
    with pytest.raises(CurveError, match=r"too short.*0\.050 % strain below and 0\.050 % above"):
        Curve.measured(short, np.ones(50), YSZ_400)
    enough = np.linspace(layer_peak_two_theta_deg(0.0012, theta_b), hi, 50)
    assert Curve.measured(enough, np.ones(50), YSZ_400).n_points == 50
