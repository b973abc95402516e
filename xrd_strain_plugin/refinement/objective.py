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

__all__ = ["Objective", "sigma_i", "count_quantum", "fit_scale_background", "noise_floor_sigma_i"]

_LN10 = math.log(10.0)


def sigma_i(measured, model) -> float:
    """Rms of ``log10(measured) - log10(model)`` over the points where both are positive.

    Parameters
    ----------
    measured, model : array_like, shape (n_points,)
        Intensities on the same scale.

    Returns
    -------
    float
        The misfit sigma_I of Boulle & Debelle (2023), decades.
    """
    measured, model = np.asarray(measured, float), np.asarray(model, float)
    ok = (measured > 0) & (model > 0)
    if not np.any(ok):
        return float("nan")
    return float(np.sqrt(np.mean((np.log10(measured[ok]) - np.log10(model[ok])) ** 2)))


def count_quantum(intensity, *, tolerance: float = 0.02) -> float | None:
    """Intensity of one count if the data are (scaled) photon counts, else None.

    Integer-valued data are counts (``q = 1``). Measured curves are also often published scaled:
    every value is an integer multiple of one count's intensity ``q``. ``q`` is then taken as the
    smallest positive value, or the smallest difference of the low values where that one is several
    counts; it is accepted if the 50 lowest positive values are multiples of it within ``tolerance``
    (relative to ``q``).

    Parameters
    ----------
    intensity : array_like, shape (n_points,)
    tolerance : float
        Largest accepted departure of ``value / q`` from an integer.

    Returns
    -------
    float or None
        Intensity of one count (1.0 for integer counts), or None when the data are not counts.
    """
    values = np.asarray(intensity, float)
    positive = np.sort(values[values > 0])
    if positive.size < 10:
        return None
    if np.all(values == np.round(values)):
        return 1.0  # integer counts, whatever the background level
    low = np.unique(positive[:50])
    candidates = [low[0]]
    if low.size > 1:
        candidates.append(float(np.min(np.diff(low))))
    for q in candidates:
        if q <= 0:
            continue
        ratio = low / q
        if np.all(np.abs(ratio - np.round(ratio)) <= tolerance) and np.round(ratio[0]) <= 20:
            return float(q)
    return None


def _log_sigma_counts(counts) -> np.ndarray:
    """Standard deviation of log10 N for Poisson counts N (N < 1 treated as 1)."""
    return 1.0 / (_LN10 * np.sqrt(np.maximum(counts, 1.0)))


def noise_floor_sigma_i(model_counts) -> float:
    """Expected ``sigma_I`` of a perfect model: counting noise alone, for Poisson means ``model_counts``.

    sigma_I averages over the points that have counts, so each point's mean square of
    ``log10 N - log10 mu`` over Poisson ``N > 0`` is weighted by its chance ``P(N > 0)`` of having
    counts; both are summed over the distribution for ``mu < 50`` and taken as
    ``1 / (ln 10^2 mu)`` and 1 above.

    Parameters
    ----------
    model_counts : array_like, shape (n_points,)
        Expected counts at each point.

    Returns
    -------
    float
        Decades.
    """
    mu = np.maximum(np.asarray(model_counts, float), 1e-6)
    var = 1.0 / (_LN10**2 * mu)
    weight = np.ones_like(mu)
    small = mu < 50
    if np.any(small):
        from scipy.stats import poisson

        n = np.arange(1, 200)[None, :]
        m = mu[small][:, None]
        pmf = poisson.pmf(n, m)
        p_pos = np.maximum(pmf.sum(axis=1), 1e-300)
        var[small] = (pmf * (np.log10(n) - np.log10(m)) ** 2).sum(axis=1) / p_pos
        weight[small] = p_pos
    return float(np.sqrt(np.sum(weight * var) / np.sum(weight)))


def fit_scale_background(counts, reflectivity, *, weights=None, slope_x=None, n_iter: int = 12):
    """Scale and constant background minimising the (weighted) log10 misfit, for a batch of curves.

    Gauss-Newton in ``(log10 scale, log10 background)``, vectorised over the batch (no simulation).

    Parameters
    ----------
    counts : array_like, shape (n_points,)
        Measured intensities (points <= 0 are ignored).
    reflectivity : array_like, shape (n_batch, n_points) or (n_points,)
        Model reflectivities.
    weights : array_like, shape (n_points,), optional
        Weights of the log residuals (default 1).
    n_iter : int
        Gauss-Newton iterations.

    Returns
    -------
    log10_scale, log10_background : numpy.ndarray, shape (n_batch,)
    """
    y_all = np.asarray(counts, float)
    r = np.atleast_2d(np.asarray(reflectivity, float))
    ok = y_all > 0
    y = np.log10(y_all[ok])
    r = np.maximum(r[:, ok], 1e-30)
    w = np.ones_like(y) if weights is None else np.asarray(weights, float)[ok]
    n_b = r.shape[0]
    bg0 = max(float(np.percentile(y_all[ok], 5)), 1e-12)
    p = np.empty((n_b, 2))
    p[:, 0] = np.log10(y_all.max()) - np.log10(np.maximum(r.max(axis=1), 1e-30))
    p[:, 1] = math.log10(bg0)
    for _ in range(n_iter):
        s, b = 10.0 ** p[:, :1], 10.0 ** p[:, 1:]
        model = s * r + b
        res = w * (np.log10(model) - y)
        j0 = w * (s * r / model)
        j1 = w * (b / model)
        a00, a01, a11 = (j0 * j0).sum(1), (j0 * j1).sum(1), (j1 * j1).sum(1)
        g0, g1 = (j0 * res).sum(1), (j1 * res).sum(1)
        det = a00 * a11 - a01 * a01 + 1e-12
        step = np.stack([(a11 * g0 - a01 * g1) / det, (a00 * g1 - a01 * g0) / det], axis=1)
        p = p - np.clip(step, -1.0, 1.0)
        p[:, 1] = np.clip(p[:, 1], math.log10(bg0) - 6, math.log10(y_all.max()))
    return p[:, 0], p[:, 1]


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
        floor = 0.5 * (self.count_intensity if self.counts_known else
                       float(np.min(self.intensity[self.intensity > 0])))
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
