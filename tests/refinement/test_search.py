"""The search (issue 13): fixed work so the answer does not depend on the load, the noise-floor rule,
no layer as an answer, honest ambiguity, the reach of the model, the proposal grid's parts."""

import math
import subprocess
import sys

import numpy as np
import pytest

from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.instrument import apply_counts, simulate_scan
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.refinement import CurveModel, ModelConfig, RefineOptions, refine_curve
from xrd_strain_plugin.refinement.search import (
    Proposal,
    SearchOptions,
    distinct,
    shape_library,
    stratified,
    weights_for_shapes,
)

YSZ = make_reflection("YSZ", (4, 0, 0), 1.5406)


def _gauss_layer(refl, *, e_max, t_nm, z_peak, s_left, s_right, dw_min, seed, fwhm=0.01, scale=1e6, n=100):
    """A paper-like asymmetric-Gaussian layer, coupled DW, Poisson counts, over its whole extent."""
    z = profiles.slice_midpoints(n)
    sigma = np.where(z < z_peak, s_left, s_right)
    strain = e_max * np.exp(-0.5 * ((z - z_peak) / sigma) ** 2) * np.clip((1 - z) * 4, 0, 1)
    strain *= e_max / strain.max()
    dw = profiles.dw_coupled(strain[None], e_max, dw_min)[0]
    reach = 2 * math.degrees(1.1 * e_max * math.tan(refl.theta_bragg)) + 0.4
    tt = np.arange(refl.two_theta_bragg_deg - reach, refl.two_theta_bragg_deg + 0.4, 0.01)
    curve = simulate_scan(tt, strain, dw, t_nm, refl, resolution_fwhm_deg=fwhm)
    counts = apply_counts(curve, scale=scale, background=10.0, rng=np.random.default_rng(seed))[0]
    return tt, counts, z * t_nm, 100 * strain


def _close(answer, t_nm, depth_max_nm, e_max_percent):
    return (
        abs(answer["depth_of_max_nm"] - depth_max_nm) <= 0.1 * t_nm
        and abs(answer["thickness_nm"] - t_nm) <= 0.1 * t_nm
        and abs(answer["strain_max_percent"] - e_max_percent) <= 0.1 * e_max_percent
    )


def _as_answer(r):
    return {
        "depth_of_max_nm": r.depth_of_max_nm,
        "thickness_nm": r.thickness_nm,
        "strain_max_percent": r.strain_max_percent,
    }


def test_the_same_curve_gets_the_same_answer_with_the_other_core_busy():
    """Budgets are evaluations, proposals and generations, not seconds: a busy machine changes nothing."""
    tt, counts, _, _ = _gauss_layer(
        YSZ, e_max=0.009, t_nm=220, z_peak=0.5, s_left=0.25, s_right=0.14, dw_min=0.75, seed=4
    )
    quiet = refine_curve(tt, counts, YSZ)
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = refine_curve(tt, counts, YSZ)
    finally:
        burner.kill()
        burner.wait()
    assert not quiet.time_capped and not busy.time_capped
    assert busy.values == quiet.values
    np.testing.assert_array_equal(busy.strain_percent, quiet.strain_percent)
    assert busy.path == quiet.path and busy.n_curves == quiet.n_curves


def test_a_pristine_crystal_is_answered_no_layer_with_its_detection_limit():
    tt = np.arange(YSZ.two_theta_bragg_deg - 2.0, YSZ.two_theta_bragg_deg + 0.4, 0.01)
    curve = simulate_scan(tt, np.zeros(10), np.ones(10), 100.0, YSZ, resolution_fwhm_deg=0.01)
    counts = apply_counts(curve, scale=1e6, background=10.0, rng=np.random.default_rng(0))[0]
    r = refine_curve(tt, counts, YSZ)
    assert r.layer_detected is False and not r.ambiguous and r.alternatives == ()
    limit = r.detection_limit
    per_t = limit["strain_max_percent_at_thickness_nm"]
    # thicker layers are seen at smaller strains (more scattering volume), and the limits are small
    # against the layers this project studies (tenths of a percent to percent)
    assert per_t["50"] >= per_t["200"] >= per_t["800"] > 0
    assert per_t["200"] < 0.1 and 0 < limit["strain_percent_x_thickness_nm"] < 20
    # and a layer above that limit is detected on the same scan
    strain = np.full(20, 0.003)
    layered = apply_counts(
        simulate_scan(tt, strain, np.ones(20), 200.0, YSZ, resolution_fwhm_deg=0.01),
        scale=1e6,
        background=10.0,
        rng=np.random.default_rng(1),
    )[0]
    assert refine_curve(tt, layered, YSZ).layer_detected is True


