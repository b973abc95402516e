"""Depth profiles of strain and static Debye-Waller factor, sliced into lamellae.

Conventions
-----------
Depth is measured from the surface.  A profile of ``n_slices`` lamellae is sampled
at the slice midpoints, index 0 at the surface and index ``n_slices - 1`` touching
the substrate.  The reduced depth is ``z = depth / thickness`` in [0, 1]: ``z = 0``
is the surface, ``z = 1`` the interface with the substrate.  Strain is a plain
fraction (0.01 = 1 %); the Debye-Waller factor ``DW`` is in [0, 1] (1 = perfect).

How weights become a profile
----------------------------
A profile with ``n_weights`` weights ``w_0 ... w_{n-1}`` uses the clamped, uniform
cubic B-spline basis of ``n_weights + 1`` functions on [0, 1]
(:func:`bspline_basis`).  Weight ``w_k`` multiplies basis function ``k``; the last
basis function, the only one that is non-zero at the interface, gets coefficient 0.
So every weight is free and the shape always reaches 0 at ``z = 1``::

    S(z)      = sum_k w_k B_k(z)                     k = 0 .. n_weights - 1
    strain(z) = strain_max * S(z) / max_i |S(z_i)|   z_i = slice midpoints

so that the largest ``|strain|`` over the slices equals ``strain_max`` exactly.
``w_0`` is the value at the surface (clamped knots interpolate the end points).
All-zero weights give a zero profile.

The DW factor either follows the strain, ``DW = exp(-alpha (strain/strain_max)^2)``
with ``alpha = -ln(dw_min)`` (:func:`dw_coupled`), or has its own non-negative
weights, ``DW = dw_min ** (S_dw / max S_dw)`` (:func:`dw_from_weights`); both equal
``dw_min`` where the disorder is largest and 1 at the interface.

Every function here is vectorised over the batch: the basis matrix is built once
for the slice grid and a batch of profiles is one matrix product.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "DW_MODES",
    "Lamellae",
    "bspline_basis",
    "check_dw_mode",
    "depth_table",
    "dw_coupled",
    "dw_from_weights",
    "fit_weights",
    "fit_weights_at",
    "lamellae_from_table",
    "profile_basis",
    "slice_midpoints",
    "strain_from_weights",
    "weights_basis",
]

#: How a profile's Debye-Waller factor is described: following the strain (the paper) or by its own weights.
DW_MODES = ("coupled", "decoupled")

_DEGREE = 3


def slice_midpoints(n_slices: int) -> np.ndarray:
    """Reduced depth of the slice midpoints.

    Parameters
    ----------
    n_slices : int
        Number of lamellae (>= 1).

    Returns
    -------
    numpy.ndarray, shape (n_slices,)
        ``(i + 0.5) / n_slices``: 0 is the surface, 1 the interface.
    """
    n_slices = _positive_int(n_slices, "n_slices")
    return (np.arange(n_slices) + 0.5) / n_slices


def bspline_basis(n_basis: int, z: np.ndarray) -> np.ndarray:
    """Clamped uniform cubic B-spline basis on [0, 1], evaluated at ``z``.

    The knot vector is ``[0, 0, 0, 0, 1/m, ..., (m-1)/m, 1, 1, 1, 1]`` with
    ``m = n_basis - 3`` intervals, so the functions are non-negative, sum to 1 at
    every ``z`` (partition of unity), and only ``B_0`` (``B_{n-1}``) is non-zero at
    ``z = 0`` (``z = 1``).  Computed with the Cox-de Boor recursion, vectorised over
    ``z`` (the loops run over degree and basis index only).

    Parameters
    ----------
    n_basis : int
        Number of basis functions (>= 4 for a cubic spline).
    z : array_like, shape (n_z,)
        Reduced depths in [0, 1].

    Returns
    -------
    numpy.ndarray, shape (n_z, n_basis)
        ``B[i, k] = B_k(z_i)``.

    Raises
    ------
    ValueError
        If ``n_basis < 4`` or a ``z`` lies outside [0, 1] or is not finite.
    """
    n_basis = _positive_int(n_basis, "n_basis")
    if n_basis < _DEGREE + 1:
        raise ValueError(f"n_basis must be >= {_DEGREE + 1} for a cubic B-spline, got {n_basis}")
    z = np.asarray(z, dtype=float).reshape(-1)
    if not np.all(np.isfinite(z)) or np.any((z < 0.0) | (z > 1.0)):
        raise ValueError("z must be finite and within [0, 1]")
    knots = _clamped_knots(n_basis)
    # Degree 0: indicator of the knot span; z = 1 belongs to the last non-empty span.
    n_spans = len(knots) - 1
    span = np.searchsorted(knots, z, side="right") - 1
    span = np.minimum(span, n_basis - 1)
    basis = np.zeros((z.size, n_spans))
    basis[np.arange(z.size), span] = 1.0
    for p in range(1, _DEGREE + 1):
        new = np.zeros((z.size, n_spans - p))
        for k in range(n_spans - p):
            left = knots[k + p] - knots[k]
            right = knots[k + p + 1] - knots[k + 1]
            if left > 0:
                new[:, k] += (z - knots[k]) / left * basis[:, k]
            if right > 0:
                new[:, k] += (knots[k + p + 1] - z) / right * basis[:, k + 1]
        basis = new
    return basis


def profile_basis(n_weights: int, n_slices: int) -> np.ndarray:
    """Basis matrix mapping ``n_weights`` weights to ``n_slices`` slice values.

    The first ``n_weights`` functions of the ``n_weights + 1`` clamped cubic basis
    at the slice midpoints (the interface function is dropped, which pins the
    profile to 0 at the interface; see the module docstring).

    Parameters
    ----------
    n_weights : int
        Number of free weights (>= 3; the paper uses 10).
    n_slices : int
        Number of lamellae.

    Returns
    -------
    numpy.ndarray, shape (n_slices, n_weights)
    """
    return weights_basis(n_weights, slice_midpoints(n_slices))


def weights_basis(n_weights: int, z) -> np.ndarray:
    """The profile basis at any reduced depths: the rule "n + 1 functions, drop the interface one".

    The first ``n_weights`` functions of the ``n_weights + 1`` clamped cubic basis (module
    docstring), so a profile ``weights_basis(n, z) @ w`` is 0 at the interface ``z = 1``. This is
    the one place the rule is written; :func:`profile_basis` evaluates it at the slice midpoints.

    Parameters
    ----------
    n_weights : int
        Number of free weights (>= 3).
    z : array_like, shape (n_z,)
        Reduced depths in [0, 1] (0: surface, 1: interface).

    Returns
    -------
    numpy.ndarray, shape (n_z, n_weights)
    """
    n_weights = _positive_int(n_weights, "n_weights")
    if n_weights < _DEGREE:
        raise ValueError(f"n_weights must be >= {_DEGREE}, got {n_weights}")
    return bspline_basis(n_weights + 1, z)[:, :n_weights]


def fit_weights_at(z, values, n_weights: int) -> np.ndarray:
    """Least-squares weights whose profile passes closest to ``values`` sampled at depths ``z``.

    Parameters
    ----------
    z : array_like, shape (n_z,)
        Reduced depths (clipped to [0, 1]).
    values : array_like, shape (n_z,)
        The profile there, in any unit (the weights carry it).
    n_weights : int

    Returns
    -------
    numpy.ndarray, shape (n_weights,)
    """
    basis = weights_basis(n_weights, np.clip(np.asarray(z, dtype=float), 0.0, 1.0))
    return np.linalg.lstsq(basis, np.asarray(values, dtype=float), rcond=None)[0]


def check_dw_mode(dw_mode: str) -> str:
    """``dw_mode`` if it is one of :data:`DW_MODES`, else a ``ValueError`` naming them."""
    if dw_mode not in DW_MODES:
        raise ValueError(f"dw_mode must be one of {DW_MODES}, got {dw_mode!r}")
    return dw_mode


def depth_table(
    weights_percent, *, thickness_nm: float, dw_min: float, n_depth: int, strain_max_percent: float | None = None
):
    """A profile with coupled DW as a table from the surface (depth 0) to the interface (depth t).

    Parameters
    ----------
    weights_percent : array_like, shape (n_weights,)
        Strain weights, percent.
    thickness_nm : float
    dw_min : float
        Smallest DW, in (0, 1] (clipped to >= 1e-6).
    n_depth : int
        Rows, evenly spaced in depth, both ends included (the last row is the interface, strain 0).
    strain_max_percent : float, optional
        Rescale the strain so that its largest ``|value|`` in the table is this (the network's
        e_max, the maximum over the slice midpoints); default: the weights' own scale.

    Returns
    -------
    depth_nm, strain_percent, debye_waller : numpy.ndarray, shape (n_depth,)
    """
    w = np.asarray(weights_percent, dtype=float).reshape(-1)
    z = np.linspace(0.0, 1.0, _positive_int(n_depth, "n_depth"))
    strain_pct = weights_basis(w.size, z) @ w
    top = float(np.max(np.abs(strain_pct)))
    if strain_max_percent is not None and top > 0:
        strain_pct = strain_pct * (float(strain_max_percent) / top)
        top = abs(float(strain_max_percent))
    dw = dw_coupled(strain_pct, top, float(np.clip(dw_min, 1e-6, 1.0)))[0]
    return z * float(thickness_nm), strain_pct, dw


def strain_from_weights(weights, strain_max, n_slices: int) -> np.ndarray:
    """Strain profile of each lamella from B-spline weights.

    ``strain = strain_max * S / max|S|`` with ``S = profile_basis @ weights``
    (module docstring); the largest ``|strain|`` over the slices is ``strain_max``.

    Parameters
    ----------
    weights : array_like, shape (n_batch, n_weights) or (n_weights,)
        Spline weights; only their shape matters (the profile is rescaled).
        ``weights[..., 0]`` sets the surface value.
    strain_max : float or array_like, shape (n_batch,)
        Maximum strain (plain fraction) of each profile.
    n_slices : int
        Number of lamellae.

    Returns
    -------
    numpy.ndarray, shape (n_batch, n_slices)
        Strain (plain fraction) at the slice midpoints, index 0 at the surface.
    """
    weights = _as_batch(weights, "weights")
    shape = weights @ profile_basis(weights.shape[1], n_slices).T
    return _column(strain_max, weights.shape[0], "strain_max") * _normalised(shape)


def dw_coupled(strain, strain_max, dw_min) -> np.ndarray:
    """Debye-Waller factor coupled to the strain.

    ``DW = exp(-alpha (strain / strain_max)^2)`` with ``alpha = -ln(dw_min)``:
    ``DW = dw_min`` where ``|strain| = strain_max`` and 1 where the strain is 0.

    Parameters
    ----------
    strain : array_like, shape (n_batch, n_slices) or (n_slices,)
        Strain (plain fraction).
    strain_max : float or array_like, shape (n_batch,)
        Strain (plain fraction) at which DW reaches ``dw_min``; 0 gives DW = 1.
    dw_min : float or array_like, shape (n_batch,)
        Smallest DW, in (0, 1].

    Returns
    -------
    numpy.ndarray, shape (n_batch, n_slices)
    """
    strain = _as_batch(strain, "strain")
    n_batch = strain.shape[0]
    strain_max = _column(strain_max, n_batch, "strain_max")
    dw_min = _dw_min(dw_min, n_batch)
    safe = np.where(strain_max == 0.0, 1.0, strain_max)
    reduced = np.where(strain_max == 0.0, 0.0, strain / safe)
    return np.exp(np.log(dw_min) * reduced**2)


def dw_from_weights(weights, dw_min, n_slices: int) -> np.ndarray:
    """Debye-Waller profile from its own B-spline weights (decoupled from strain).

    ``DW = dw_min ** (S / max S)`` with ``S = profile_basis @ weights``: the
    disorder shape ``S / max S`` runs from 0 (DW = 1) to 1 (DW = ``dw_min``) and is
    0 at the interface.

    Parameters
    ----------
    weights : array_like, shape (n_batch, n_weights) or (n_weights,)
        Non-negative weights of the disorder shape.
    dw_min : float or array_like, shape (n_batch,)
        Smallest DW, in (0, 1].
    n_slices : int
        Number of lamellae.

    Returns
    -------
    numpy.ndarray, shape (n_batch, n_slices)
        DW at the slice midpoints, index 0 at the surface.

    Raises
    ------
    ValueError
        If a weight is negative.
    """
    weights = _as_batch(weights, "weights")
    if np.any(weights < 0):
        raise ValueError("weights of a Debye-Waller profile must be non-negative")
    disorder = _normalised(weights @ profile_basis(weights.shape[1], n_slices).T)
    return _dw_min(dw_min, weights.shape[0]) ** disorder


def fit_weights(strain_profile, n_weights: int) -> np.ndarray:
    """Least-squares B-spline weights reproducing a sampled profile.

    Solves ``profile_basis(n_weights, n_slices) @ w ~= profile`` for every row (one
    pseudo-inverse for the whole batch).  The weights carry the profile's own
    units, so ``strain_from_weights(w, max|profile|, n_slices)`` reproduces the
    profile as closely as ``n_weights`` cubic pieces allow.

    Parameters
    ----------
    strain_profile : array_like, shape (n_batch, n_slices) or (n_slices,)
        Profile at the slice midpoints, index 0 at the surface.
    n_weights : int
        Number of weights.

    Returns
    -------
    numpy.ndarray, shape (n_batch, n_weights)
    """
    profile = _as_batch(strain_profile, "strain_profile")
    if profile.shape[1] < n_weights:
        raise ValueError(f"need at least n_weights={n_weights} slices, got {profile.shape[1]}")
    basis = profile_basis(n_weights, profile.shape[1])
    return profile @ np.linalg.pinv(basis).T


class Lamellae(NamedTuple):
    """A sliced layer: its thickness and per-slice strain and DW (index 0 = surface)."""

    thickness_nm: float
    strain: np.ndarray  #: shape (n_slices,), plain fraction
    debye_waller: np.ndarray  #: shape (n_slices,)


def lamellae_from_table(depth_nm, strain_percent, debye_waller, n_slices: int) -> Lamellae:
    """Slice a tabulated profile (a user's PROFILE.csv) into lamellae.

    The table is linear between rows; above the first row the first row's values
    hold; the substrate (strain 0, DW 1) starts below the last row, whose depth is
    the layer thickness.  Each of the ``n_slices`` equal lamellae takes the table's
    value at its midpoint.

    Parameters
    ----------
    depth_nm : array_like, shape (n_rows,)
        Depth from the surface, strictly increasing, >= 0; the last is the thickness.
    strain_percent : array_like, shape (n_rows,)
        Strain in percent.
    debye_waller : array_like, shape (n_rows,)
        DW in [0, 1].
    n_slices : int
        Number of lamellae.

    Returns
    -------
    Lamellae
        ``thickness_nm`` (float), ``strain`` (plain fraction) and ``debye_waller``,
        each of shape (n_slices,).

    Raises
    ------
    ValueError
        Naming the offending column: not finite, mismatched lengths, depths not
        strictly increasing or negative, zero thickness, DW outside [0, 1].
    """
    n_slices = _positive_int(n_slices, "n_slices")
    columns = {}
    for name, values in (("depth_nm", depth_nm), ("strain_percent", strain_percent), ("debye_waller", debye_waller)):
        array = np.asarray(values, dtype=float)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D sequence")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains NaN or inf")
        columns[name] = array
    depth = columns["depth_nm"]
    if not (depth.size == columns["strain_percent"].size == columns["debye_waller"].size):
        raise ValueError("depth_nm, strain_percent and debye_waller must have the same length")
    if depth[0] < 0:
        raise ValueError(f"depth_nm must be >= 0 (depth from the surface), got {depth[0]:g}")
    if np.any(np.diff(depth) <= 0):
        raise ValueError("depth_nm must be strictly increasing (sorted, no duplicate depths)")
    thickness_nm = float(depth[-1])
    if thickness_nm <= 0:
        raise ValueError("thickness (the last depth_nm) must be > 0")
    dw = columns["debye_waller"]
    if np.any((dw < 0) | (dw > 1)):
        raise ValueError("debye_waller must lie within [0, 1]")
    mid_nm = slice_midpoints(n_slices) * thickness_nm
    return Lamellae(
        thickness_nm=thickness_nm,
        strain=np.interp(mid_nm, depth, columns["strain_percent"]) / 100.0,
        debye_waller=np.interp(mid_nm, depth, dw),
    )


def _clamped_knots(n_basis: int) -> np.ndarray:
    interior = np.linspace(0.0, 1.0, n_basis - _DEGREE + 1)
    return np.concatenate([np.zeros(_DEGREE), interior, np.ones(_DEGREE)])


def _normalised(shape: np.ndarray) -> np.ndarray:
    """Rows divided by their largest absolute value (all-zero rows stay zero)."""
    peak = np.max(np.abs(shape), axis=1, keepdims=True)
    return np.divide(shape, peak, out=np.zeros_like(shape), where=peak > 0)


def _as_batch(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (n_batch, n) or (n,), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


def _column(values, n_batch: int, name: str) -> np.ndarray:
    """Scalar or (n_batch,) parameter as a (n_batch, 1) column."""
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size not in (1, n_batch):
        raise ValueError(f"{name} must be a scalar or have n_batch={n_batch} values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return np.broadcast_to(array, (n_batch,))[:, np.newaxis]


def _dw_min(values, n_batch: int) -> np.ndarray:
    dw_min = _column(values, n_batch, "dw_min")
    if np.any((dw_min <= 0) | (dw_min > 1)):
        raise ValueError("dw_min must lie within (0, 1]")
    return dw_min


def _positive_int(value, name: str) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
