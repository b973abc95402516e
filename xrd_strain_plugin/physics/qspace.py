"""Angles, scattering vector, strain axis and the model grid: the one preprocessing path.

A measured or simulated curve reaches the network only through :func:`to_model_input`
(batches, validated there; training) or :func:`curve_to_model_input` (one
:class:`~.curve.Curve`, validated once when it was made; inversion, live and offline),
which share every step: 2theta -> Q = 4 pi sin(theta) / lambda -> strain axis
``q_bragg / q - 1`` (a layer of strain ``e`` diffracts at ``e`` on this axis) ->
log10(I / I_max) resampled onto a fixed :class:`ModelGrid`.  Training, live inference
and offline inversion all call it, so they cannot drift apart.

Units: angles in degrees where the name says ``_deg``; ``q`` in inverse angstroms;
strain is a plain fraction.  Curves are batch-first ``(n_batch, n_points)``; 1-D input
is promoted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

# Q <-> 2theta have their one home in .bragg; imported here for the preprocessing path and its callers.
from .bragg import q_to_two_theta_deg, two_theta_deg_to_q

# The curve's checks have their one home in .curve; imported here for the batched training path.
from .curve import Curve, CurveError, validate_curve

__all__ = [
    "CurveError",
    "ModelGrid",
    "from_model_grid",
    "grid_two_theta_deg",
    "q_to_two_theta_deg",
    "strain_axis",
    "curve_to_model_input",
    "to_model_input",
    "two_theta_deg_to_q",
    "validate_curve",
]

#: Up to this many curves, one np.interp per curve beats building a sparse interpolation matrix.
_SMALL_BATCH = 16


def strain_axis(q, q_bragg):
    """Strain axis ``q_bragg / q - 1``: a layer of strain ``e`` peaks at ``e``.

    Because a strained lattice has ``d = d_0 (1 + e)``, its reciprocal-lattice point
    sits at ``q_bragg / (1 + e)``; this axis maps it back to ``e`` exactly.
    Note it decreases as ``q`` (and 2theta) increases.

    Parameters
    ----------
    q : array_like
        Scattering vector in inverse angstroms (> 0).
    q_bragg : float or array_like
        Substrate Bragg ``q`` in inverse angstroms.

    Returns
    -------
    numpy.ndarray
        Strain (plain fraction).
    """
    return np.asarray(q_bragg, dtype=float) / np.asarray(q, dtype=float) - 1.0


@dataclass(frozen=True, kw_only=True)
class ModelGrid:
    """Fixed strain axis the network sees (the paper: 1001 points).

    Attributes
    ----------
    strain_min, strain_max : float
        Ends of the strain axis (plain fractions), ``strain_min < strain_max``.
        Negative strain is the high-angle side of the substrate peak.
    n_points : int
        Number of points, >= 2.
    """

    strain_min: float
    strain_max: float
    n_points: int = 1001

    def __post_init__(self):
        if not (np.isfinite(self.strain_min) and np.isfinite(self.strain_max)):
            raise ValueError("ModelGrid strain_min and strain_max must be finite")
        if not self.strain_min < self.strain_max:
            raise ValueError(f"ModelGrid needs strain_min < strain_max, got {self.strain_min} >= {self.strain_max}")
        if self.strain_min <= -1.0:
            raise ValueError("ModelGrid strain_min must be > -1")
        if int(self.n_points) != self.n_points or self.n_points < 2:
            raise ValueError(f"ModelGrid n_points must be an integer >= 2, got {self.n_points}")

    @property
    def strain(self) -> np.ndarray:
        """Strain axis (plain fraction), increasing, shape (n_points,)."""
        return np.linspace(self.strain_min, self.strain_max, int(self.n_points))


def grid_two_theta_deg(grid: ModelGrid, *, wavelength_angstrom, q_bragg_inv_angstrom):
    """2theta (degrees) of each grid point: ``q = q_bragg / (1 + strain)``.

    Returns
    -------
    numpy.ndarray, shape (n_points,)
        Decreasing with the (increasing) strain axis.
    """
    q = float(q_bragg_inv_angstrom) / (1.0 + grid.strain)
    return q_to_two_theta_deg(q, wavelength_angstrom)


def to_model_input(two_theta_deg, intensity, *, wavelength_angstrom, q_bragg_inv_angstrom, grid: ModelGrid):
    """Measured or simulated curves -> network input on the model grid.

    Each curve becomes ``log10(I / I_max)`` on its strain axis, linearly
    interpolated in log space onto ``grid.strain``; grid points outside the measured
    range take the curve's minimum.  Zero intensities (empty counting channels)
    are raised to the curve's smallest positive intensity before the logarithm.

    Parameters
    ----------
    two_theta_deg : array_like, shape (n_points,) or (n_batch, n_points)
        Strictly increasing angles in degrees (one axis shared by the batch, or one
        per curve).
    intensity : array_like, shape (n_points,) or (n_batch, n_points)
        Non-negative intensities.
    wavelength_angstrom : float
        X-ray wavelength in angstroms.
    q_bragg_inv_angstrom : float
        Substrate Bragg ``q`` in inverse angstroms (``Reflection.q_bragg_inv_angstrom``).
    grid : ModelGrid
        Target strain axis.

    Returns
    -------
    numpy.ndarray, shape (n_batch, grid.n_points), float32
        ``log10(I / I_max)`` (<= 0) along increasing strain.

    Raises
    ------
    CurveError
        If :func:`validate_curve` rejects the curves.
    """
    angles, counts = validate_curve(two_theta_deg, intensity)
    return _model_input(angles, counts, wavelength_angstrom, q_bragg_inv_angstrom, grid)


def curve_to_model_input(curve: Curve, *, grid: ModelGrid):
    """One :class:`~.curve.Curve` -> network input, shape (1, grid.n_points), float32.

    The same steps as :func:`to_model_input`, at the curve's own reflection; the curve was
    validated when it was made, so it is not checked again.
    """
    if curve.reflection is None:
        raise ValueError("curve_to_model_input needs a Curve with its reflection")
    refl = curve.reflection
    return _model_input(
        curve.two_theta_deg, curve.counts[np.newaxis, :], refl.wavelength_angstrom, refl.q_bragg_inv_angstrom, grid
    )


def _model_input(angles, counts, wavelength_angstrom, q_bragg_inv_angstrom, grid):
    """Validated angles (1-D shared, or 2-D) and counts (n_batch, n_points) -> network input."""
    log_rel = _log_relative(counts)
    # Reverse so the strain axis increases (it decreases with 2theta).
    strain = strain_axis(two_theta_deg_to_q(angles, wavelength_angstrom), q_bragg_inv_angstrom)[..., ::-1]
    log_rel = log_rel[:, ::-1]
    floor = log_rel.min(axis=1, keepdims=True)
    if strain.ndim == 1:
        out = _interp_shared(grid.strain, strain, log_rel, floor)
    else:
        out = np.stack([np.interp(grid.strain, s, y, left=f[0], right=f[0]) for s, y, f in zip(strain, log_rel, floor)])
    return out.astype(np.float32)


def from_model_grid(values, *, grid: ModelGrid, two_theta_deg, wavelength_angstrom, q_bragg_inv_angstrom):
    """Model-grid curves (log10 relative intensity) -> relative intensity at angles.

    The inverse of :func:`to_model_input` within the measured range.

    Parameters
    ----------
    values : array_like, shape (n_batch, grid.n_points) or (grid.n_points,)
        ``log10(I / I_max)`` along ``grid.strain``.
    grid : ModelGrid
    two_theta_deg : array_like, shape (n_points,)
        Angles in degrees at which to evaluate (any order).
    wavelength_angstrom, q_bragg_inv_angstrom : float

    Returns
    -------
    numpy.ndarray, shape (n_batch, n_points), float64
        ``I / I_max``; angles beyond the grid take the end values.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[np.newaxis, :]
    if values.ndim != 2 or values.shape[1] != grid.n_points:
        raise ValueError(f"values must have shape (n_batch, {grid.n_points}), got {values.shape}")
    strain = strain_axis(
        two_theta_deg_to_q(np.asarray(two_theta_deg, dtype=float).reshape(-1), wavelength_angstrom),
        q_bragg_inv_angstrom,
    )
    if values.shape[0] <= _SMALL_BATCH:
        log_rel = np.stack([np.interp(strain, grid.strain, row) for row in values])
    else:
        log_rel = values @ _interp_matrix(strain, grid.strain)
    return 10.0**log_rel