def test_a_toy_gaussian_through_a_real_runengine_is_no_layer_not_an_error():
    """ophyd.sim's motor and a Gaussian peak at the Bragg angle in a real RunEngine scan (the shape of a
    reference crystal): the network's out-of-range answer is clipped and said so, the refinement says no
    layer, with a detection limit."""
    from bluesky import RunEngine
    from bluesky.plans import scan
    from ophyd.sim import SynAxis, SynGauss

    from xrd_strain_plugin.inference import Inverter, default_bundle_path

    motor = SynAxis(name="two_theta")
    det = SynGauss("det", motor, "two_theta", center=YSZ.two_theta_bragg_deg, Imax=2e5, sigma=0.012, noise="none")
    rows = []
    RE = RunEngine({})
    RE(
        scan([det], motor, YSZ.two_theta_bragg_deg - 1.5, YSZ.two_theta_bragg_deg + 0.4, 191),
        lambda name, doc: rows.append((doc["data"]["two_theta"], doc["data"]["det"])) if name == "event" else None,
    )
    tt, peak = map(np.array, zip(*rows))
    counts = np.random.default_rng(2).poisson(peak + 5.0).astype(float)
    net = Inverter(default_bundle_path()).invert(tt, counts, YSZ)  # no error: clipped into the trained range
    assert net.thickness_nm > 0 and np.all(np.asarray(net.strain_percent) > -100)
    r = refine_curve(tt, counts, YSZ, start=net)
    assert r.layer_detected is False and r.detection_limit["strain_percent_x_thickness_nm"] > 0


def test_the_poor_fit_rule_is_the_noise_floor():
    """At the floor: ok. A curve no layer model can describe (a spurious second peak): poor."""
    tt, counts, _, _ = _gauss_layer(
        YSZ, e_max=0.009, t_nm=220, z_peak=0.5, s_left=0.25, s_right=0.14, dw_min=0.75, seed=5
    )
    good = refine_curve(tt, counts, YSZ)
    assert good.sigma_i <= 1.2 * good.noise_floor_sigma_i and not good.poor_fit
    assert good.poor_threshold == pytest.approx(1.2 * good.noise_floor_sigma_i, rel=0.05)
    bump = counts + np.random.default_rng(6).poisson(3e3 * np.exp(-0.5 * ((tt - tt[40]) / 0.01) ** 2))
    bad = refine_curve(tt, bump, YSZ, options=RefineOptions(global_generations=3))
    assert bad.poor_fit and bad.sigma_i > bad.poor_threshold


def test_a_3_um_layer_is_representable():
    """Thickness bounds, lamellae and the search grid reach 5 um: the model reproduces a 3 um buried-peak
    layer's curve exactly from its own weights."""
    cfg = ModelConfig()
    assert cfg.thickness_bounds_nm[1] >= 5000 and SearchOptions().thickness_range_nm[1] >= 5000
    tt = np.arange(YSZ.two_theta_bragg_deg - 1.2, YSZ.two_theta_bragg_deg + 0.3, 0.005)
    model = CurveModel(YSZ, tt, cfg)
    z = profiles.slice_midpoints(cfg.n_slices)
    shape = np.exp(-0.5 * ((z - 0.85) / 0.06) ** 2)  # a peak buried at 2.55 um
    w = weights_for_shapes(shape, cfg.n_strain_weights, 0.4)[0]
    params = model.default_parameters(strain_weights_percent=w, thickness_nm=3000.0, fwhm_deg=0.01, dw_min=0.5)
    v = np.array([p.value for p in params])
    strain, dw, t_nm = model.profiles(v)
    assert t_nm[0] == 3000.0 and 0.8 < (np.argmax(strain[0]) + 0.5) / cfg.n_slices < 0.9
    step, pad = model.grid_for(v)
    ours = model.reflectivity(v, fine_step_deg=step, pad_deg=pad)[0]
    ref = simulate_scan(tt, strain[0], dw[0], 3000.0, YSZ, resolution_fwhm_deg=0.01, shape="pseudo-voigt", eta=0.01)[0]
    assert np.sqrt(np.mean(np.log10(ours / ref) ** 2)) < 0.01


def test_weights_for_shapes_reach_the_requested_maximum_and_follow_the_shape():
    shapes, labels = shape_library(SearchOptions())
    assert len(shapes) == len(labels) == 9 * 5 + 4
    w = weights_for_shapes(shapes, 10, 2.0)
    basis = profiles.profile_basis(10, shapes.shape[1])
    prof = w @ basis.T
    np.testing.assert_allclose(prof.max(axis=1), 2.0, rtol=1e-9)
    assert np.all(w >= 0)
    # the peak depth of each Gaussian survives the projection onto 10 weights (within a knot spacing)
    peaks = (np.argmax(prof[:45], axis=1) + 0.5) / shapes.shape[1]
    wanted = np.repeat(SearchOptions().peak_depths, 5)
    assert np.max(np.abs(peaks - wanted)) < 0.12


