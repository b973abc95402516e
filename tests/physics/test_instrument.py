"""Resolution, fine grid, counting noise: checked against brute-force quadrature and statistics."""

import math

import numpy as np
import pytest

from xrd_strain_plugin.physics.dynamical import reflectivity
from xrd_strain_plugin.physics.instrument import (
    apply_counts,
    background_profile,
    resolution_kernel,
    simulate_scan,
)
from xrd_strain_plugin.physics.materials import make_reflection

R = make_reflection()
N = 100
Z = (np.arange(N) + 0.5) / N
E = 0.005 * np.exp(-(((Z - 0.3) / 0.2) ** 2)) * (1 - Z)
DW = np.exp(-2 * (E / 0.005) ** 2)
SCAN = np.arange(72.8, 73.8, 0.005)


def brute_force(two_theta, fwhm, thickness_nm=300.0, fine=0.0002):
    """Reference: reflectivity on a 0.0002 deg grid (20 points per Darwin width), direct quadrature."""
    tf = np.arange(two_theta[0] - 5 * fwhm, two_theta[-1] + 5 * fwhm, fine)
    rf = reflectivity(np.radians(tf / 2), E, DW, thickness_nm, R)[0]
    s = fwhm / (2 * math.sqrt(2 * math.log(2)))
    k = int(math.ceil(5 * s / fine))
    g = np.exp(-0.5 * (fine * np.arange(-k, k + 1) / s) ** 2)
    return np.interp(two_theta, tf, np.convolve(rf, g / g.sum(), "same"))


def rms_log10(a, b):
    return float(np.sqrt(np.mean((np.log10(a) - np.log10(b)) ** 2)))


def test_substrate_peak_trap_fine_grid_matches_quadrature_where_scan_grid_fails():
    """Trap 3: the substrate peak (0.0045 deg in 2theta) is narrower than the 0.005 deg step. Convolving the
    reflectivity sampled on the scan grid gets the peak and the layer/peak ratio wrong; our forward model
    agrees with a brute-force quadrature on a 0.0002 deg grid."""
    ref = brute_force(SCAN, 0.02)
    ours = simulate_scan(SCAN, E, DW, 300.0, R, resolution_fwhm_deg=0.02)[0]
    sampled = reflectivity(np.radians(SCAN / 2), E, DW, 300.0, R)[0]
    s = 0.02 / (2 * math.sqrt(2 * math.log(2)))
    g = np.exp(-0.5 * (0.005 * np.arange(-8, 9) / s) ** 2)
    naive = np.convolve(sampled, g / g.sum(), "same")
    assert rms_log10(ours, ref) < 0.005
    assert abs(ours.max() / ref.max() - 1) < 0.01
    assert abs(naive.max() / ref.max() - 1) > 0.1
    assert rms_log10(naive[10:-10], ref[10:-10]) > 4 * rms_log10(ours, ref)


@pytest.mark.parametrize("fwhm", [0.005, 0.05])
def test_narrow_and_wide_resolutions_match_quadrature(fwhm):
    scan = np.arange(73.0, 73.7, 0.005)
    assert rms_log10(simulate_scan(scan, E, DW, 300.0, R, resolution_fwhm_deg=fwhm)[0], brute_force(scan, fwhm)) < 0.006


def test_thick_layer_fringes_are_resolved():
    """A 1 um layer has fringes 0.011 deg apart in 2theta; with a 0.005 deg resolution they survive and the
    fine grid reproduces them (quadrature reference)."""
    scan = np.arange(73.0, 73.7, 0.005)
    ours = simulate_scan(scan, E, DW, 1000.0, R, resolution_fwhm_deg=0.005)[0]
    assert rms_log10(ours, brute_force(scan, 0.005, thickness_nm=1000.0)) < 0.01


def test_resolution_kernel_shapes():
    """Half maximum at +-FWHM/2 for both shapes; pseudo-Voigt has unit area (mixture of unit-area parts)."""
    x = np.linspace(-50, 50, 400001)
    for shape in ("gaussian", "pseudo-voigt"):
        k = resolution_kernel(np.array([0.0, 0.05]), 0.1, shape=shape, eta=0.3)
        assert k[1] / k[0] == pytest.approx(0.5, rel=1e-9)
    pv = resolution_kernel(x, 0.1, shape="pseudo-voigt", eta=0.4)
    assert np.trapezoid(pv, x) / 0.1 == pytest.approx(1.0, rel=2e-3)  # unit area in units of the FWHM
    with pytest.raises(ValueError, match="shape"):
        resolution_kernel(x, 0.1, shape="box")


def test_convolution_conserves_integrated_intensity():
    """A normalised resolution keeps the integral of the curve: for narrow and wide resolutions the integral
    equals that of the intrinsic reflectivity by brute-force quadrature (5e-6 deg steps, converged)."""
    scan = np.arange(72.9, 73.9, 0.0005)
    tf = np.arange(72.9, 73.9, 5e-6)
    raw = np.trapezoid(reflectivity(np.radians(tf / 2), E, DW, 300.0, R)[0], tf)
    for fwhm in (0.004, 0.05):
        conv = simulate_scan(scan, E, DW, 300.0, R, resolution_fwhm_deg=fwhm)[0]
        assert np.trapezoid(conv, scan) == pytest.approx(raw, rel=0.006)


