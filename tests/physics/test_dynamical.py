"""The Takagi-Taupin recursion against independent facts: analytic limits and xrayutilities."""

import dataclasses
import math

import numpy as np
import pytest

from xrd_strain_plugin.physics.dynamical import HAVE_NUMBA, reflectivity  # noqa: F401
from xrd_strain_plugin.physics.materials import make_reflection

from .xu_reference import xu_absorption_length_um, xu_reflectivity

R = make_reflection("YSZ", (4, 0, 0), 1.5406)
TH_B = R.theta_bragg


def rms_log10(a, b):
    return float(np.sqrt(np.mean((np.log10(a) - np.log10(b)) ** 2)))


def gauss_convolve(theta_deg, refl, fwhm_deg):
    """Independent convolution (direct sum on a uniform grid, renormalised at the edges)."""
    step = theta_deg[1] - theta_deg[0]
    s = fwhm_deg / (2 * math.sqrt(2 * math.log(2)))
    k = int(math.ceil(4 * s / step))
    g = np.exp(-0.5 * (step * np.arange(-k, k + 1) / s) ** 2)
    return np.convolve(refl, g, "same") / np.convolve(np.ones_like(refl), g, "same")


def non_absorbing(r):
    return dataclasses.replace(r, f0=r.f0.real, fh=r.fh.real, fmh=r.fmh.real)


def test_perfect_crystal_is_the_analytic_darwin_curve():
    """Thick non-absorbing crystal: R = 1 for |eta| <= 1 and (|eta| - sqrt(eta^2 - 1))^2 outside, with
    eta = (dtheta sin 2theta_B + chi_0)/|chi_H| (textbook two-beam solution, no recursion): width
    2|chi_H|/sin 2theta_B, centre shifted by -chi_0/sin 2theta_B (refraction)."""
    r = non_absorbing(R)
    dth = np.radians(np.linspace(-0.01, 0.012, 2001))
    refl = reflectivity(TH_B + dth, np.zeros(4), np.ones(4), 100.0, r)[0]
    eta = (dth * math.sin(2 * TH_B) + r.chi0.real) / abs(r.chih)
    darwin = np.where(np.abs(eta) <= 1, 1.0, (np.abs(eta) - np.sqrt(np.maximum(eta**2 - 1, 0))) ** 2)
    assert np.max(np.abs(refl - darwin)) < 2e-3
    plateau = dth[refl > 0.999999]
    width = plateau.max() - plateau.min()
    assert width == pytest.approx(r.darwin_width_symmetric(), rel=0.01)
    assert 0.5 * (plateau.max() + plateau.min()) == pytest.approx(r.refraction_shift_symmetric(), rel=0.01)


def test_absorbing_perfect_crystal_peak_matches_xrayutilities():
    """With absorption the plateau drops below 1; peak and shape agree with xrayutilities' DynamicalModel."""
    th_deg = np.degrees(TH_B) + np.linspace(-0.01, 0.012, 221)
    ours = reflectivity(np.radians(th_deg), np.zeros(2), np.ones(2), 50.0, R)[0]
    ref = xu_reflectivity(th_deg, np.zeros(2), 50.0)
    assert 0.95 < ours.max() < 0.995
    assert ours.max() == pytest.approx(ref.max(), rel=1e-3)
    assert rms_log10(ours, ref) < 1e-3


def test_asymmetric_reflection_total_reflection_and_width():
    """Asymmetric Bragg case: the plateau stays at R = 1 (flux conservation) and its width in the
    incidence angle is 2|chi_H| / (sqrt|b| sin 2theta_B), b = -sin(theta - phi)/sin(theta + phi)."""
    r = non_absorbing(R)
    phi = math.radians(10.0)
    dth = np.radians(np.linspace(-0.01, 0.015, 2501))
    refl = reflectivity(TH_B + dth, np.zeros(2), np.ones(2), 100.0, r, asymmetry=phi)[0]
    assert refl.max() == pytest.approx(1.0, abs=1e-6)
    plateau = dth[refl > 0.999999]
    b = math.sin(TH_B - phi) / math.sin(TH_B + phi)
    assert plateau.max() - plateau.min() == pytest.approx(
        2 * abs(r.chih) / (math.sqrt(b) * math.sin(2 * TH_B)), rel=0.02
    )


def _layer_scan(e, t_nm, n=20, npts=3000):
    th_layer = math.asin(math.sin(TH_B) / (1 + e))
    th = np.linspace(th_layer - 0.02, TH_B + 0.002, npts)
    q = 4 * math.pi * np.sin(th) / R.wavelength_angstrom
    refl = reflectivity(th, np.full(n, e), np.ones(n), t_nm, R)[0]
    return q, refl


