"""Diffraction geometry in one place: the Bragg law, Q <-> 2theta, a strained layer's peak, fringes.

Every other module (materials, the preprocessing in :mod:`.qspace`, the instrument grid, the
refinement model, the inversion's transfer between crystals, the command line) calls these
instead of writing the formulas again.

- Bragg law: ``lambda = 2 d sin(theta_B)``; the reciprocal-lattice vector is ``Q_B = 2 pi / d``.
- Scattering vector: ``Q = 4 pi sin(theta) / lambda``.
- A layer whose lattice is strained by ``e`` along the surface normal has ``d = d_0 (1 + e)``, so it
  diffracts at ``sin(theta) = sin(theta_B) / (1 + e)`` (``Q = Q_B / (1 + e)``).
- Thickness fringes of a layer ``t`` thick are ``2 pi / t`` apart in Q, i.e.
  ``lambda / (t cos theta_B)`` radians of 2theta near the Bragg angle.

Units are in the names; a bare angle is in radians; strain is a plain fraction. Functions accept
floats or numpy arrays and broadcast.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "bragg_angle",
    "fringe_period_q_inv_angstrom",
    "fringe_period_two_theta_deg",
    "layer_peak_two_theta_deg",
    "q_bragg_inv_angstrom",
    "q_to_two_theta_deg",
    "strain_at_two_theta_deg",
    "two_theta_deg_to_q",
]


def bragg_angle(d_spacing_angstrom, wavelength_angstrom):
    """Kinematic Bragg angle ``theta_B = asin(lambda / 2d)``, radians.

    Parameters
    ----------
    d_spacing_angstrom : float or array_like
        Interplanar spacing, angstrom (> 0).
    wavelength_angstrom : float or array_like
        X-ray wavelength, angstrom (> 0).

    Returns
    -------
    float or numpy.ndarray
        A Python float for scalar input.

    Raises
    ------
    ValueError
        If ``lambda >= 2 d`` (no Bragg angle) or an input is not positive and finite.

    Examples
    --------
    >>> round(2 * math.degrees(bragg_angle(1.35775, 1.5406)), 3)   # Si 004 at Cu K-alpha1
    69.129
    """
    if isinstance(d_spacing_angstrom, float) and isinstance(wavelength_angstrom, float):
        # the scalar case, called per simulation through Reflection.theta_bragg: no array overhead
        if 0 < wavelength_angstrom < 2.0 * d_spacing_angstrom < math.inf:
            return math.asin(wavelength_angstrom / (2.0 * d_spacing_angstrom))
    d = _positive(d_spacing_angstrom, "d_spacing_angstrom")
    lam = _positive(wavelength_angstrom, "wavelength_angstrom")
    ratio = lam / (2.0 * d)
    if np.any(ratio >= 1.0):
        raise ValueError(
            f"wavelength_angstrom={wavelength_angstrom} has no Bragg angle for d = "
            f"{d_spacing_angstrom} A (needs lambda < 2d)"
        )
    theta = np.arcsin(ratio)
    return float(theta) if theta.ndim == 0 else theta


def q_bragg_inv_angstrom(d_spacing_angstrom):
    """Length of the reciprocal-lattice vector, ``Q_B = 2 pi / d``, inverse angstrom."""
    if isinstance(d_spacing_angstrom, float) and 0 < d_spacing_angstrom < math.inf:
        return 2.0 * math.pi / d_spacing_angstrom
    d = _positive(d_spacing_angstrom, "d_spacing_angstrom")
    q = 2.0 * np.pi / d
    return float(q) if q.ndim == 0 else q


def two_theta_deg_to_q(two_theta_deg, wavelength_angstrom):
    """Scattering vector magnitude ``Q = 4 pi sin(theta) / lambda``.

    Parameters
    ----------
    two_theta_deg : array_like
        Scattering angle 2theta in degrees.
    wavelength_angstrom : float or array_like
        X-ray wavelength in angstroms (> 0).

    Returns
    -------
    numpy.ndarray
        ``q`` in inverse angstroms, broadcast shape of the inputs.
    """
    wavelength_angstrom = _positive(wavelength_angstrom, "wavelength_angstrom")
    theta = np.deg2rad(np.asarray(two_theta_deg, dtype=float)) / 2.0
    return 4.0 * np.pi * np.sin(theta) / wavelength_angstrom


def q_to_two_theta_deg(q_inv_angstrom, wavelength_angstrom):
    """Scattering angle 2theta (degrees) of a scattering vector ``q`` (1/angstrom).

    Raises
    ------
    ValueError
        If ``q lambda / (4 pi)`` lies outside [0, 1] (no such angle).
    """
    wavelength_angstrom = _positive(wavelength_angstrom, "wavelength_angstrom")
    sin_theta = np.asarray(q_inv_angstrom, dtype=float) * wavelength_angstrom / (4.0 * np.pi)
    if np.any(~np.isfinite(sin_theta) | (sin_theta < 0) | (sin_theta > 1)):
        raise ValueError("q_inv_angstrom is unreachable at this wavelength_angstrom (need 0 <= q lambda/4pi <= 1)")
    return 2.0 * np.rad2deg(np.arcsin(sin_theta))


def layer_peak_two_theta_deg(strain, theta_bragg):
    """2theta (degrees) at which a layer strained by ``strain`` diffracts: ``sin(theta) = sin(theta_B) / (1 + e)``.

    Parameters
    ----------
    strain : float or array_like
        Out-of-plane strain, plain fraction (> -1).
    theta_bragg : float
        Bragg angle of the unstrained crystal, radians.

    Returns
    -------
    numpy.ndarray
        NaN where the strained lattice has no Bragg angle (``sin(theta) >= 1``).
    """
    sin_theta = np.sin(theta_bragg) / (1.0 + np.asarray(strain, dtype=float))
    ok = (sin_theta > 0) & (sin_theta < 1)
    return np.where(ok, 2.0 * np.degrees(np.arcsin(np.where(ok, sin_theta, 0.0))), np.nan)


def strain_at_two_theta_deg(two_theta_deg, theta_bragg):
    """The strain whose layer peak lies at ``two_theta_deg``: ``sin(theta_B) / sin(theta) - 1``.

    The inverse of :func:`layer_peak_two_theta_deg`; decreases as 2theta increases.
    """
    return np.sin(theta_bragg) / np.sin(np.radians(np.asarray(two_theta_deg, dtype=float) / 2.0)) - 1.0


def fringe_period_q_inv_angstrom(thickness_nm):
    """Period of the thickness fringes of a layer, ``2 pi / t``, inverse angstrom (``t`` in nm)."""
    t = _positive(thickness_nm, "thickness_nm")
    return 2.0 * np.pi / (10.0 * t)


def fringe_period_two_theta_deg(thickness_nm, wavelength_angstrom, theta_bragg):
    """Period of the thickness fringes in degrees of 2theta near the Bragg angle.

    ``d(2 theta) = lambda dQ / (2 pi cos theta_B)`` with ``dQ = 2 pi / t``, so the period is
    ``lambda / (t cos theta_B)`` radians.

    Parameters
    ----------
    thickness_nm : float or array_like
        Layer thickness, nm (> 0).
    wavelength_angstrom : float
    theta_bragg : float
        Radians.
    """
    t = _positive(thickness_nm, "thickness_nm")
    lam = _positive(wavelength_angstrom, "wavelength_angstrom")
    period = np.degrees(lam / (10.0 * t * np.cos(theta_bragg)))
    return float(period) if np.ndim(period) == 0 else period


def _positive(value, name):
    array = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(array) | (array <= 0)):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return array
