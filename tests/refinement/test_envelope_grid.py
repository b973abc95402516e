"""The screen's broadened steps on the envelope grid (the default since issue 13's fourth pass) rank
proposals as the fringe-resolving grid does: the reference is the same rows scored on the fine grid."""

import math
from pathlib import Path

import numpy as np
import pytest

from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.instrument import apply_counts, simulate_scan
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.refinement import CurveModel, ModelConfig
from xrd_strain_plugin.refinement.objective import Objective
from xrd_strain_plugin.refinement.search import (
    SearchOptions,
    broadened,
    score_rows,
    shape_library,
    weights_for_shapes,
)

CIF_6H = str(Path(__file__).resolve().parents[2] / "xrd_strain_plugin" / "data" / "SiC-6H.cif")


@pytest.mark.parametrize(
    "case",
    [
        # YSZ 400, 0.01 deg steps and resolution, layers of 150 nm to 2.5 um
        dict(material="YSZ", hkl=(4, 0, 0), e_max=0.02, t_nm=900.0, step=0.01, fwhm=0.01, ts=(150, 400, 900, 2500)),
        # a thick layer sampled at about its fringe period (6H-SiC 0 0 12, 3-4 um, 0.005 deg): the grid must
        # not sample every fringe at one phase (found on the reach benchmark's buried-peak case)
        dict(material=CIF_6H, hkl=(0, 0, 12), e_max=0.004, t_nm=3000.0, step=0.005, fwhm=0.005, ts=(1000, 3000, 4000)),
    ],
    ids=["ysz-400", "6h-sic-0012-thick"],
)
def test_the_envelope_grid_scores_broadened_rows_as_the_fringe_resolving_grid_does(case):
    assert SearchOptions().envelope_grid, "the envelope grid is the default screen"
    refl = make_reflection(case["material"], case["hkl"], 1.5406)
    e_max = case["e_max"]
    z = profiles.slice_midpoints(100)
    strain = e_max * np.exp(-0.5 * ((z - 0.4) / np.where(z < 0.4, 0.3, 0.15)) ** 2)
    dw = profiles.dw_coupled(strain[None], e_max, 0.4)[0]
    reach = 2 * math.degrees(1.1 * e_max * math.tan(refl.theta_bragg)) + 0.4
    tt = np.arange(refl.two_theta_bragg_deg - reach, refl.two_theta_bragg_deg + 0.4, case["step"])
    curve = simulate_scan(tt, strain, dw, case["t_nm"], refl, resolution_fwhm_deg=case["fwhm"])
    counts = apply_counts(curve, scale=1e6, background=10.0, rng=np.random.default_rng(3))[0]
    objective = Objective.from_data(tt, counts)
    model = CurveModel(refl, tt, ModelConfig(n_slices=60))
    options = SearchOptions()
    shapes, _ = shape_library(options)
    template = model.default_parameters(
        strain_weights_percent=np.zeros(model.config.n_strain_weights), thickness_nm=300.0, fwhm_deg=case["fwhm"]
    )
    base = np.array([p.value for p in template])
    rows = []
    for t_nm in case["ts"]:  # thin to thick: a thick layer's fringes alias worst
        r = np.repeat(base[None], len(shapes), axis=0)
        r[:, : model.config.n_strain_weights] = weights_for_shapes(shapes, model.config.n_strain_weights, 100 * e_max)
        r[:, model.index["thickness_nm"]] = t_nm
        rows.append(r)
    blurred, widen = broadened(model, objective, options)
    rows = widen(np.concatenate(rows))
    _, fine = score_rows(model, blurred, rows, envelope=False)
    _, coarse = score_rows(model, blurred, rows, envelope=True)
    # the same costs to a few percent, and the same ranking: the best rows of one are the best of the other
    assert np.median(np.abs(coarse / fine - 1)) < 0.03, np.median(np.abs(coarse / fine - 1))
    rank_fine, rank_coarse = np.argsort(np.argsort(fine)), np.argsort(np.argsort(coarse))
    rho = np.corrcoef(rank_fine, rank_coarse)[0, 1]
    assert rho > 0.98, rho
    best_fine = set(np.argsort(fine)[:10])
    assert len(best_fine & set(np.argsort(coarse)[:20])) >= 9