def test_uniform_layer_peak_at_minus_strain_and_fringes_2pi_over_t():
    """Kinematic facts for a thin uniform layer: its peak sits at Q = H/(1+e), i.e. dQ/Q_B = -e to first
    order, and its thickness fringes are spaced by 2 pi / t in Q."""
    e, t_nm = 0.01, 100.0
    q, refl = _layer_scan(e, t_nm)
    h = R.q_bragg_inv_angstrom
    layer = q < h * (1 - e / 3)
    q_peak = q[layer][np.argmax(refl[layer])]
    assert (q_peak - h) / h == pytest.approx(-e, abs=0.05 * e)
    assert q_peak == pytest.approx(h / (1 + e), abs=2 * math.pi / (10 * t_nm) / 10)
    # fringe minima on the low-Q side of the layer peak
    side = q < q_peak - 1.5 * 2 * math.pi / (10 * t_nm)
    lr = np.log(refl[side])
    minima = q[side][1:-1][(lr[1:-1] < lr[:-2]) & (lr[1:-1] < lr[2:])]
    spacing = np.diff(minima[-5:])
    assert np.mean(spacing) == pytest.approx(2 * math.pi / (10 * t_nm), rel=0.02)


def test_fully_disordered_layer_only_absorbs():
    """DW = 0: the layer adds no diffraction; the curve is the substrate's attenuated by Beer-Lambert,
    exp(-L/l_abs) with path L = t (1/sin(in) + 1/sin(out)) and l_abs from xrayutilities."""
    th = TH_B + np.radians(np.linspace(-0.05, 0.05, 301))
    bare = reflectivity(th, np.zeros(1), np.ones(1), 1.0, R, max_coupling=1e9)[0]
    sub_only = reflectivity(th, np.zeros(10), np.zeros(10), 1e-6, R)[0]
    for t_nm in (500.0, 5000.0):
        covered = reflectivity(th, np.zeros(10), np.zeros(10), t_nm, R)[0]
        path_um = 2 * t_nm * 1e-3 / np.sin(th)
        expected = sub_only * np.exp(-path_um / xu_absorption_length_um())
        np.testing.assert_allclose(covered, expected, rtol=2e-3)
    assert bare.max() > 0.9


def test_phase_sign_thick_layer_absorbs_instead_of_amplifying():
    """Trap 1: a 100 um disordered layer must attenuate the substrate to ~1e-6, never amplify (1e7)."""
    th = TH_B + np.radians(np.linspace(-0.005, 0.005, 11))
    covered = reflectivity(th, np.zeros(5), np.zeros(5), 100_000.0, R)[0]
    expected = np.exp(-2 * 100.0 / np.sin(th) / xu_absorption_length_um())
    assert covered.max() < 1e-4
    np.testing.assert_allclose(covered / reflectivity(th, np.zeros(1), np.zeros(1), 1e-6, R)[0], expected, rtol=5e-3)


def _ramp(n=20, e_max=0.02):
    depth = (np.arange(n) + 0.5) / n
    return e_max * (1 - depth)  # surface-peaked ramp, zero at the interface


def test_depth_orientation_ramp_and_mirror_differ_and_each_matches_xrayutilities():
    """Trap 2: reading depth backwards mirrors every profile. A surface-peaked 2 % ramp and its mirror give
    clearly different curves (0.42 rms log10 for 500 nm with coupled DW); each agrees with xrayutilities
    for the same orientation."""
    e = _ramp()
    dw = np.exp(-2 * (e / 0.02) ** 2)
    th_deg = np.degrees(TH_B) + np.linspace(-1.0, 0.1, 500)
    ours = reflectivity(np.radians(th_deg), e, dw, 500.0, R)[0]
    mirror = reflectivity(np.radians(th_deg), e[::-1], dw[::-1], 500.0, R)[0]
    assert rms_log10(ours, mirror) > 0.3
    ramp = np.radians(np.linspace(-1.0, 0.1, 260)) + TH_B
    conv = lambda x: gauss_convolve(np.degrees(ramp), x, 0.02)
    for prof in (e, e[::-1]):
        mine = reflectivity(ramp, prof, np.ones_like(prof), 200.0, R)[0]
        assert rms_log10(conv(mine), conv(xu_reflectivity(np.degrees(ramp), prof, 200.0))) < 0.003


