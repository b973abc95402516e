"""Automated least-squares refinement of strain and Debye-Waller profiles.

Split the way refnx splits it: a :class:`CurveModel` only computes curves from parameters (through the
physics core), an :class:`Objective` holds the data and turns curves into weighted log residuals and
``sigma_i``, and the fitter (:func:`fit_local`) only optimises. :func:`refine_curve` strings them into
the automatic procedure (starts, 2-theta offset search, local fits, global stage) used by
``xrd-strain invert --refine``, the live callback and the Prefect flow. Nothing here imports Keras:
a start comes from the network or from anywhere else.
"""

from xrd_strain_plugin.refinement.fitter import Budget, LocalFit, fit_local
from xrd_strain_plugin.refinement.model import CurveModel, ModelConfig, Parameter
from xrd_strain_plugin.refinement.objective import (
    Objective,
    count_quantum,
    fit_scale_background,
    noise_floor_sigma_i,
    sigma_i,
)
from xrd_strain_plugin.refinement.refine import (
    RefineOptions,
    StartProfile,
    check_scan_covers_reflection,
    prepare_curve,
    refine_curve,
)
from xrd_strain_plugin.refinement.result import PATHS, RefinementResult

__all__ = [
    "Budget",
    "CurveModel",
    "LocalFit",
    "ModelConfig",
    "Objective",
    "PATHS",
    "Parameter",
    "RefineOptions",
    "RefinementResult",
    "StartProfile",
    "check_scan_covers_reflection",
    "count_quantum",
    "fit_local",
    "fit_scale_background",
    "noise_floor_sigma_i",
    "prepare_curve",
    "refine_curve",
    "sigma_i",
]
