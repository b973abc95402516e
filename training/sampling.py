"""Random training samples: profiles, instrument terms and scan limits drawn from a preset.

Pure functions of a :class:`numpy.random.Generator`; :mod:`xrd_strain_training.generate` turns them into
simulated curves. Depth index 0 is the surface; reduced depth ``z`` runs from 0 (surface) to 1
(interface with the substrate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xrd_strain_plugin.inference.labels import strain_max_percent
from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.bragg import strain_at_two_theta_deg
from xrd_strain_training.presets import Preset

__all__ = [
    "Draw",
    "draw_parameters",
    "shape_profiles",
    "scan_strain_limits",
    "paper_shape_profiles",
    "paper_weights",
    "paper_scan_limits",
    "paper_counts_exponents",
]

# Widths (reduced depth) of the two halves of the asymmetric Gaussian.
_SIGMA_LEFT = (0.03, 0.6)
_SIGMA_RIGHT = (0.03, 0.35)
# The peak sits this many right-widths above the interface, so the strain has died out there.
_N_SIGMA_INTERFACE = 3.0
# Plateau ("constant added") level, as a fraction of the peak.
_PLATEAU = (0.0, 0.6)

# The paper's published generator (Gen_XRD.py of Boulle & Debelle's repository), as described in
# issue 9: peak position from the interface, FWHMs and constant mixing as fractions of t.
_PAPER_PEAK_FROM_INTERFACE = (0.3, 1.0)
_PAPER_FWHM = (0.1, 1.0)
_PAPER_MIX_PROBABILITY = 0.25
_PAPER_DEEP_WEIGHT_MIN = 0.01  # redraw when the two deepest (normalised) weights are both <= this
_PAPER_THICKNESS_STEP_NM = 10.0
_PAPER_WINDOW_STRAIN = (0.002, 0.025)
_PAPER_WINDOW_ROUND_DEG = 0.01
_PAPER_LOG10_RATIO = (3.0, 6.0)  # accepted log10(scale / background), exclusive


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
    paper_recipe : numpy.ndarray of bool, optional
        True where the sample follows the paper's published recipe (its count rule differs:
        no dynamic-range rejection; scale and background redrawn until their ratio fits).
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
    paper_recipe: np.ndarray | None = None


def shape_profiles(
    rng: np.random.Generator, n: int, n_slices: int, shapes: tuple[str, ...] = ("asymmetric_gaussian",)
) -> np.ndarray:
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


def draw_parameters(
    rng: np.random.Generator, preset: Preset, n: int, *, two_theta_bragg_deg: float | None = None, per_profile: int = 1
) -> Draw:
    """Draw ``n`` samples of every random quantity of a preset.

    Our recipe: the strain shape is fitted by ``preset.n_weights`` B-spline weights (clipped at
    0), each then deviates by up to ``preset.weight_jitter`` (relative), and the weights are
    rescaled so the spline's largest strain equals the drawn ``e_max``. A share
    ``preset.paper_fraction`` of the samples follows the paper's published recipe instead
    (:func:`paper_shape_profiles`, :func:`paper_weights`, thickness on a 10 nm grid,
    :func:`paper_scan_limits`, :func:`paper_counts_exponents`); with ``paper_fraction = 0`` the
    random stream is exactly the one of our recipe alone.

    Parameters
    ----------
    rng : numpy.random.Generator
    preset : Preset
    n : int
    two_theta_bragg_deg : float, optional
        Substrate Bragg angle (2-theta, degrees); needed when the preset draws paper-recipe
        samples (their scan limits are rounded to 0.01 deg).
    per_profile : int
        Rows sharing one profile (strain weights, e_max, DW_min, t): rows ``k j .. k j + k - 1``
        share profile ``j``; resolution, scale, background and scan window are drawn per row.

    Returns
    -------
    Draw
        ``strain_max_percent`` is always the spline's largest strain (the label convention),
        which for paper-recipe samples is at most the drawn e_max (their largest weight).
    """
    k = int(per_profile)
    if k < 1:
        raise ValueError(f"per_profile must be >= 1, got {per_profile}")
    n_p = -(-n // k)  # profiles
    rep = (lambda a: a) if k == 1 else (lambda a: np.repeat(a, k, axis=0)[:n])
    shapes = shape_profiles(rng, n_p, preset.n_slices, preset.strain_shapes)
    # Non-negative weights keep the strain >= 0 (B-splines are non-negative): a least-squares fit
    # of a peak narrower than the knot spacing rings, which would put compressive lobes (down to
    # -10 % of e_max) into a preset meant to be tensile only.
    weights = np.maximum(profiles.fit_weights(shapes, preset.n_weights), 0.0)
    weights *= 1.0 + rng.uniform(-preset.weight_jitter, preset.weight_jitter, size=weights.shape)
    e_max = rng.uniform(*preset.strain_max_percent, size=n_p)
    weights *= (e_max / strain_max_percent(weights, preset.n_slices))[:, None]
    low, high = scan_strain_limits(rng, rep(e_max))
    draw = dict(
        weights_percent=weights,
        strain_max_percent=e_max,
        dw_min=rng.uniform(*preset.dw_min, size=n_p),
        thickness_nm=rng.uniform(*preset.thickness_nm, size=n_p),
        resolution_fwhm_deg=rng.uniform(*preset.resolution_fwhm_deg, size=n),
        log10_scale=rng.uniform(*preset.log10_scale, size=n),
        log10_background=rng.uniform(*preset.log10_background, size=n),
        strain_low=low,
        strain_high=high,
    )
    profile_keys = ("weights_percent", "strain_max_percent", "dw_min", "thickness_nm")
    if preset.paper_fraction <= 0:
        return Draw(**{key: rep(v) if key in profile_keys else v for key, v in draw.items()})
    if two_theta_bragg_deg is None:
        raise ValueError(
            f"preset {preset.name} draws paper-recipe samples: pass "
            f"two_theta_bragg_deg (their scan limits depend on it)"
        )
    paper_p = rng.random(n_p) < preset.paper_fraction
    paper = rep(paper_p)
    m = int(paper_p.sum())
    e_drawn = np.zeros(n_p)
    if m:
        w = paper_weights(rng, m, preset.n_weights, preset.n_slices, preset.weight_jitter)
        e_drawn[paper_p] = rng.uniform(*preset.strain_max_percent, size=m)
        w *= e_drawn[paper_p][:, None]
        t_lo, t_hi = preset.thickness_nm
        step = _PAPER_THICKNESS_STEP_NM
        t_grid = np.arange(np.ceil(t_lo / step), np.floor(t_hi / step) + 1) * step
        draw["weights_percent"][paper_p] = w
        draw["strain_max_percent"][paper_p] = strain_max_percent(w, preset.n_slices)
        draw["thickness_nm"][paper_p] = rng.choice(t_grid, size=m) if t_grid.size else rng.uniform(t_lo, t_hi, size=m)
    draw = {key: rep(v) if key in profile_keys else v for key, v in draw.items()}
    m_rows = int(paper.sum())
    if m_rows:
        lo_p, hi_p = paper_scan_limits(rng, rep(e_drawn)[paper], two_theta_bragg_deg)
        ls, lb = paper_counts_exponents(rng, m_rows, preset.log10_scale, preset.log10_background)
        draw["strain_low"][paper] = lo_p
        draw["strain_high"][paper] = hi_p
        draw["log10_scale"][paper] = ls
        draw["log10_background"][paper] = lb
    return Draw(**draw, paper_recipe=paper)


def paper_shape_profiles(rng: np.random.Generator, n: int, n_slices: int) -> np.ndarray:
    """The paper's published strain shapes (peak 1) at the slice midpoints, index 0 at the surface.

    An asymmetric Gaussian whose peak lies at a distance uniform in [0.3 t, t) from the
    interface, with deep-side and surface-side FWHMs each uniform in [t/10, t]; with
    probability 0.25 a constant of relative height ``f ~ U(0, 1)`` is mixed in on the deep side,
    the surface side or both (equal thirds): ``shape -> (1 - f) shape + f`` on that side.

    Returns
    -------
    numpy.ndarray, shape (n, n_slices)
    """
    z = profiles.slice_midpoints(n_slices)[np.newaxis, :]  # 0 surface, 1 interface
    peak = 1.0 - rng.uniform(*_PAPER_PEAK_FROM_INTERFACE, size=(n, 1))
    fwhm_deep = rng.uniform(*_PAPER_FWHM, size=(n, 1))
    fwhm_surface = rng.uniform(*_PAPER_FWHM, size=(n, 1))
    to_sigma = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    deep = np.exp(-0.5 * ((z - peak) / (fwhm_deep * to_sigma)) ** 2)
    surface = np.exp(-0.5 * ((z - peak) / (fwhm_surface * to_sigma)) ** 2)
    mixed = rng.random((n, 1)) < _PAPER_MIX_PROBABILITY
    side = rng.integers(0, 3, size=(n, 1))  # 0 deep, 1 surface, 2 both
    f = rng.uniform(0.0, 1.0, size=(n, 1))
    f_deep = np.where(mixed & (side != 1), f, 0.0)
    f_surface = np.where(mixed & (side != 0), f, 0.0)
    deep = (1 - f_deep) * deep + f_deep
    surface = (1 - f_surface) * surface + f_surface
    out = np.where(z >= peak, deep, surface)
    return out / out.max(axis=1, keepdims=True)


def paper_weights(rng: np.random.Generator, n: int, n_weights: int, n_slices: int, jitter: float = 0.1) -> np.ndarray:
    """Normalised strain weights of the paper's recipe (largest weight 1).

    Least-squares weights of :func:`paper_shape_profiles`, each jittered uniformly by
    ``+-jitter`` (relative), absolute values divided by the largest; drawn again while the two
    deepest weights are both <= 0.01.

    Returns
    -------
    numpy.ndarray, shape (n, n_weights)
    """
    out = np.empty((n, n_weights))
    todo = np.arange(n)
    for _ in range(1000):
        k = todo.size
        w = profiles.fit_weights(paper_shape_profiles(rng, k, n_slices), n_weights)
        w = np.abs(w * (1.0 + rng.uniform(-jitter, jitter, size=w.shape)))
        w /= w.max(axis=1, keepdims=True)
        bad = np.all(w[:, -2:] <= _PAPER_DEEP_WEIGHT_MIN, axis=1)
        out[todo[~bad]] = w[~bad]
        todo = todo[bad]
        if not todo.size:
            return out
    raise RuntimeError("paper_weights: the redraw rule rejected every draw")


def paper_scan_limits(rng: np.random.Generator, strain_max_percent, two_theta_bragg_deg: float):
    """The paper's scan window as strain limits.

    theta runs from ``theta_B - (e_max + eps1) tan(theta_B)`` to ``theta_B + eps2 tan(theta_B)``
    with ``eps1, eps2 ~ U(0.002, 0.025)``; both ends (in 2-theta) rounded to 0.01 deg.

    Returns
    -------
    strain_low, strain_high : numpy.ndarray, shape (n,)
        Plain fractions of the rounded ends (``strain = sin(theta_B) / sin(theta) - 1``).
    """
    e_max = np.asarray(strain_max_percent, dtype=float) / 100.0
    th_b = np.radians(two_theta_bragg_deg / 2.0)
    eps1 = rng.uniform(*_PAPER_WINDOW_STRAIN, size=e_max.shape)
    eps2 = rng.uniform(*_PAPER_WINDOW_STRAIN, size=e_max.shape)
    r = _PAPER_WINDOW_ROUND_DEG
    lo_deg = np.round(2 * np.degrees(th_b - (e_max + eps1) * np.tan(th_b)) / r) * r
    hi_deg = np.round(2 * np.degrees(th_b + eps2 * np.tan(th_b)) / r) * r
    return strain_at_two_theta_deg(hi_deg, th_b), strain_at_two_theta_deg(lo_deg, th_b)


def paper_counts_exponents(rng: np.random.Generator, n: int, log10_scale, log10_background):
    """The paper's count levels: scale and background exponents redrawn (jointly) until
    ``3 < log10(scale / background) < 6``.

    Returns
    -------
    log10_scale, log10_background : numpy.ndarray, shape (n,)
    """
    scale, background = np.empty(n), np.empty(n)
    todo = np.arange(n)
    while todo.size:
        s = rng.uniform(*log10_scale, size=todo.size)
        b = rng.uniform(*log10_background, size=todo.size)
        ok = (s - b > _PAPER_LOG10_RATIO[0]) & (s - b < _PAPER_LOG10_RATIO[1])
        scale[todo[ok]], background[todo[ok]] = s[ok], b[ok]
        todo = todo[~ok]
    return scale, background


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