@pytest.mark.parametrize("e,t_nm", [(0.005, 300.0), (0.02, 100.0), (0.08, 150.0)])
def test_uniform_layers_agree_with_xrayutilities(e, t_nm):
    """Independent implementation (4x4 matrices, exact quartic): within 1e-3 rms log10 after a 0.02 deg
    Gaussian in theta; in fact ~1e-4 (see docs/physics.md for the full sweep)."""
    th_layer = math.degrees(math.asin(math.sin(TH_B) / (1 + e)))
    th_deg = np.arange(th_layer - 0.25, np.degrees(TH_B) + 0.1, 0.004)
    ours = reflectivity(np.radians(th_deg), np.full(10, e), np.ones(10), t_nm, R)[0]
    ref = xu_reflectivity(th_deg, np.full(10, e), t_nm)
    assert rms_log10(gauss_convolve(th_deg, ours, 0.02), gauss_convolve(th_deg, ref, 0.02)) < 1e-3


def test_convergence_with_number_of_lamellae():
    """Slicing a smooth profile converges at second order (error x1/4 per doubling of N) towards the
    3200-lamella curve; 1e-3 rms log10 is reached by N = 400 unconvolved, N = 200 after a 0.02 deg
    Gaussian in theta (docs/physics.md lists the measured values)."""
    th = TH_B + np.radians(np.linspace(-0.9, 0.1, 400))

    def profile(n):
        z = (np.arange(n) + 0.5) / n
        e = 0.02 * np.exp(-(((z - 0.35) / 0.2) ** 2)) * (1 - z)
        return e, np.exp(-2 * (e / 0.02) ** 2)

    ref = reflectivity(th, *profile(3200), 500.0, R)[0]
    conv = lambda x: gauss_convolve(np.degrees(th), x, 0.02)
    curves = {n: reflectivity(th, *profile(n), 500.0, R)[0] for n in (100, 200, 400)}
    errs = {n: rms_log10(c, ref) for n, c in curves.items()}
    assert 3.0 < errs[100] / errs[200] < 5.5 and 3.0 < errs[200] / errs[400] < 5.5
    assert errs[400] < 1e-3 < errs[200]
    assert rms_log10(conv(curves[200]), conv(ref)) < 1e-3


def test_linearized_bragg_reproduces_the_paper_offset():
    """The paper's linearised deviation puts an 8 % layer where the exact law puts 8.9 %."""
    e = 0.08
    th = np.radians(np.linspace(31.0, 37.0, 6001))
    exact = reflectivity(th, np.full(10, e), np.ones(10), 100.0, R)[0]
    lin = reflectivity(th, np.full(10, e), np.ones(10), 100.0, R, bragg="linearized")[0]
    strain_axis = lambda i: math.sin(TH_B) / math.sin(th[i]) - 1
    layer = th < TH_B - 0.02
    i_exact = np.argmax(np.where(layer, exact, 0))
    i_lin = np.argmax(np.where(layer, lin, 0))
    assert strain_axis(i_exact) == pytest.approx(0.08, abs=0.001)
    assert strain_axis(i_lin) == pytest.approx(0.089, abs=0.002)


def test_batch_equals_single_calls():
    """Batch-first API: one call with (n_batch, n_slices) profiles gives each curve as if alone (to the
    sub-slicing tolerance: the batch shares the finer slicing that its thickest layer needs)."""
    th = TH_B + np.radians(np.linspace(-0.5, 0.05, 200))
    e = np.stack([_ramp(30, 0.01), _ramp(30, 0.02)[::-1], np.full(30, 0.004)])
    dw = np.stack([np.ones(30), np.linspace(0.3, 1, 30), np.full(30, 0.8)])
    t = np.array([100.0, 400.0, 900.0])
    batch = reflectivity(th, e, dw, t, R)
    assert batch.shape == (3, 200)
    for i in range(3):
        np.testing.assert_allclose(batch[i], reflectivity(th, e[i], dw[i], t[i], R)[0], rtol=1e-3)


