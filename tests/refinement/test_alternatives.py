"""Equally good answers: the profile distance against the accuracy metric's own code, the variants of a
profile, and which fits the refinement reports as distinct alternatives."""

import numpy as np
import pytest

from tests.refinement.test_search import YSZ, _gauss_layer
from xrd_strain_plugin.refinement import refine_curve
from xrd_strain_plugin.refinement.alternatives import (
    VARIANT_SHIFTS,
    VARIANT_THICKNESS,
    profile_distance,
    ranked_distinct,
    variant_tables,
)


def _table(t_nm, z_peak, e_max=1.0, width=0.15, n=201):
    depth = np.linspace(0.0, t_nm, n)
    strain = e_max * np.exp(-0.5 * ((depth / t_nm - z_peak) / width) ** 2)
    return depth, strain


@pytest.mark.parametrize(
    ("t_a", "t_b", "z_a", "z_b"), [(300, 300, 0.3, 0.6), (300, 420, 0.2, 0.2), (800, 500, 0.5, 0.1)]
)
def test_profile_distance_is_the_accuracy_metrics_rms(t_a, t_b, z_a, z_b):
    """The distance that decides "distinct" is the one that decides "right" (training.evaluate, an
    independent implementation on lamellae): both zero-pad the thinner layer below its interface."""
    from xrd_strain_training.evaluate import profile_rms_error

    n = 2000  # fine lamellae, so the lamella sampling of the reference matches interpolation closely
    da, sa = _table(t_a, z_a, n=n + 1)
    db, sb = _table(t_b, z_b, n=n + 1)
    mid = (np.arange(n) + 0.5) / n
    ref = profile_rms_error(
        np.interp(mid * t_a, da, sa)[None], np.array([t_a]), np.interp(mid * t_b, db, sb)[None], np.array([t_b])
    )[0]
    assert profile_distance(da, sa, db, sb) == pytest.approx(ref, rel=2e-2)
    assert profile_distance(da, sa, da, sa) == 0.0


def test_the_variants_are_the_mirror_the_shifted_maximum_and_the_cut_or_extended_tail():
    depth, strain = _table(400.0, 0.3)
    dw = 1 - 0.5 * strain
    variants = {label: (d, s, w) for label, d, s, w in variant_tables(depth, strain, dw)}
    assert len(variants) == 1 + len(VARIANT_SHIFTS) + len(VARIANT_THICKNESS)
    d, s, w = variants["mirror"]
    np.testing.assert_allclose(s[::-1], strain)  # mirrored twice is the profile itself
    assert d[np.argmax(s)] == pytest.approx(400.0 * 0.7, abs=2.0)
    assert np.argmin(w) == np.argmax(s)  # the disorder follows the strain
    for shift in VARIANT_SHIFTS:
        d, s, _ = variants[f"shift {shift:+.2f}"]
        assert d[np.argmax(s)] / 400.0 == pytest.approx(0.3 + shift, abs=0.01)
    for factor in VARIANT_THICKNESS:
        d, s, _ = variants[f"tail x{factor:.2f}"]
        assert d[-1] == pytest.approx(400.0 * factor)
        # the profile stays at its absolute depths: same maximum at the same depth
        assert d[np.argmax(s)] == pytest.approx(120.0, abs=3.0) and s.max() == pytest.approx(1.0, abs=1e-3)


def _entry(cost, t_nm, z_peak):
    depth, strain = _table(t_nm, z_peak)
    return {"cost": cost, "thickness_nm": t_nm, "depth_nm": depth, "strain_percent": strain}


def test_ranked_distinct_keeps_every_equally_good_distinct_fit_best_first():
    best = _entry(100.0, 300, 0.3)
    others = [
        _entry(100.4, 300, 0.31),  # the same profile (rms < 0.1 e_max): not an alternative
        _entry(100.9, 300, 0.7),  # the mirror: an alternative
        _entry(100.5, 360, 0.3),  # 20 % thicker: an alternative
        _entry(100.6, 362, 0.3),  # the same as the one before
        _entry(103.0, 600, 0.5),  # distinct but outside the tolerance
    ]
    kept = ranked_distinct(best, others, tolerance=1.0)
    assert [(e["cost"], e["thickness_nm"]) for e in kept] == [(100.5, 360), (100.9, 300)]
    assert ranked_distinct(best, others, tolerance=0.1) == []


def test_the_refinement_reports_its_pool_of_equally_good_fits_ranked_and_distinct():
    """The variants stage runs (the mirror first) and every alternative is a distinct profile by the
    accuracy criteria, ranked by chi^2 (a mirrored-shape layer, where the mirror image fits nearly as well)."""
    tt, counts, _, _ = _gauss_layer(
        YSZ, e_max=0.012, t_nm=300, z_peak=0.25, s_left=0.15, s_right=0.3, dw_min=0.6, seed=8
    )
    r = refine_curve(tt, counts, YSZ)
    variants = [s for s in r.stages if s["stage"] == "variants"]
    assert len(variants) == 1 and variants[0]["fits"] == 3
    assert all(s["cpu_s"] >= 0 for s in r.stages if "cpu_s" in s)
    costs = [a["cost"] for a in r.alternatives]
    assert costs == sorted(costs) and r.ambiguous == bool(r.alternatives)
    answers = [{"depth_nm": r.depth_nm, "strain_percent": r.strain_percent, "thickness_nm": r.thickness_nm}]
    for a in r.alternatives:
        for b in answers:
            far = profile_distance(b["depth_nm"], b["strain_percent"], a["depth_nm"], a["strain_percent"])
            ratio = max(a["thickness_nm"], b["thickness_nm"]) / min(a["thickness_nm"], b["thickness_nm"])
            assert far / np.max(np.abs(b["strain_percent"])) > 0.1 or ratio > 1.1
        answers.append(a)
