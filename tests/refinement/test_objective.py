"""Objective: sigma_I, counting statistics, the noise floor, the scale/background fit."""

import math

import numpy as np
import pytest

from xrd_strain_plugin.refinement import Objective, count_quantum, fit_scale_background, noise_floor_sigma_i, sigma_i


def test_sigma_i_is_the_rms_log10_misfit_over_points_with_counts():
    measured = np.array([10.0, 100.0, 0.0, 1000.0])
    model = np.array([10.0, 10.0, 5.0, 100.0])
    # points with counts: log10 ratios 0, 1, 1 -> rms sqrt(2/3); the empty channel is ignored
    assert sigma_i(measured, model) == pytest.approx(math.sqrt(2 / 3))


def test_count_quantum_finds_scaled_counts_and_refuses_continuous_data():
    rng = np.random.default_rng(1)
    counts = rng.poisson(np.geomspace(0.5, 5e4, 400)).astype(float)
    assert count_quantum(counts) == pytest.approx(1.0)
    assert count_quantum(counts + 40) == pytest.approx(1.0)  # a background of 40 counts: still counts
    assert count_quantum(counts * 0.00646) == pytest.approx(0.00646)
    assert count_quantum(np.geomspace(0.013, 70.0, 400)) is None


def test_noise_floor_matches_a_monte_carlo_of_poisson_counts():
    """Independent reference: draw Poisson counts around known means and measure sigma_I directly."""
    rng = np.random.default_rng(7)
    mu = np.geomspace(0.3, 3e4, 300)
    draws = rng.poisson(mu, size=(4000, mu.size)).astype(float)
    ok = draws > 0
    err2 = np.where(ok, (np.log10(np.where(ok, draws, 1.0)) - np.log10(mu)) ** 2, 0.0)
    # sigma_I squared averages over the points with counts; average that over draws
    mc = np.sqrt(np.mean(err2.sum(axis=1) / ok.sum(axis=1)))
    # the formula averages per point conditional on N > 0: equal weights per point, close to MC
    assert noise_floor_sigma_i(mu) == pytest.approx(mc, rel=0.03)
    # large counts: 1 / (ln 10 sqrt(mu))
    assert noise_floor_sigma_i(np.full(10, 1e4)) == pytest.approx(1 / (math.log(10) * 100), rel=1e-9)


def test_weights_follow_counting_statistics_with_a_model_floor():
    y = np.array([1.0, 100.0, 1e4]) * 0.5
    obj = Objective.from_data(np.array([1.0, 2.0, 3.0]), y, weighting="counts", model_floor=0.0)
    s = 1 / obj.weights
    np.testing.assert_allclose(s, 1 / (math.log(10) * np.sqrt(np.maximum(y, 1))))
    floored = Objective.from_data(np.array([1.0, 2.0, 3.0]), y, weighting="counts", model_floor=0.1)
    assert np.all(1 / floored.weights >= 0.1) and 1 / floored.weights[-1] == pytest.approx(0.1, rel=0.01)
    equal = Objective.from_data(np.array([1.0, 2.0, 3.0]), y * 1.37, weighting="none")
    assert equal.noise_floor(y) is None and np.all(equal.weights == 1)
    with pytest.raises(ValueError, match="weighting"):
        Objective.from_data(np.array([1.0, 2.0]), y[:2], weighting="poisson")


def test_scale_and_background_are_recovered_in_a_batch():
    x = np.linspace(-1, 1, 300)
    refl = np.stack([np.exp(-(x**2) / 0.01) + 1e-6, np.exp(-((x - 0.2) ** 2) / 0.02) + 1e-6])
    truth = np.array([[4.0, 0.5], [2.5, 1.2]])  # log10 scale, log10 background
    counts = 10 ** truth[:, :1] * refl + 10 ** truth[:, 1:]
    for k in range(2):
        ls, lb = fit_scale_background(counts[k], refl)
        assert ls[k] == pytest.approx(truth[k, 0], abs=1e-6)
        assert lb[k] == pytest.approx(truth[k, 1], abs=1e-6)