@pytest.mark.parametrize(
    "case",
    [
        dict(),  # the default: symmetric, sigma, exact phase
        dict(asymmetry=math.radians(8.0), polarization="pi"),
        dict(bragg="linearized", polarization="unpolarized"),
        dict(t_nm=5000.0, n=40),  # thick layer: sub-slicing and the 5th-order refraction series
    ],
    ids=["default", "asymmetric-pi", "linearized-unpolarized", "5um-subsliced"],
)
@pytest.mark.parametrize("series", ["short", "long"])
def test_compiled_kernel_equals_the_array_reference(case, series, monkeypatch):
    """The fused numba kernel (the default engine on numpy) and the array reference path are two
    writings of one recursion: same curves to 1e-10 relative, on a batch whose point count is not a
    multiple of the kernel's block, single- and multi-threaded. numba is pinned in requirements.lock."""
    assert HAVE_NUMBA
    from xrd_strain_plugin.physics import dynamical

    if series == "long":  # the 5th-order exp series the kernel uses for strongly refracting lamellae
        monkeypatch.setattr(dynamical, "_SHORT_SERIES_LIMIT", 0.0)
    case = dict(case)
    t_nm, n = case.pop("t_nm", 600.0), case.pop("n", 50)
    th = TH_B + np.radians(np.linspace(-0.5, 0.05, 301))  # 301 = 18 blocks of 16 + a tail of 13
    e = np.stack([_ramp(n), _ramp(n, 0.02)[::-1], np.full(n, 0.004)])
    dw = np.stack([np.linspace(0.2, 1, n), np.ones(n), np.full(n, 0.7)])
    a = reflectivity(th, e, dw, t_nm, R, engine="array", **case)
    c = reflectivity(th, e, dw, t_nm, R, engine="compiled", **case)
    c2 = reflectivity(th, e, dw, t_nm, R, engine="compiled", threads=2, **case)
    assert a.shape == c.shape == (3, 301)
    np.testing.assert_allclose(c, a, rtol=1e-10)
    np.testing.assert_allclose(c2, c, rtol=1e-12)  # threads split curves, not a curve's arithmetic
    np.testing.assert_array_equal(reflectivity(th, e, dw, t_nm, R, **case), c)  # "auto" is the kernel


def test_compiled_kernel_is_built_once_per_process():
    """Calls of any batch, point and lamella count reuse one compiled specialisation (no
    recompilation per call, per task of a worker, or per shape)."""
    from xrd_strain_plugin.physics import dynamical

    th = TH_B + np.radians(np.linspace(-0.3, 0.05, 77))
    reflectivity(th, _ramp(20), np.ones(20), 300.0, R)
    kernel = dynamical._fused_kernel(3, False)
    n_sig = len(kernel.signatures)
    for n_pts, n_sl, t in ((50, 10, 100.0), (333, 64, 800.0), (16, 3, 50.0)):
        th = TH_B + np.radians(np.linspace(-0.3, 0.05, n_pts))
        reflectivity(th, np.tile(_ramp(n_sl), (4, 1)), np.ones((4, n_sl)), t, R)
    assert dynamical._fused_kernel(3, False) is kernel
    assert len(kernel.signatures) == n_sig == 1


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine must be one of"):
        reflectivity(np.array([TH_B]), np.zeros(2), np.ones(2), 10.0, R, engine="gpu")


def test_polarization_factor_narrows_pi_and_unpolarized_is_the_mean():
    r = non_absorbing(R)
    dth = np.radians(np.linspace(-0.002, 0.006, 4001))
    width = lambda x: np.ptp(dth[x > 0.999999])
    sig = reflectivity(TH_B + dth, np.zeros(2), np.ones(2), 10.0, r, polarization="sigma")[0]
    pi = reflectivity(TH_B + dth, np.zeros(2), np.ones(2), 10.0, r, polarization="pi")[0]
    unp = reflectivity(TH_B + dth, np.zeros(2), np.ones(2), 10.0, r, polarization="unpolarized")[0]
    assert width(pi) / width(sig) == pytest.approx(abs(math.cos(2 * TH_B)), rel=0.03)
    np.testing.assert_allclose(unp, 0.5 * (sig + pi))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(thickness_nm=-5.0), "thickness_nm must be positive"),
        (dict(thickness_nm=0.0), "thickness_nm must be positive"),
        (dict(strain=np.array([0.01, np.nan])), "strain contains NaN"),
        (dict(debye_waller=np.array([1.0])), "differ in shape"),
        (dict(debye_waller=np.array([1.0, 1.5])), "debye_waller must lie"),
        (dict(theta=np.array([-0.1, 0.2])), "below the surface"),
        (dict(bragg="fast"), "bragg must be"),
        (dict(polarization="circular"), "polarization"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, match):
    args = dict(
        theta=np.array([TH_B, TH_B + 1e-4]),
        strain=np.array([0.01, 0.0]),
        debye_waller=np.array([1.0, 1.0]),
        thickness_nm=100.0,
    )
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k in ("bragg", "polarization")}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        reflectivity(args["theta"], args["strain"], args["debye_waller"], args["thickness_nm"], R, **extra)
