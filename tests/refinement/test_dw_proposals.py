"""The screen's DW proposals for a decoupled-DW model: the coupled form (checked against
``profiles.dw_coupled``, the paper's formula) and a flat DW, which the coupled form cannot draw."""

import numpy as np

from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.refinement import CurveModel, ModelConfig
from xrd_strain_plugin.refinement.search import SearchOptions, _with_dw, shape_library, weights_for_shapes


def _rows(model):
    shapes, _ = shape_library(SearchOptions())
    template = model.default_parameters(
        strain_weights_percent=np.zeros(model.config.n_strain_weights), thickness_nm=400.0, fwhm_deg=0.01
    )
    rows = np.repeat(np.array([p.value for p in template])[None], len(shapes), axis=0)
    rows[:, : model.config.n_strain_weights] = weights_for_shapes(shapes, model.config.n_strain_weights, 1.5)
    return rows


def test_a_decoupled_model_gets_coupled_and_flat_dw_proposals():
    refl = make_reflection("SiC-3C", (4, 0, 0), 1.5498)
    tt = np.linspace(88.9, 91.0, 200)
    model = CurveModel(refl, tt, ModelConfig(dw_mode="decoupled", n_slices=200))
    rows = _rows(model)
    strain, _, _ = model.profiles(rows)
    inner = slice(0, 160)  # to 0.8 t: at the interface every DW basis returns to DW = 1
    # the flat form: DW = 0.1 over the layer
    _, dw_flat, _ = model.profiles(_with_dw(model, rows, 0.1, "flat"))
    assert np.allclose(dw_flat[:, inner], 0.1, rtol=0.15), np.abs(dw_flat[:, inner] / 0.1 - 1).max()
    # the coupled form follows the paper's formula on each shape, compared in -ln DW relative to -ln DW_min
    # (6 DW weights for 10 strain weights: the narrowest peaks are drawn wider)
    _, dw_coupled, _ = model.profiles(_with_dw(model, rows, 0.3, "coupled"))
    reference = profiles.dw_coupled(strain, np.max(np.abs(strain), axis=1), 0.3)
    err = np.abs(np.log(dw_coupled) - np.log(reference)) / -np.log(0.3)
    assert np.median(err) < 0.05 and np.percentile(err, 90) < 0.25, (np.median(err), np.percentile(err, 90))
    # a coupled model: DW_min set, the rows otherwise untouched
    coupled = CurveModel(refl, tt, ModelConfig())
    rows_c = _rows(coupled)
    out = _with_dw(coupled, rows_c, 0.3, "coupled")
    assert np.all(out[:, coupled.index["dw_min"]] == 0.3)
    assert np.array_equal(
        np.delete(out, coupled.index["dw_min"], axis=1), np.delete(rows_c, coupled.index["dw_min"], axis=1)
    )
