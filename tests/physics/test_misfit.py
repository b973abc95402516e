"""The misfit and the scale/background fit shared by inversion and refinement (xrd_strain_plugin.physics.misfit)."""

import math

import numpy as np
import pytest

from xrd_strain_plugin.physics.misfit import count_quantum, fit_scale_background, noise_floor_sigma_i, sigma_i


def test_sigma_i_is_the_rms_of_the_log10_ratio_over_points_with_counts():
    # Fact: a model off by a constant factor 10^0.1 everywhere has sigma_I = 0.1 decades.
    measured = np.geomspace(1.0, 1e5, 50)
    assert sigma_i(measured, measured * 10**0.1) == pytest.approx(0.1, rel=1e-12)
    # empty channels (0 counts) are left out, not counted as infinite misfit
    with_zeros = measured.copy()
    with_zeros[::5] = 0.0
    assert sigma_i(with_zeros, measured * 10**-0.2) == pytest.approx(0.2, rel=1e-12)
    assert math.isnan(sigma_i(np.zeros(5), np.ones(5)))


def test_fit_scale_background_recovers_a_known_scale_and_background():
    # Fact: counts = s R + b with R known is fitted exactly in log space when noise-free.
    x = np.linspace(-1, 1, 400)
    reflectivity = 1e-6 + np.exp(-0.5 * (x / 0.05) ** 2)
    batch = np.stack([reflectivity, 0.5 * reflectivity])
    counts = 2.0e5 * reflectivity + 30.0
    log_scale, log_bg = fit_scale_background(counts, batch, n_iter=30)
    np.testing.assert_allclose(10**log_scale, [2.0e5, 4.0e5], rtol=1e-4)
    np.testing.assert_allclose(10**log_bg, [30.0, 30.0], rtol=1e-3)


def test_noise_floor_of_many_counts_is_one_over_ln10_sqrt_n():
    # Fact: for N ~ Poisson(mu), std(log10 N) -> 1 / (ln 10 sqrt(mu)) for large mu.
    assert noise_floor_sigma_i(np.full(20, 1e4)) == pytest.approx(1 / (math.log(10) * 100), rel=1e-9)


def test_count_quantum_recognises_integer_and_scaled_counts():
    counts = np.random.default_rng(3).poisson(3.0, 200).astype(float)
    assert count_quantum(counts) == 1.0
    assert count_quantum(counts * 0.0125) == pytest.approx(0.0125)
    assert count_quantum(np.geomspace(0.013, 70.0, 400)) is None
