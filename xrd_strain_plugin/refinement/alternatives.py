"""Equally good answers: the variants of a fit worth polishing, and which fits count as distinct.

Curves of different strain profiles can agree within the counting noise: a profile and its mirror
image (kinematically the same intensity up to absorption and DW), a strain maximum moved in depth, a
layer whose low-strain tail next to the interface is longer or shorter. The refinement therefore

1. polishes the best fit's **variants** (:func:`variant_tables`: mirrored, maximum shifted in depth,
   the deep tail cut or extended) besides its own search, and
2. keeps **every** full-model fit of every stage in one pool and returns all of them that fit within
   the chi^2 tolerance and differ from each better one (:func:`ranked_distinct`), judged with the same
   measure as the accuracy of an answer (:func:`profile_distance`: rms strain difference over depth
   relative to the maximum, and the thickness), so that when the truth fits within the tolerance and
   the pool holds a fit near it, that fit is among the alternatives.
"""

from __future__ import annotations

import numpy as np

__all__ = ["profile_distance", "variant_tables", "ranked_distinct", "VARIANT_SHIFTS", "VARIANT_THICKNESS"]

#: Shifts of the strain maximum tried as variants, fractions of the thickness.
VARIANT_SHIFTS = (-0.3, -0.15, 0.15, 0.3)
#: Thickness factors of the variants that keep the profile at its absolute depths (tail cut / extended).
VARIANT_THICKNESS = (0.8, 1.25)


def profile_distance(depth_a_nm, strain_a, depth_b_nm, strain_b, *, n_depth: int = 400) -> float:
    """Rms over depth of the difference of two strain profiles, each zero below its own interface.

    Parameters
    ----------
    depth_a_nm, depth_b_nm : numpy.ndarray, shape (n_a,), (n_b,)
        Increasing depths from the surface; the last one is the layer's thickness.
    strain_a, strain_b : numpy.ndarray
        Strain at those depths (any unit; the result has the same).
    n_depth : int
        Depth samples, evenly spaced midpoints from the surface to the deeper interface.

    Returns
    -------
    float
    """
    depth_a_nm, depth_b_nm = np.asarray(depth_a_nm, float), np.asarray(depth_b_nm, float)
    t_max = max(depth_a_nm[-1], depth_b_nm[-1])
    z = (np.arange(n_depth) + 0.5) / n_depth * t_max
    a = np.where(z <= depth_a_nm[-1], np.interp(z, depth_a_nm, strain_a), 0.0)
    b = np.where(z <= depth_b_nm[-1], np.interp(z, depth_b_nm, strain_b), 0.0)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def variant_tables(depth_nm, strain_percent, debye_waller):
    """The variants of a profile worth a fit: mirrored, maximum shifted, deep tail cut or extended.

    Parameters
    ----------
    depth_nm, strain_percent, debye_waller : numpy.ndarray, shape (n_depth,)
        The profile, surface (depth 0) to interface (the last depth).

    Returns
    -------
    list of (label, depth_nm, strain_percent, debye_waller)
        Each variant as a table (the thickness is its last depth).
    """
    depth = np.asarray(depth_nm, float)
    strain = np.asarray(strain_percent, float)
    dw = np.asarray(debye_waller, float)
    t_nm = depth[-1]
    z = depth / max(t_nm, 1e-12)
    out = [("mirror", depth, strain[::-1].copy(), dw[::-1].copy())]
    for shift in VARIANT_SHIFTS:
        # the same shape moved by ``shift`` t; what enters from the edge continues the edge value
        out.append((f"shift {shift:+.2f}", depth, np.interp(z - shift, z, strain), np.interp(z - shift, z, dw)))
    for factor in VARIANT_THICKNESS:
        deeper = z * t_nm * factor
        out.append(
            (
                f"tail x{factor:.2f}",
                deeper,
                np.interp(deeper, depth, strain, right=0.0),
                np.interp(deeper, depth, dw, right=1.0),
            )
        )
    return out


def ranked_distinct(best, others, *, tolerance: float, min_distance: float = 0.1, thickness_ratio: float = 1.1):
    """The ``others`` within ``tolerance`` of ``best``'s cost that differ from it and every better kept one.

    Parameters
    ----------
    best : dict
        The answer, with ``cost``, ``depth_nm``, ``strain_percent`` (tables) and ``thickness_nm``.
    others : sequence of dict
        The other fits, the same keys.
    tolerance : float
        Largest cost above the best that still counts as equally good (one standard deviation of chi^2).
    min_distance : float
        Two profiles differ when their :func:`profile_distance`, relative to the better one's largest
        |strain|, exceeds this ...
    thickness_ratio : float
        ... or their thicknesses differ by more than this factor (the accuracy criteria of an answer).

    Returns
    -------
    list of dict
        The equally good distinct others, best first.
    """
    limit = best["cost"] + tolerance
    kept = [best]
    for e in sorted(others, key=lambda e: e["cost"]):
        if e["cost"] > limit:
            break
        if all(_differs(e, k, min_distance, thickness_ratio) for k in kept):
            kept.append(e)
    return kept[1:]


def _differs(e, k, min_distance, thickness_ratio) -> bool:
    t_e, t_k = e["thickness_nm"], k["thickness_nm"]
    if max(t_e, t_k) / max(min(t_e, t_k), 1e-12) > thickness_ratio:
        return True
    scale = max(float(np.max(np.abs(k["strain_percent"]))), 1e-12)
    d = profile_distance(k["depth_nm"], k["strain_percent"], e["depth_nm"], e["strain_percent"])
    return d / scale > min_distance
