"""The search before the polish: many profile proposals screened in batches on a cheap model.

A least-squares fit only finds the basin it starts in, and curves of different profiles can look
alike, so the refinement does not trust one start. :func:`screen_proposals` scores a systematic set
of profiles against the measured curve, each with its scale and background fitted, in a few batched
calls of the fused simulator kernel (one call per thickness group, so each group gets the grid its
layers need):

1. **Shapes x thicknesses.** Asymmetric Gaussians (peak depth, surface-side and interface-side widths
   on a grid), the generic shapes (ramp, surface plateau, ...), each at a geometric grid of
   thicknesses and two strain maxima read off the curve's extent, DW at a middle value.
2. **Refinement of the best.** The best distinct proposals of step 1 at several DW minima and strain
   maxima around their own.
3. Any extra proposals the caller brings (the network's answer and its variants) are scored with
   step 1.

The result is a ranked list of distinct proposals (distinct: the depth of the strain maximum differs
by more than ``min_depth_separation`` of the thickness, or the thickness by more than
``min_thickness_ratio``), which the refinement polishes. Everything here is a fixed amount of work:
the same curve always gives the same proposals, whatever the machine's load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.bragg import fringe_period_two_theta_deg
from xrd_strain_plugin.physics.misfit import fit_scale_background

__all__ = [
    "SearchOptions",
    "Proposal",
    "screen_proposals",
    "shape_library",
    "weights_for_shapes",
    "distinct",
    "broadened",
    "stratified",
]


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """The proposal grid (a fixed amount of work per curve).

    Parameters
    ----------
    peak_depths : tuple of float
        Reduced depths (0 surface, 1 interface) of the strain maximum of the Gaussian shapes.
    widths : tuple of (float, float)
        (surface-side, interface-side) widths of the Gaussian shapes, fractions of the thickness.
    n_thicknesses : int
        Thicknesses per shape, geometric between ``thickness_range_nm`` (clipped to the model's bounds).
    thickness_range_nm : (float, float)
        Range of the thickness grid.
    strain_factors : tuple of float
        Strain maxima tried in step 1, as fractions of the curve's strain extent.
    dw_start : tuple of float
        DW minima of step 1.
    n_refine : int
        Best distinct proposals of step 1 given step 2.
    dw_values : tuple of float
        DW minima of step 2.
    strain_steps : tuple of float
        Strain-maximum factors of step 2 (around each proposal's own).
    broaden_fringes_nm : float
        Steps 1-2 compare curves broadened (data and model alike, by a Gaussian) until the thickness
        fringes of a layer this thick are washed out, so that the grid ranks strain distributions by
        their envelope, not by the phase of fringes it samples too coarsely (continuation).
    n_sweep : int
        Best distinct envelopes given step 3: a fine thickness sweep at the true resolution.
    sweep_factors : tuple of float
        Thickness factors of step 3.
    envelope_grid : bool
        Steps 1-2 (broadened) on :func:`envelope_grid`, which does not resolve the fringes.
    n_slices : int
        Lamellae of the screening model.
    chunk : int
        Curves per simulator call.
    """

    peak_depths: tuple[float, ...] = (0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85)
    widths: tuple[tuple[float, float], ...] = ((0.1, 0.08), (0.25, 0.12), (0.4, 0.2), (0.25, 0.25), (0.6, 0.12))
    n_thicknesses: int = 20
    thickness_range_nm: tuple[float, float] = (40.0, 5000.0)
    strain_factors: tuple[float, ...] = (0.85, 1.0)
    dw_start: tuple[float, ...] = (0.5,)
    n_refine: int = 40
    dw_values: tuple[float, ...] = (0.15, 0.35, 0.6, 0.85)
    strain_steps: tuple[float, ...] = (0.9, 1.0, 1.12)
    broaden_fringes_nm: float = 150.0
    n_sweep: int = 18
    sweep_factors: tuple[float, ...] = tuple(float(f) for f in np.geomspace(0.78, 1.28, 21))
    envelope_grid: bool = True
    n_slices: int = 60
    chunk: int = 96

    def __post_init__(self):
        if self.n_thicknesses < 1 or self.n_refine < 1:
            raise ValueError("n_thicknesses and n_refine must be >= 1")
        lo, hi = self.thickness_range_nm
        if not 0 < lo < hi:
            raise ValueError(f"thickness_range_nm must be increasing and positive, got {self.thickness_range_nm}")


@dataclass(frozen=True)
class Proposal:
    """One screened proposal: its parameter row (the model's order), cost and where it came from."""

    cost: float
    label: str
    row: np.ndarray
    depth_of_max: float  # reduced depth (0 surface, 1 interface) of the strain maximum
    thickness_nm: float


def shape_library(options: SearchOptions, n_z: int = 200):
    """Reduced strain shapes (max 1) on ``n_z`` slice midpoints, and their labels."""
    z = profiles.slice_midpoints(n_z)
    shapes, labels = [], []
    for zp in options.peak_depths:
        for s_left, s_right in options.widths:
            sigma = np.where(z < zp, s_left, s_right)
            g = np.exp(-0.5 * ((z - zp) / sigma) ** 2)
            g = g * np.clip((1 - z) / max(1 - zp, 1e-3) * 3, 0, 1)  # strain dies out at the interface
            shapes.append(g / g.max())
            labels.append(f"gauss z={zp:.2f} w={s_left:.2f}/{s_right:.2f}")
    generic = {
        "ramp": np.clip(1.2 * (1 - z), 0, 1),
        "surface": np.exp(-0.5 * (z / 0.4) ** 2),
        "plateau": np.where(z < 0.6, 1.0, np.clip((1 - z) / 0.4, 0, 1)),
        "flat": np.clip((1 - z) / 0.1, 0, 1),
    }
    for name, g in generic.items():
        shapes.append(g / g.max())
        labels.append(name)
    return np.array(shapes), labels


def weights_for_shapes(shapes, n_weights: int, e_max_percent):
    """B-spline weights (percent) whose profile follows each shape with maximum ``e_max_percent``.

    Least squares on the model's basis, negative weights clipped (a narrow peak would ring), then
    rescaled so the profile's maximum is ``e_max_percent`` (scalar or one per shape).
    """
    shapes = np.atleast_2d(shapes)
    basis = profiles.profile_basis(n_weights, shapes.shape[1])  # (n_z, n_weights)
    w = np.maximum(np.linalg.lstsq(basis, shapes.T, rcond=None)[0].T, 0.0)
    peak = np.max(w @ basis.T, axis=1)
    return w * (np.asarray(e_max_percent, float).reshape(-1, 1) / np.maximum(peak, 1e-12)[:, None])


def _depth_of_max(model, rows):
    strain, _, _ = model.profiles(rows)
    n = strain.shape[1]
    return (np.argmax(np.abs(strain), axis=1) + 0.5) / n


def envelope_grid(model, rows):
    """Fine-grid step and padding for curves compared only after a broadening far wider than their
    fringes: 6 points per FWHM of the narrowest (broadened) resolution and 2 per fringe period of the
    thickest layer (Nyquist, so the broadening averages the fringes instead of one phase of them),
    dividing the scan step (the fringe-resolving grid samples each fringe ~8 times: a 5 um layer
    costs ~12 times a thin one there)."""
    v = np.atleast_2d(np.asarray(rows, float))
    fwhm_lo = float(np.min(v[:, model.index["fwhm_deg"]]))
    fwhm_hi = float(np.max(v[:, model.index["fwhm_deg"]]))
    scan_step = float(np.min(np.diff(model.two_theta_deg)))
    # at least two points per fringe of the thickest layer: a step near the fringe period samples every
    # fringe at the same phase, and that coherent alias survives any broadening (measured: a 3 um layer
    # at a 0.005 deg step ranked differently than on the fine grid)
    r = model.reflection
    period = fringe_period_two_theta_deg(
        float(np.max(v[:, model.index["thickness_nm"]])), r.wavelength_angstrom, r.theta_bragg
    )
    target = min(0.75 * fwhm_lo / 6, 0.5 * period)
    step = scan_step / max(1, math.ceil(scan_step / target - 1e-9))
    return step, 4 * 1.3 * fwhm_hi


def score_rows(model, objective, rows, *, chunk: int = 96, envelope: bool = False):
    """Cost (chi^2 / 2) of every row, scale and background fitted per row; rows grouped by thickness
    so each call gets the grid its layers need (``envelope``: :func:`envelope_grid`, for curves
    compared broadened). Returns (rows with scale/background, costs)."""
    rows = np.array(rows, dtype=float)
    costs = np.empty(len(rows))
    i_t = model.index["thickness_nm"]
    order = np.argsort(rows[:, i_t], kind="stable")
    i_s, i_b = model.index["log10_scale"], model.index["log10_background"]
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        sub = rows[idx]
        step, pad = envelope_grid(model, sub) if envelope else model.grid_for(sub)
        refl = model.reflectivity(sub, fine_step_deg=step, pad_deg=pad)
        ls, lb = fit_scale_background(objective.intensity, refl, weights=objective.weights, n_iter=8)
        sub[:, i_s], sub[:, i_b] = ls, lb
        res = objective.residuals(model.intensity(sub, refl))
        costs[idx] = 0.5 * np.sum(res * res, axis=1)
        rows[idx] = sub
    return rows, costs


def distinct(proposals, n: int, *, min_depth_separation: float = 0.1, min_thickness_ratio: float = 1.1):
    """The ``n`` best proposals that differ from every better one in depth of maximum or thickness."""
    out = []
    for p in sorted(proposals, key=lambda p: p.cost):
        if all(
            abs(p.depth_of_max - q.depth_of_max) > min_depth_separation
            or max(p.thickness_nm, q.thickness_nm) / min(p.thickness_nm, q.thickness_nm) > min_thickness_ratio
            for q in out
        ):
            out.append(p)
            if len(out) >= n:
                break
    return out


def stratified(proposals, n: int, edges=(0.0, 0.12, 0.27, 0.42, 0.57, 0.72, 1.01)):
    """The best proposal of each band of depth of the maximum (so the fits start in every basin the
    grid can tell apart, not only around the best one), then the best distinct others up to ``n``."""
    ranked = sorted(proposals, key=lambda p: p.cost)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = next((p for p in ranked if lo <= p.depth_of_max < hi), None)
        if band is not None:
            out.append(band)
    for p in distinct(ranked, n + len(out)):
        if len(out) >= max(n, len(out)):
            break
        if all(p is not q for q in out):
            out.append(p)
    return sorted(out, key=lambda p: p.cost)


def screen_proposals(
    model, objective, base_row, *, e_extent: float, options: SearchOptions = SearchOptions(), extra=()
):
    """Screen the proposal grid (and ``extra`` rows) against the curve; ranked proposals.

    Parameters
    ----------
    model : CurveModel
        The screening model (few lamellae); its parameter order is the rows'.
    objective : Objective
    base_row : numpy.ndarray, shape (n_params,)
        Values of everything the grid does not set (resolution, offset, eta, ...).
    e_extent : float
        Strain extent of the curve (fraction): the scale of the strain maxima tried.
    extra : sequence of (label, row)
        Further proposals (the network's answer and its variants), scored in step 1.

    Returns
    -------
    list of Proposal, best first; int, curves simulated
    """
    c = model.config
    idx = model.index
    coupled = c.dw_mode == "coupled"
    shapes, labels = shape_library(options)
    lo_t = max(options.thickness_range_nm[0], c.thickness_bounds_nm[0])
    hi_t = min(options.thickness_range_nm[1], c.thickness_bounds_nm[1])
    thicknesses = np.geomspace(lo_t, hi_t, options.n_thicknesses)
    rows, tags = [], []
    for f in options.strain_factors:
        w = weights_for_shapes(shapes, c.n_strain_weights, 100 * e_extent * f)
        for t_nm in thicknesses:
            for dw in options.dw_start:
                r = np.repeat(base_row[None, :], len(shapes), axis=0)
                r[:, : c.n_strain_weights] = w
                r[:, idx["thickness_nm"]] = t_nm
                r = _with_dw(model, r, dw, "coupled")
                rows.append(r)
                tags += [f"{lab} t={t_nm:.0f} e={f:.2f} dw0={dw}" for lab in labels]
    for label, row in extra:
        rows.append(np.asarray(row, float)[None, :])
        tags.append(label)
    rows = np.concatenate(rows)
    blurred, widen = broadened(model, objective, options)
    rows, costs = score_rows(model, blurred, widen(rows), chunk=options.chunk, envelope=options.envelope_grid)
    n_curves = len(rows)
    found = _proposals(model, rows, costs, tags)
    # step 2: the best distinct ones at other DW minima and strain maxima
    best = distinct(found, options.n_refine)
    rows2, tags2 = [], []
    forms = ("coupled",) if coupled else ("coupled", "flat")  # a decoupled DW: its coupled form, or flat
    for p in best:
        for fe in options.strain_steps:
            for dw in options.dw_values:
                for form in forms:
                    r = p.row.copy()
                    r[: c.n_strain_weights] *= fe
                    rows2.append(_with_dw(model, r[None, :], dw, form)[0])
                    tags2.append(f"{p.label} x{fe:.2f} dw={dw:.2f}" + ("" if coupled else f" {form}"))
    if rows2:
        rows2, costs2 = score_rows(model, blurred, np.array(rows2), chunk=options.chunk, envelope=options.envelope_grid)
        n_curves += len(rows2)
        found += _proposals(model, rows2, costs2, tags2)
    # step 3: the best distinct envelopes (and the extra proposals) at the true resolution, each over a
    # fine sweep of thickness, so the fringes pick the thickness
    i_t, i_f = idx["thickness_nm"], idx["fwhm_deg"]
    rows3, tags3 = [], []
    for p in distinct(found, options.n_sweep):
        for f in options.sweep_factors:
            r = p.row.copy()
            r[i_f] = base_row[i_f]
            r[i_t] = np.clip(p.thickness_nm * f, *c.thickness_bounds_nm)
            rows3.append(r)
            tags3.append(f"{p.label} t x{f:.3f}")
    for label, row in extra:
        rows3.append(np.asarray(row, float))
        tags3.append(label)
    rows3, costs3 = score_rows(model, objective, np.array(rows3), chunk=options.chunk)
    n_curves += len(rows3)
    return sorted(_proposals(model, rows3, costs3, tags3), key=lambda p: p.cost), n_curves


def _with_dw(model, rows, dw: float, form: str):
    """``rows`` with the DW of their profile set: DW_min ``dw`` in the coupled form (DW = dw ** ((strain /
    e_max) ** 2), the paper's), or, for a decoupled model, its DW weights drawing that form or a flat DW of ``dw``
    over the whole layer (what the coupled form cannot draw under a strain that varies)."""
    rows = np.array(rows, float)
    c = model.config
    if c.dw_mode == "coupled":
        rows[:, model.index["dw_min"]] = dw
        return rows
    i0 = model.index["d0"]
    n_z = 4 * c.n_dw_weights
    if form == "flat":  # flat down to 0.85 t (the basis returns to DW = 1 at the interface)
        z = 0.85 * profiles.slice_midpoints(n_z)
        reduced = np.ones((len(rows), n_z))
    else:
        z = profiles.slice_midpoints(n_z)
        strain = rows[:, : c.n_strain_weights] @ profiles.weights_basis(c.n_strain_weights, z).T
        reduced = (strain / np.maximum(np.max(np.abs(strain), axis=1, keepdims=True), 1e-12)) ** 2
    # -ln DW is linear in the DW weights: fit them to -ln(dw) x the reduced strain squared (or x 1), >= 0
    target = -math.log(max(dw, 1e-6)) * reduced
    d = np.linalg.lstsq(profiles.weights_basis(c.n_dw_weights, z), target.T, rcond=None)[0].T
    rows[:, i0 : i0 + c.n_dw_weights] = np.clip(d, 0.0, 5.0)
    return rows


def broadened(model, objective, options):
    """The objective of the data broadened by a Gaussian that washes out the fringes of a
    ``broaden_fringes_nm`` layer, and the map that widens a row's resolution by the same amount."""
    from xrd_strain_plugin.refinement.objective import Objective

    r = model.reflection
    b_deg = 2.0 * fringe_period_two_theta_deg(options.broaden_fringes_nm, r.wavelength_angstrom, r.theta_bragg)
    tt, y = objective.two_theta_deg, objective.intensity
    step = float(np.median(np.diff(tt)))
    sigma_pts = b_deg / (2 * math.sqrt(2 * math.log(2))) / step
    k = np.arange(-math.ceil(4 * sigma_pts), math.ceil(4 * sigma_pts) + 1)
    g = np.exp(-0.5 * (k / max(sigma_pts, 1e-9)) ** 2)
    smooth = np.convolve(y, g, "same") / np.convolve(np.ones_like(y), g, "same")
    blurred = Objective(
        two_theta_deg=tt, intensity=smooth, count_intensity=objective.count_intensity, model_floor=objective.model_floor
    )
    i_f = model.index["fwhm_deg"]

    def widen(rows):
        rows = np.array(rows, float)
        rows[:, i_f] = np.hypot(rows[:, i_f], b_deg)
        return rows

    widen.b_deg = b_deg
    return blurred, widen


def _proposals(model, rows, costs, tags):
    zmax = _depth_of_max(model, rows)
    i_t = model.index["thickness_nm"]
    return [
        Proposal(
            cost=float(costs[k]),
            label=tags[k],
            row=rows[k],
            depth_of_max=float(zmax[k]),
            thickness_nm=float(rows[k, i_t]),
        )
        for k in range(len(rows))
        if math.isfinite(costs[k])
    ]
