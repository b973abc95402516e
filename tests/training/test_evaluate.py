"""Table-2 metrics on hand-made cases whose answer is known."""

import numpy as np
import pytest

from xrd_strain_plugin.inference.labels import LabelScaling
from xrd_strain_training.evaluate import accuracies, evaluate_predictions, markdown_table, profile_rms_error

NAMES = tuple(f"w{i}_percent" for i in range(10)) + ("dw_min", "thickness_nm", "resolution_fwhm_deg", "dynamic_range")


def _true(n=100):
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.5, 1.0, (n, 10))
    weights[:, -1] = 0.0
    return np.column_stack(
        [weights, rng.uniform(0.1, 1, n), rng.uniform(100, 1000, n), rng.uniform(0.01, 0.1, n), rng.uniform(3, 6, n)]
    )


def test_perfect_prediction_scores_everything():
    true = _true()
    scaling = LabelScaling.fit(true, NAMES)
    ev = evaluate_predictions(true, true, scaling=scaling, n_weights=10, n_slices=100)
    assert ev.mse == 0.0
    assert all(v == 1.0 for v in ev.accuracies.values())


def test_accuracy_counts_relative_errors_below_ten_percent():
    true = _true()
    pred = true.copy()
    pred[:50, 11] *= 1.05  # t 5 % off: counted as accurate
    pred[50:, 11] *= 1.20  # t 20 % off: not
    pred[:25, 10] *= 0.85  # DW_min 15 % off for a quarter
    pred[:, :10] *= 1.5  # every strain 50 % too large: e_max wrong everywhere
    scaling = LabelScaling.fit(true, NAMES)
    ev = evaluate_predictions(true, pred, scaling=scaling, n_weights=10, n_slices=100)
    assert ev.accuracies["a_t"] == 0.5
    assert ev.accuracies["a_dw"] == 0.75
    assert ev.accuracies["a_emax"] == 0.0
    assert ev.accuracies["a_h"] == 1.0 and ev.accuracies["a_dr"] == 1.0
    assert ev.accuracies["a_strain"] == 0.0
    bands = ev.by_band("thickness_nm", edges=(0, 2000))
    assert bands[0]["n"] == 100 and bands[0]["a_t"] == 0.5


def test_profile_rms_pads_the_shorter_profile_with_zero_strain():
    # 1 % over 100 nm vs the same 1 % over 200 nm: zero over half the depth of the deeper one.
    one = np.full((1, 50), 1.0)
    rms = profile_rms_error(one, np.array([100.0]), one, np.array([200.0]))
    assert rms[0] == pytest.approx(np.sqrt(0.5), rel=1e-3)
    # Against no strain at all over the same thickness: the full 1 %.
    assert profile_rms_error(one, np.array([100.0]), 0 * one, np.array([100.0]))[0] == 1.0


def test_empty_band_is_nan_and_table_renders():
    err = {
        k: np.array([0.05, 0.2])
        for k in (
            "thickness_nm",
            "strain_max_percent",
            "dw_min",
            "resolution_fwhm_deg",
            "dynamic_range",
            "strain_profile",
        )
    }
    assert accuracies(err)["a_t"] == 0.5
    assert np.isnan(accuracies(err, mask=np.array([False, False]))["a_t"])
    row = {"n_test": 2, "mse_train": 1e-3, "mse_test": 2e-3, **accuracies(err)}
    table = markdown_table({"tiny": row})
    assert "| tiny | 2 | 1.00e-03 | 2.00e-03 | 50 % |" in table and "paper CNN2" in table
