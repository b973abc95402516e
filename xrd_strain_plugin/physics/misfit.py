"""How far a model curve is from a measured one, and the scale and background that bring it closest.

``sigma_I``, the misfit Boulle & Debelle (2023) report, is the rms of ``log10 I_model - log10
I_measured`` over the points with counts (:func:`sigma_i`); :func:`noise_floor_sigma_i` is what a
perfect model would still show from counting noise alone; :func:`count_quantum` tells whether data
are (scaled) photon counts; :func:`fit_scale_background` finds the scale and constant background of
a batch of model reflectivities (the network predicts neither). Pure numpy (scipy for the Poisson
sums); the inversion and the refinement both use them, neither through the other.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["count_quantum", "fit_scale_background", "noise_floor_sigma_i", "sigma_i"]

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