def test_distinct_and_stratified_keep_every_basin():
    row = np.zeros(3)
    ps = [
        Proposal(cost=c, label=str(i), row=row, depth_of_max=z, thickness_nm=t)
        for i, (c, z, t) in enumerate([(1, 0.05, 300), (2, 0.06, 305), (3, 0.05, 400), (4, 0.4, 300), (5, 0.8, 300)])
    ]
    assert [p.label for p in distinct(ps, 10)] == ["0", "2", "3", "4"]  # "1" repeats "0"
    bands = stratified(ps, 2)
    assert {"0", "3", "4"} <= {p.label for p in bands}  # the best of each depth band, not only the best


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mirrored", "buried"])
def test_mirror_pairs_and_buried_peaks_are_found_or_reported_ambiguous(case):
    """A profile and its mirror image give similar curves; a buried peak is the hard case. Each is
    answered with the truth, or as ambiguous with the truth among the alternatives."""
    kw = dict(e_max=0.012, t_nm=300, dw_min=0.6, seed=8)
    shapes = {
        "mirrored": [dict(z_peak=0.25, s_left=0.15, s_right=0.3), dict(z_peak=0.7, s_left=0.3, s_right=0.12)],
        "buried": [dict(z_peak=0.78, s_left=0.25, s_right=0.08)],
    }[case]
    for shape in shapes:
        tt, counts, depth, strain_pct = _gauss_layer(YSZ, **kw, **shape)
        r = refine_curve(tt, counts, YSZ)
        i = int(np.argmax(strain_pct))
        truth = (kw["t_nm"], depth[i], strain_pct[i])
        answers = [_as_answer(r)] + list(r.alternatives)
        assert _close(answers[0], *truth) or (r.ambiguous and any(_close(a, *truth) for a in answers[1:])), (
            case,
            shape,
            answers,
        )


@pytest.mark.slow
def test_the_uncertainty_band_covers_the_truth_at_its_stated_rate():
    """On 50 simulated curves the strain band (+-1 sigma, widened to the equivalent fits) holds the
    true strain at >= 50 % of depths on average (a 1-sigma band: 68 % for a Gaussian error)."""
    rng = np.random.default_rng(11)
    cover = []
    for k in range(50):
        t_nm = rng.uniform(120, 600)
        tt, counts, depth, strain_pct = _gauss_layer(
            YSZ,
            e_max=rng.uniform(0.005, 0.03),
            t_nm=t_nm,
            z_peak=rng.uniform(0.2, 0.7),
            s_left=rng.uniform(0.1, 0.4),
            s_right=rng.uniform(0.08, 0.2),
            dw_min=rng.uniform(0.3, 0.9),
            seed=100 + k,
        )
        r = refine_curve(tt, counts, YSZ)
        lo, hi = map(np.asarray, r.strain_band_percent)
        z = r.depth_nm / r.thickness_nm
        true_on = np.interp(z * t_nm, depth, strain_pct, right=0.0)
        cover.append(np.mean((true_on >= lo - 1e-9) & (true_on <= hi + 1e-9)))
    assert np.mean(cover) >= 0.5, np.round(cover, 2)


SIC_6H = __import__("pathlib").Path(__file__).resolve().parents[2] / "xrd_strain_plugin" / "data" / "SiC-6H.cif"


def test_a_hexagonal_cif_gives_the_reflection_of_its_c_axis():
    """6H-SiC from the shipped CIF (P6_3mc): d(0 0 12) = c / 12 exactly (an independent check of the
    hexagonal metric), and the 0 0 12 Bragg angle at Cu Ka1 from the Bragg law."""
    r = make_reflection(str(SIC_6H), (0, 0, 12), 1.5406)
    assert r.d_spacing_angstrom == pytest.approx(15.1173 / 12, rel=1e-6)
    assert r.two_theta_bragg_deg == pytest.approx(2 * math.degrees(math.asin(1.5406 / (2 * 15.1173 / 12))), rel=1e-9)
    assert 0 < abs(r.chih) < abs(r.chi0)


@pytest.mark.slow
def test_a_3_um_hexagonal_layer_with_a_buried_peak_is_refined_or_flagged():
    """6H-SiC 0 0 12, a 3 um layer whose strain peak is buried at 2.55 um: the answer reaches the noise
    floor with the peak in the right place, or says it did not (poor / ambiguous)."""
    r = make_reflection(str(SIC_6H), (0, 0, 12), 1.5406)
    tt, counts, depth, strain_pct = _gauss_layer(
        r, e_max=0.004, t_nm=3000, z_peak=0.85, s_left=0.3, s_right=0.05, dw_min=0.7, seed=21, fwhm=0.005, n=200
    )
    res = refine_curve(tt, counts, r)
    i = int(np.argmax(strain_pct))
    found = _close(_as_answer(res), 3000, depth[i], strain_pct[i])
    among = res.ambiguous and any(_close(a, 3000, depth[i], strain_pct[i]) for a in res.alternatives)
    print(
        f"6H-SiC 3 um: sigma_I {res.sigma_i:.3f} floor {res.noise_floor_sigma_i:.3f} t {res.thickness_nm:.0f} "
        f"max at {res.depth_of_max_nm:.0f} nm (truth {depth[i]:.0f}) poor {res.poor_fit} ambiguous {res.ambiguous}"
    )
    assert found or among or res.poor_fit
