"""Objective: measured data, counting-statistics weights and residuals in log intensity.

The misfit the paper reports, ``sigma_I``, is the rms of ``log10 I_model - log10 I_measured`` over the
measured points with counts (:func:`sigma_i`). Least squares minimises weighted residuals of the same
logarithms: each point's weight is ``1 / sqrt(s_count^2 + s_model^2)`` where ``s_count`` is the standard
deviation of ``log10 N`` for ``N`` Poisson counts (``1 / (ln 10 sqrt(N))``) and ``s_model`` a floor for
what the model cannot describe (an instrument is never a perfect pseudo-Voigt). Where the counts are not
known (intensities on an arbitrary scale that are not multiples of one count), every point has the
same weight and the fit minimises ``sigma_I`` itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The misfit and the scale/background fit live in the physics core, where inference uses them too.
from xrd_strain_plugin.physics.misfit import count_quantum, fit_scale_background, noise_floor_sigma_i, sigma_i

__all__ = ["Objective", "sigma_i", "count_quantum", "fit_scale_background", "noise_floor_sigma_i"]

_LN10 = math.log(10.0)


def _log_sigma_counts(counts) -> np.ndarray:
    """Standard deviation of log10 N for Poisson counts N (N < 1 treated as 1)."""
    return 1.0 / (_LN10 * np.sqrt(np.maximum(counts, 1.0)))


@dataclass(frozen=True, kw_only=True)
class Objective:
    """Measured data and how misfit is weighed.

    Parameters
    ----------
    two_theta_deg : numpy.ndarray, shape (n_points,)
        Increasing angles, degrees.
    intensity : numpy.ndarray, shape (n_points,)
        Measured intensities (>= 0).
    count_intensity : float or None
        Intensity of one count (from :func:`count_quantum`); None: counts unknown, equal weights.
    model_floor : float
        ``s_model``, decades: floor of every point's log10 uncertainty (0 for pure counting weights).
    """

    two_theta_deg: np.ndarray
    intensity: np.ndarray
    count_intensity: float | None = None
    model_floor: float = 0.1

    @classmethod
    def from_data(cls, two_theta_deg, intensity, *, weighting: str = "auto", model_floor: float = 0.1):
        """Build the objective, detecting counting statistics when ``weighting='auto'``.

        Parameters
        ----------
        weighting : {"auto", "counts", "none"}
            ``"counts"``: the intensities are photon counts (integers); ``"none"``: equal weights;
            ``"auto"``: counts (possibly scaled) when :func:`count_quantum` finds a count, else equal.
        """
        tt = np.asarray(two_theta_deg, float)
        y = np.asarray(intensity, float)
        if weighting == "auto":
            q = count_quantum(y)
        elif weighting == "counts":
            q = 1.0
        elif weighting == "none":
            q = None
        else:
            raise ValueError(f"weighting must be 'auto', 'counts' or 'none', got {weighting!r}")
        return cls(two_theta_deg=tt, intensity=y, count_intensity=q, model_floor=float(model_floor))

    @property
    def counts_known(self) -> bool:
        return self.count_intensity is not None

    @property
    def log_data(self) -> np.ndarray:
        """log10 of the data; empty channels count as half a count (or the smallest value / 2)."""
        floor = 0.5 * (self.count_intensity if self.counts_known else float(np.min(self.intensity[self.intensity > 0])))
        return np.log10(np.maximum(self.intensity, floor))

    @property
    def weights(self) -> np.ndarray:
        """Weight of each point's log10 residual, shape (n_points,)."""
        if not self.counts_known:
            return np.ones_like(self.intensity)
        counts = self.intensity / self.count_intensity
        s = np.sqrt(_log_sigma_counts(counts) ** 2 + self.model_floor**2)
        return 1.0 / s

    def residuals(self, intensity_model) -> np.ndarray:
        """Weighted log residuals, shape (..., n_points)."""
        model = np.maximum(np.asarray(intensity_model, float), 1e-300)
        return self.weights * (np.log10(model) - self.log_data)

    def sigma_i(self, intensity_model) -> float:
        """sigma_I of a model curve (unweighted, points with counts)."""
        return sigma_i(self.intensity, intensity_model)

    def noise_floor(self, intensity_model) -> float | None:
        """Expected sigma_I from counting noise alone (None when counts are unknown)."""
        if not self.counts_known:
            return None
        ok = self.intensity > 0
        return noise_floor_sigma_i(np.asarray(intensity_model, float)[ok] / self.count_intensity)