def test_batch_with_different_resolutions_and_scans():
    scans = np.stack([np.arange(73.0, 73.7, 0.005)[:140], np.arange(73.05, 73.75, 0.005)[:140]])
    batch = simulate_scan(
        scans,
        np.stack([E, E]),
        np.stack([DW, DW]),
        np.array([300.0, 500.0]),
        R,
        resolution_fwhm_deg=np.array([0.01, 0.04]),
    )
    one = simulate_scan(scans[1], E, DW, 500.0, R, resolution_fwhm_deg=0.04)[0]
    assert batch.shape == (2, 140)
    assert rms_log10(batch[1], one) < 1e-3


@pytest.mark.parametrize(
    "two_theta,match",
    [
        (np.array([73.0, 73.0, 73.1]), "duplicate"),
        (np.array([73.1, 73.0, 73.2]), "sorted"),
        (np.array([73.0, np.nan, 73.2]), "NaN"),
        (np.array([73.0]), "at least 2"),
    ],
)
def test_bad_scans_are_refused(two_theta, match):
    with pytest.raises(ValueError, match=match):
        simulate_scan(two_theta, E, DW, 300.0, R, resolution_fwhm_deg=0.02)


def test_layer_peak_outside_scan_is_refused():
    with pytest.raises(ValueError, match="outside the scan"):
        simulate_scan(np.arange(73.3, 73.8, 0.005), np.full(10, 0.03), np.ones(10), 300.0, R, resolution_fwhm_deg=0.02)
    with pytest.raises(ValueError, match="resolution_fwhm_deg"):
        simulate_scan(SCAN, E, DW, 300.0, R, resolution_fwhm_deg=0.0)


