"""Random training samples: profiles, instrument terms and scan limits drawn from a preset.

Pure functions of a :class:`numpy.random.Generator`; :mod:`training.generate` turns them into
simulated curves. Depth index 0 is the surface; reduced depth ``z`` runs from 0 (surface) to 1
(interface with the substrate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.presets import Preset
from xrd_strain_plugin.inference.labels import strain_max_percent
from xrd_strain_plugin.physics import profiles

__all__ = ["Draw", "draw_parameters", "shape_profiles", "scan_strain_limits"]

# Widths (reduced depth) of the two halves of the asymmetric Gaussian.
_SIGMA_LEFT = (0.03, 0.6)
_SIGMA_RIGHT = (0.03, 0.35)
# The peak sits this many right-widths above the interface, so the strain has died out there.
_N_SIGMA_INTERFACE = 3.0
# Plateau ("constant added") level, as a fraction of the peak.
_PLATEAU = (0.0, 0.6)


@dataclass(frozen=True, kw_only=True)
class Draw:
    """One batch of random sample parameters (all arrays of shape (n,) unless noted).

    Attributes
    ----------
    weights_percent : numpy.ndarray, shape (n, n_weights)
        Strain B-spline weights, percent; their spline peaks at ``strain_max_percent``.
    strain_max_percent, dw_min, thickness_nm, resolution_fwhm_deg : numpy.ndarray
    log10_scale, log10_background : numpy.ndarray
        Exponents of the scale (counts at reflectivity 1) and constant background (counts).
    strain_low, strain_high : numpy.ndarray
        Scan limits on the strain axis (plain fraction): high-angle (substrate) side and
        low-angle (layer) side.
    """

    weights_percent: np.ndarray
    strain_max_percent: np.ndarray
    dw_min: np.ndarray
    thickness_nm: np.ndarray
    resolution_fwhm_deg: np.ndarray
    log10_scale: np.ndarray
    log10_background: np.ndarray
    strain_low: np.ndarray
    strain_high: np.ndarray


def shape_profiles(rng: np.random.Generator, n: int, n_slices: int,
                   shapes: tuple[str, ...] = ("asymmetric_gaussian",)) -> np.ndarray:
    """Random strain shapes (peak 1) sampled at the slice midpoints.

    The paper's shape is an asymmetric Gaussian (left and right widths drawn independently,
    peak placed so the strain has died out at the interface) with a constant added on the
    left, right or both sides with equal probability. ``"bimodal"`` adds a second Gaussian;
    ``"flat"`` is a plateau with smooth edges.

    Returns
    -------
    numpy.ndarray, shape (n, n_slices)
        Shapes with maximum 1, index 0 at the surface.
    """
    z = profiles.slice_midpoints(n_slices)[np.newaxis, :]
    kind = rng.integers(0, len(shapes), size=n)
    sigma_l = rng.uniform(*_SIGMA_LEFT, size=(n, 1))
    sigma_r = rng.uniform(*_SIGMA_RIGHT, size=(n, 1))
    peak = 1.0 - _N_SIGMA_INTERFACE * sigma_r
    side = rng.integers(0, 3, size=(n, 1))  # 0 left, 1 right, 2 both
    c_left = np.where(side != 1, rng.uniform(*_PLATEAU, size=(n, 1)), 0.0)
    c_right = np.where(side != 0, rng.uniform(*_PLATEAU, size=(n, 1)), 0.0)
    left = c_left + (1 - c_left) * np.exp(-0.5 * ((z - peak) / sigma_l) ** 2)
    right = c_right + (1 - c_right) * np.exp(-0.5 * ((z - peak) / sigma_r) ** 2)
    out = np.where(z < peak, left, right)
    names = np.asarray(shapes)[kind]
    if np.any(names == "bimodal"):
        centre = rng.uniform(0.05, 0.7, size=(n, 1))
        width = rng.uniform(0.03, 0.2, size=(n, 1))
        height = rng.uniform(0.3, 1.0, size=(n, 1))
        second = height * np.exp(-0.5 * ((z - centre) / width) ** 2)
        out = np.where((names == "bimodal")[:, None], out + second, out)
    if np.any(names == "flat"):
        edge = rng.uniform(0.5, 0.95, size=(n, 1))
        soft = rng.uniform(0.01, 0.08, size=(n, 1))
        flat = 1.0 / (1.0 + np.exp((z - edge) / soft))
        out = np.where((names == "flat")[:, None], flat, out)
    return out / out.max(axis=1, keepdims=True)


def draw_parameters(rng: np.random.Generator, preset: Preset, n: int) -> Draw:
    """Draw ``n`` samples of every random quantity of a preset.

    The strain shape is fitted by ``preset.n_weights`` B-spline weights (clipped at 0), each
    then deviates by up to ``preset.weight_jitter`` (relative), and the weights are rescaled so
    the spline's largest strain equals the drawn ``e_max`` (the paper's recipe).

    Parameters
    ----------
    rng : numpy.random.Generator
    preset : Preset
    n : int

    Returns
    -------
    Draw
    """
    shapes = shape_profiles(rng, n, preset.n_slices, preset.strain_shapes)
    # Non-negative weights keep the strain >= 0 (B-splines are non-negative): a least-squares fit
    # of a peak narrower than the knot spacing rings, which would put compressive lobes (down to
    # -10 % of e_max) into a preset meant to be tensile only.
    weights = np.maximum(profiles.fit_weights(shapes, preset.n_weights), 0.0)
    weights *= 1.0 + rng.uniform(-preset.weight_jitter, preset.weight_jitter, size=weights.shape)
    e_max = rng.uniform(*preset.strain_max_percent, size=n)
    weights *= (e_max / strain_max_percent(weights, preset.n_slices))[:, None]
    low, high = scan_strain_limits(rng, e_max)
    return Draw(
        weights_percent=weights,
        strain_max_percent=e_max,
        dw_min=rng.uniform(*preset.dw_min, size=n),
        thickness_nm=rng.uniform(*preset.thickness_nm, size=n),
        resolution_fwhm_deg=rng.uniform(*preset.resolution_fwhm_deg, size=n),
        log10_scale=rng.uniform(*preset.log10_scale, size=n),
        log10_background=rng.uniform(*preset.log10_background, size=n),
        strain_low=low,
        strain_high=high,
    )


def scan_strain_limits(rng: np.random.Generator, strain_max_percent) -> tuple[np.ndarray, np.ndarray]:
    """Random scan limits wide enough for the substrate peak and the whole layer signal.

    The low end (substrate side) lies 0.3-0.8 % strain beyond the substrate peak; the high end
    0.3-0.8 % beyond 1.1 e_max (the highest-strain region diffracts over a band whose width
    grows as that region thins).

    Returns
    -------
    strain_low, strain_high : numpy.ndarray, shape (n,)
        Plain fractions.
    """
    e_max = np.asarray(strain_max_percent, dtype=float) / 100.0
    low = -rng.uniform(0.003, 0.008, size=e_max.shape)
    high = 1.1 * e_max + rng.uniform(0.003, 0.008, size=e_max.shape)
    return low, high
