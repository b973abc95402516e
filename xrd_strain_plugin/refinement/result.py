"""The immutable outcome of one refinement."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RefinementResult", "PATHS"]

#: How a refinement reached its answer.
PATHS = {
    "local": "least squares from the given start (after the 2-theta offset search)",
    "multi-start": "least squares from a start derived from the given one (thickness/strain variants)",
    "low-strain": "least squares from a generic low-strain start (no usable start given, or it lost)",
    "search": "least squares from a proposal of the screened grid (shapes x thicknesses x strains x DW)",
    "proposal": "least squares from a proposal of the screened grid (shapes x thicknesses x strains x DW)",
    "rescan": "least squares after a fine thickness sweep of the best fit's reduced profile",
    "variant": "least squares from a variant of the best fit (mirrored, maximum shifted, tail cut or extended)",
    "global": "differential evolution (a fixed number of generations), then least squares",
    "start": "the given start itself (at its best offset, scale and background): nothing found was better",
}


@dataclass(frozen=True, kw_only=True)
class RefinementResult:
    """A refined profile, its curve, and how it was found.

    Attributes
    ----------
    depth_nm, strain_percent, debye_waller : numpy.ndarray, shape (n_depth,)
        Refined profile from the surface (depth 0) to the interface (``thickness_nm``).
    two_theta_deg, intensity_measured : numpy.ndarray, shape (n_points,)
        The measured curve (ascending angles).
    intensity_model, intensity_start : numpy.ndarray, shape (n_points,)
        Refined model curve, and the start's curve (scale, background and offset fitted), counts.
    thickness_nm, strain_max_percent, depth_of_max_nm, dw_min : float
        Derived figures of the refined profile.
    sigma_i, sigma_i_start : float
        Misfit (rms log10) of the refined and of the start's curve.
    noise_floor_sigma_i : float or None
        Misfit counting noise alone would give (None where counts are unknown).
    path : str
        Which path won (a key of :data:`PATHS`).
    poor_fit : bool
        True when the answer stayed well above the noise floor (see ``poor_threshold``).
    poor_threshold : float
        The sigma_I above which a fit is flagged poor.
    values, uncertainties : dict of str -> float
        Every parameter and its 1-sigma uncertainty from the Jacobian (NaN: fixed).
    fixed : tuple of str
        Parameters held fixed.
    n_evaluations : int
        Residual evaluations of the local fits.
    n_curves : int
        Curves simulated (all stages, Jacobians included).
    elapsed_s : float
        Wall time of the refinement, seconds.
    cpu_s : float
        CPU time of the refinement's thread, seconds (what the budget counts).
    stages : tuple of dict
        Each stage tried: name, sigma_I reached, seconds.
    start_source : str
        Where the start came from (a network's model id, ``"low-strain"``, ``"user"``), and
        ``start_transfer`` how it was mapped onto this crystal when it came from another one.
    model_config : dict
        The profile parameterisation (number of weights, DW mode, lamellae...).
    ambiguous : bool
        True when distinct profiles (rms strain difference > 0.1 of the maximum, or thickness differing
        by > 10 %: the accuracy criteria) fit within one standard deviation of chi^2 of the best: the data
        do not decide between them.
    alternatives : tuple of dict
        Those other answers from every stage's fits, best first: path, sigma_i, cost, thickness_nm, strain_max_percent,
        depth_of_max_nm, dw_min and their profile tables (depth_nm, strain_percent, debye_waller).
    strain_band_percent : tuple of (list, list)
        Lower and upper strain (percent) at ``depth_nm`` (reduced depth of the answer): +-1 sigma from the
        covariance of the weights, widened to the envelope of the equivalent fits.
    layer_detected : bool
        False when no layer fits better than the bare substrate (by 2 standard deviations of chi^2):
        the answer is then "no strained layer detected", and ``detection_limit`` says the smallest
        strain (per thickness) this curve would have shown.
    detection_limit : dict or None
        The smallest strain per thickness (and strain x thickness) this curve would have shown; computed
        for every answer, it is what "no layer" means on this scan.
    time_capped : bool
        True when the last-resort CPU cap (``RefineOptions.budget_s``) stopped a stage: only then can
        the answer depend on the machine's load.
    """

    depth_nm: np.ndarray
    strain_percent: np.ndarray
    debye_waller: np.ndarray
    two_theta_deg: np.ndarray
    intensity_measured: np.ndarray
    intensity_model: np.ndarray
    intensity_start: np.ndarray
    thickness_nm: float
    strain_max_percent: float
    depth_of_max_nm: float
    dw_min: float
    sigma_i: float
    sigma_i_start: float
    noise_floor_sigma_i: float | None
    path: str
    poor_fit: bool
    poor_threshold: float
    values: dict
    uncertainties: dict
    fixed: tuple = ()
    n_evaluations: int = 0
    n_curves: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    stages: tuple = ()
    start_source: str = ""
    start_transfer: dict = field(default_factory=dict)
    model_config: dict = field(default_factory=dict)
    material: str = ""
    hkl: tuple = ()
    wavelength_angstrom: float = float("nan")
    ambiguous: bool = False
    alternatives: tuple = ()
    strain_band_percent: tuple = ()
    layer_detected: bool = True
    detection_limit: dict | None = None
    time_capped: bool = False

    _ARRAYS = (
        "depth_nm",
        "strain_percent",
        "debye_waller",
        "two_theta_deg",
        "intensity_measured",
        "intensity_model",
        "intensity_start",
    )

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name."""
        return {name: getattr(self, name) for name in self._ARRAYS}

    def summary(self) -> dict:
        """JSON-able scalars and provenance (no arrays); ``refined`` is True."""

        def clean(x):
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, (np.floating, np.integer)):
                return clean(x.item())
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x

        out = {
            name: clean(getattr(self, name))
            for name in self.__dataclass_fields__
            if name not in self._ARRAYS and not name.startswith("_")
        }
        out["refined"] = True
        return out