def test_poisson_counts_have_poisson_statistics():
    """Mean = scale * R + background and variance = mean (counting statistics)."""
    rng = np.random.default_rng(1)
    refl = np.full((2000, 5), 1e-3)
    counts = apply_counts(refl, scale=1e5, background=20.0, rng=rng)
    assert counts.mean() == pytest.approx(120.0, rel=0.01)
    assert counts.var() == pytest.approx(120.0, rel=0.05)
    assert np.all(counts == np.round(counts))
    same = apply_counts(refl, scale=1e5, background=20.0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(counts, same)  # randomness only from the Generator


def test_extra_noise_widens_and_background_profile_is_smooth():
    rng = np.random.default_rng(2)
    refl = np.full((4000, 3), 1e-2)
    plain = apply_counts(refl, scale=1e6, rng=rng)
    noisy = apply_counts(refl, scale=1e6, rng=rng, extra_noise=0.1)
    assert noisy.std() > 5 * plain.std()
    bg = background_profile(np.linspace(72, 74, 5), level=10.0, slope=0.1, curvature=0.05)
    np.testing.assert_allclose(
        bg[0], 10 * (1 + 0.1 * np.array([-1, -0.5, 0, 0.5, 1]) + 0.05 * np.array([1, 0.25, 0, 0.25, 1]))
    )
    with pytest.raises(ValueError, match="Generator"):
        apply_counts(refl, scale=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        apply_counts(-refl, scale=1.0, rng=rng)


def test_pseudo_voigt_tails_reach_across_the_whole_scan():
    """A Lorentzian tail falls as 1/x^2: cut at 12 FWHM it loses ~3 % of its weight and the points far from
    the substrate peak lose the tail's counts. Reference: direct quadrature with the uncut pseudo-Voigt."""
    fwhm, eta = 0.01, 0.05
    scan = np.arange(72.8, 73.8, 0.004)
    fine = 0.0002
    tf = np.arange(scan[0] - 0.2, scan[-1] + 0.2, fine)
    rf = reflectivity(np.radians(tf / 2), E, DW, 300.0, R)[0]
    offsets = fine * np.arange(-tf.size, tf.size + 1)
    kern = resolution_kernel(offsets, fwhm, shape="pseudo-voigt", eta=eta) * fine / fwhm  # unit area, uncut
    ref = np.interp(scan, tf, np.convolve(rf, kern, "full")[tf.size : 2 * tf.size])
    ours = simulate_scan(scan, E, DW, 300.0, R, resolution_fwhm_deg=fwhm, shape="pseudo-voigt", eta=eta)[0]
    far = np.abs(scan - R.two_theta_bragg_deg) > 0.3  # more than 30 FWHM from the substrate peak
    assert rms_log10(ours[far], ref[far]) < 0.01


def test_eta_per_curve_equals_separate_calls():
    """eta is a per-curve parameter like the FWHM (a batch of refinement trial curves)."""
    etas = np.array([0.0, 0.02, 0.3])
    batch = simulate_scan(
        SCAN,
        E,
        DW,
        300.0,
        R,
        resolution_fwhm_deg=0.02,
        shape="pseudo-voigt",
        eta=etas,
        fine_step_deg=0.0025,
        pad_deg=0.1,
    )
    for k, eta in enumerate(etas):
        alone = simulate_scan(
            SCAN,
            E,
            DW,
            300.0,
            R,
            resolution_fwhm_deg=0.02,
            shape="pseudo-voigt",
            eta=float(eta),
            fine_step_deg=0.0025,
            pad_deg=0.1,
        )[0]
        np.testing.assert_allclose(batch[k], alone, rtol=1e-12)
    with pytest.raises(ValueError, match="eta"):
        simulate_scan(SCAN, E, DW, 300.0, R, resolution_fwhm_deg=0.02, shape="pseudo-voigt", eta=1.5)


def test_fixed_fine_grid_makes_the_curve_continuous_in_the_resolution():
    """By default the fine grid's sub-step count jumps with the FWHM (here at 0.04 deg for a 0.005 deg scan
    step: 8 points per FWHM), and so does the curve; with a fixed fine_step_deg the curve is smooth."""
    fwhms = np.array([0.0399999, 0.04, 0.0400001])
    default = np.stack([simulate_scan(SCAN, E, DW, 300.0, R, resolution_fwhm_deg=f)[0] for f in fwhms])
    fixed = np.stack(
        [
            simulate_scan(SCAN, E, DW, 300.0, R, resolution_fwhm_deg=f, fine_step_deg=0.0025, pad_deg=0.2)[0]
            for f in fwhms
        ]
    )
    change = lambda c, a, b: np.abs(np.log10(c[b]) - np.log10(c[a])).max()
    # two steps of 1e-7 deg: the fixed grid changes by equal tiny amounts; the default one jumps by ~0.01 decades
    assert change(fixed, 0, 1) < 1e-4 and change(fixed, 1, 2) < 1e-4
    assert change(fixed, 0, 1) == pytest.approx(change(fixed, 1, 2), rel=0.05)
    assert max(change(default, 0, 1), change(default, 1, 2)) > 5e-3


# ---- the named stages of simulate_scan --------------------------------------------------------------------


def _grid(lo, step, n_fine, uniform):
    from xrd_strain_plugin.physics.instrument import _FineGrid

    lo, step = np.atleast_1d(np.asarray(lo, float)), np.atleast_1d(np.asarray(step, float))
    return _FineGrid(
        lo_deg=lo,
        step_deg=step,
        n_pad=np.zeros(lo.size, int),
        n_fine=n_fine,
        uniform=np.atleast_1d(uniform),
        two_theta_deg=lo[:, None] + step[:, None] * np.arange(n_fine)[None, :],
    )


def test_sampling_takes_grid_points_exactly_and_interpolates_a_line_exactly():
    # A uniform scan's angles are grid points: the convolved curve is read there, not interpolated;
    # between grid points the reading is linear, so a linear curve is reproduced at any angle.
    from xrd_strain_plugin.physics.instrument import _sample_at_scan_angles

    grid = _grid([70.0, 70.0], [0.01, 0.01], 201, [True, False])
    curve = np.stack([np.cos(grid.two_theta_deg[0] * 40.0), 3.0 + 2.0 * grid.two_theta_deg[1]])
    scan = np.stack([70.0 + 0.01 * np.arange(5, 150, 3), np.linspace(70.003, 71.9, 49)])
    got = _sample_at_scan_angles(curve, scan, grid)
    np.testing.assert_array_equal(got[0], curve[0, 5:150:3])
    np.testing.assert_allclose(got[1], 3.0 + 2.0 * scan[1], rtol=1e-12)


def test_the_substrate_window_holds_each_cells_mean_over_its_sub_grid():
    # A Darwin curve narrower than the grid step is represented by its mean over each cell (its
    # integrated reflectivity); cells outside the window keep their point values.
    from xrd_strain_plugin.physics.instrument import _average_substrate_window, _SubstrateWindow

    grid = _grid([70.0], [0.01], 20, [True])
    window = _SubstrateWindow(first_cell=np.array([5]), n_cells=3, n_sub=4, two_theta_deg=np.zeros((1, 12)))
    sub = np.arange(12.0)[None, :] ** 2
    refl = np.concatenate([np.full((1, 20), 7.0), sub], axis=1)
    out = _average_substrate_window(refl, grid, window)
    np.testing.assert_allclose(out[0, 5:8], sub.reshape(3, 4).mean(axis=1))
    assert np.all(np.delete(out[0], [5, 6, 7]) == 7.0)
    no_window = _SubstrateWindow(first_cell=np.array([5]), n_cells=3, n_sub=1, two_theta_deg=np.zeros((1, 3)))
    assert np.array_equal(_average_substrate_window(refl[:, :20], grid, no_window), refl[:, :20])