def _log_relative(counts: np.ndarray) -> np.ndarray:
    top = counts.max(axis=1, keepdims=True)  # > 0: all-zero curves were rejected
    smallest = np.where(counts > 0, counts, top).min(axis=1, keepdims=True)
    out = np.maximum(counts, smallest)
    np.log10(out, out=out)
    out -= np.log10(top)
    return out


def _interp_matrix(x_new: np.ndarray, x: np.ndarray):
    """Sparse ``W`` of shape (x.size, x_new.size) with ``y @ W`` = linear interpolation.

    ``x`` must increase; ``x_new`` beyond its ends takes the end values.  One sparse
    product for the whole batch is several times faster than gathering columns.
    """
    index = np.clip(np.searchsorted(x, x_new, side="right") - 1, 0, x.size - 2)
    frac = np.clip((x_new - x[index]) / (x[index + 1] - x[index]), 0.0, 1.0)
    columns = np.arange(x_new.size)
    return sparse.csr_matrix(
        (np.r_[1.0 - frac, frac], (np.r_[index, index + 1], np.r_[columns, columns])),
        shape=(x.size, x_new.size),
    )


def _interp_shared(x_new, x, y, fill):
    """Interpolate every row of ``y`` (on shared ``x``) at ``x_new``; outside -> ``fill``."""
    if y.shape[0] <= _SMALL_BATCH:
        return np.stack([np.interp(x_new, x, row, left=f, right=f) for row, f in zip(y, fill[:, 0])])
    inside = (x_new >= x[0]) & (x_new <= x[-1])
    out = np.empty((y.shape[0], x_new.size))
    out[:] = fill
    out[:, inside] = y @ _interp_matrix(x_new[inside], x)
    return out
