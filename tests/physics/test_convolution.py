"""The resolution convolution as its own step (xrd_strain_plugin.physics.instrument.convolve_resolution)."""

import numpy as np
import pytest

from xrd_strain_plugin.physics.instrument import convolve_resolution, resolution_kernel


def _fwhm(x, y):
    """Width at half maximum of a single peak, by linear interpolation of its two flanks."""
    half = y.max() / 2
    above = np.nonzero(y >= half)[0]
    i, j = above[0], above[-1]
    left = np.interp(half, [y[i - 1], y[i]], [x[i - 1], x[i]])
    right = np.interp(half, [y[j + 1], y[j]], [x[j + 1], x[j]])
    return right - left


def test_a_delta_comes_out_as_the_resolution_function_with_its_fwhm():
    # Fact: convolving a delta with the instrument function gives the instrument function.
    step, n = 0.001, 801
    delta = np.zeros((2, n))
    delta[:, n // 2] = 1.0
    out = convolve_resolution(delta, step_deg=[step, step], resolution_fwhm_deg=[0.02, 0.05], half_width_steps=300)
    x = (np.arange(n) - n // 2) * step
    assert _fwhm(x, out[0]) == pytest.approx(0.02, rel=1e-3)
    assert _fwhm(x, out[1]) == pytest.approx(0.05, rel=1e-3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-9)  # the kernel is normalised


def test_a_constant_stays_constant_up_to_the_edges():
    flat = np.full((1, 500), 3.0)
    out = convolve_resolution(
        flat, step_deg=0.002, resolution_fwhm_deg=0.03, half_width_steps=60, shape="pseudo-voigt", eta=0.7
    )
    np.testing.assert_allclose(out, 3.0, rtol=1e-10)


def test_it_equals_a_direct_convolution_renormalised_at_the_edges():
    # Independent reference: np.convolve with the same normalised kernel, divided by the weight inside.
    rng = np.random.default_rng(5)
    step, n_k = 0.003, 40
    y = rng.uniform(0.1, 1.0, (3, 300))
    eta = np.array([0.0, 0.4, 1.0])
    out = convolve_resolution(
        y, step_deg=step, resolution_fwhm_deg=0.02, half_width_steps=n_k, shape="pseudo-voigt", eta=eta
    )
    for row, e, got in zip(y, eta, out):
        kernel = resolution_kernel(np.arange(-n_k, n_k + 1) * step, 0.02, shape="pseudo-voigt", eta=e)
        kernel = kernel / kernel.sum()
        direct = np.convolve(row, kernel, mode="same") / np.convolve(np.ones_like(row), kernel, mode="same")
        np.testing.assert_allclose(got, direct, rtol=1e-10)
