"""Instrument and counting: resolution, scale, background, noise; the forward model of a scan.

The intrinsic reflectivity has a feature narrower than usual scan steps: the substrate's Bragg peak
(about 0.0045 deg of 2-theta for YSZ 400 at Cu K-alpha1), and a thick layer's fringes come close.
Convolving a reflectivity *sampled on the scan grid* overweights the substrate peak (1.76x for a
0.005 deg step) and lowers the layer signal relative to it. :func:`simulate_scan` therefore computes
the reflectivity on its own uniform grid, fine enough for the resolution function and the fringes,
replaces the cells around the substrate peak by their average over a sub-grid that resolves the
Darwin curve (so the peak's integral is right), convolves there, and only then samples at the scan
angles.

All angles here are in degrees of 2-theta; ``resolution_fwhm_deg`` is the full width at half
maximum of the resolution function in 2-theta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bragg import fringe_period_two_theta_deg, layer_peak_two_theta_deg
from .dynamical import DEFAULT_MAX_COUPLING, _namespace, reflectivity

__all__ = [
    "simulate_scan",
    "apply_counts",
    "background_profile",
    "convolve_resolution",
    "resolution_kernel",
    "fine_grid_step_deg",
]

_KERNEL_HALF_WIDTH = {"gaussian": 4.0, "pseudo-voigt": 12.0}  # in FWHM units
_STEP_PER_FWHM = 8  # grid points per resolution FWHM
_STEP_PER_FRINGE = 4  # grid points per thickness-fringe period
_SUB_PER_DARWIN = 16  # sub-grid points per Darwin width in the substrate window
_WINDOW_DARWIN = 5  # half width of the substrate window, in Darwin widths


def resolution_kernel(offset_deg, fwhm_deg, *, shape: str = "gaussian", eta: float = 0.5):
    """Resolution function (unnormalised) at ``offset_deg`` from its centre.

    Parameters
    ----------
    offset_deg : array
        Offsets in degrees of 2-theta.
    fwhm_deg : float or array broadcastable to ``offset_deg``
        Full width at half maximum in degrees of 2-theta.
    shape : {"gaussian", "pseudo-voigt"}
        Pseudo-Voigt is ``eta * Lorentzian + (1 - eta) * Gaussian`` with the same FWHM.
    eta : float or array broadcastable to ``offset_deg``
        Lorentzian fraction of the pseudo-Voigt, in [0, 1].
    """
    xp = _namespace(offset_deg)
    x = offset_deg / fwhm_deg
    gauss = xp.exp(-4 * math.log(2) * x * x)
    if shape == "gaussian":
        return gauss
    if shape == "pseudo-voigt":
        if not np.all((np.asarray(eta) >= 0) & (np.asarray(eta) <= 1)):
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        # both normalised to unit area before mixing
        g = gauss * (2 * math.sqrt(math.log(2) / math.pi))
        lor = (2 / math.pi) / (1 + 4 * x * x)
        return eta * lor + (1 - eta) * g
    raise ValueError(f"resolution shape must be 'gaussian' or 'pseudo-voigt', got {shape!r}")


def fine_grid_step_deg(resolution_fwhm_deg, thickness_nm, reflection):
    """Largest 2-theta step that resolves the resolution function and the thickness fringes.

    The fringe period of a layer of thickness t is 2 pi / t in Q, i.e. lambda / (t cos theta_B)
    radians of 2-theta (:func:`~.bragg.fringe_period_two_theta_deg`).
    """
    fringe_deg = fringe_period_two_theta_deg(thickness_nm, reflection.wavelength_angstrom, reflection.theta_bragg)
    return min(resolution_fwhm_deg / _STEP_PER_FWHM, fringe_deg / _STEP_PER_FRINGE)


def _to_host(x):
    """A numpy copy of a (small) array from any array namespace or device."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    if hasattr(x, "cpu"):  # torch
        return x.detach().cpu().numpy()
    try:
        return np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError, AttributeError):
        return np.asarray(x)


def _check_scan(two_theta_deg):
    xp = _namespace(two_theta_deg)
    if not bool(xp.all(xp.isfinite(two_theta_deg))):
        raise ValueError("two_theta_deg contains NaN or inf")
    if two_theta_deg.shape[-1] < 2:
        raise ValueError("two_theta_deg needs at least 2 angles")
    d = two_theta_deg[..., 1:] - two_theta_deg[..., :-1]
    if bool(xp.any(d == 0)):
        raise ValueError("two_theta_deg contains duplicate angles")
    if bool(xp.any(d < 0)):
        raise ValueError("two_theta_deg must be sorted in increasing order")


def simulate_scan(
    two_theta_deg,
    strain,
    debye_waller,
    thickness_nm,
    reflection,
    *,
    resolution_fwhm_deg,
    shape: str = "gaussian",
    eta=0.5,
    asymmetry: float = 0.0,
    polarization: str = "sigma",
    bragg: str = "exact",
    max_coupling: float = DEFAULT_MAX_COUPLING,
    engine: str = "auto",
    threads: int | None = 1,
    check_layer_in_scan: bool = True,
    fine_step_deg: float | None = None,
    pad_deg: float | None = None,
):
    """Reflectivity convolved with the resolution, sampled at the scan angles (noise-free).

    Parameters
    ----------
    two_theta_deg : array, shape (n_points,) or (n_batch, n_points)
        Scan angles in degrees of 2-theta, increasing. A symmetric theta/2theta scan is assumed
        (theta = two_theta / 2); ``asymmetry`` tilts the surface.
    strain, debye_waller : array, shape (n_slices,) or (n_batch, n_slices)
        Lamella strain (fraction) and static Debye-Waller factor, index 0 at the surface.
    thickness_nm : float or array, shape (n_batch,)
        Layer thickness in nm.
    reflection : Reflection
        Material constants.
    resolution_fwhm_deg : float or array, shape (n_batch,)
        FWHM of the resolution function, degrees of 2-theta (> 0).
    shape : see :func:`resolution_kernel`.
    eta : float or array, shape (n_batch,)
        Lorentzian fraction of the pseudo-Voigt, per curve (see :func:`resolution_kernel`). The
        Lorentzian tails are convolved over the whole computed range (they matter on a log scale),
        not cut at the padding.
    asymmetry, polarization, bragg, max_coupling, engine, threads : see :func:`~.dynamical.reflectivity`.
    check_layer_in_scan : bool
        Refuse a strain whose layer peak falls outside the scan.
    fine_step_deg : float, optional
        Step of the internal fine grid, degrees of 2-theta, for every curve. By default each curve's
        step follows its resolution and thickness (:func:`fine_grid_step_deg`), so the curve jumps
        slightly where the number of sub-steps changes; a refinement fixes the step so that the
        model is a smooth function of its parameters.
    pad_deg : float, optional
        Range computed beyond each end of the scan, degrees of 2-theta (default: 4 FWHM for a
        Gaussian, 12 for a pseudo-Voigt). Fixing it (with ``fine_step_deg``) makes a curve's
        value independent of the other curves of the batch and of its own resolution's grid
        padding, which a finite-difference Jacobian needs.

    Returns
    -------
    array, shape (n_batch, n_points)
        Convolved reflectivity at the scan angles.
    """
    xp = _namespace(two_theta_deg, strain)
    tt, strain, fwhm, t_nm, eta = _scan_inputs(
        xp,
        two_theta_deg,
        strain,
        resolution_fwhm_deg,
        thickness_nm,
        eta,
        shape=shape,
        fine_step_deg=fine_step_deg,
        pad_deg=pad_deg,
    )
    device = None if xp is np else getattr(tt, "device", None)
    dev = lambda a: a if xp is np else xp.asarray(a, device=device)  # host -> the inputs' device
    rows = _to_host(tt)
    if check_layer_in_scan:
        _check_layer_peaks_in_scan(_to_host(strain), reflection, rows.min(axis=1), rows.max(axis=1))
    grid = _fine_grid(rows, fwhm, t_nm, reflection, shape=shape, fine_step_deg=fine_step_deg, pad_deg=pad_deg)
    window = _substrate_window(grid, reflection)
    kernel_options = dict(asymmetry=asymmetry, polarization=polarization, bragg=bragg, max_coupling=max_coupling)
    refl = _intrinsic_on_grid(
        grid, window, strain, debye_waller, t_nm, reflection, dev=dev, engine=engine, threads=threads, **kernel_options
    )
    r_grid = _average_substrate_window(refl, grid, window, xp=xp, dev=dev)
    conv = convolve_resolution(
        r_grid,
        step_deg=grid.step_deg,
        resolution_fwhm_deg=fwhm,
        half_width_steps=_kernel_half_width_steps(grid, shape),
        shape=shape,
        eta=eta,
    )
    return xp.maximum(_sample_at_scan_angles(conv, tt, grid, xp=xp, dev=dev), 0.0)


def _host(a):
    return a


def _intrinsic_on_grid(
    grid: _FineGrid, window: _SubstrateWindow, strain, debye_waller, t_nm, reflection, *, dev=_host, **options
):
    """The intrinsic reflectivity (:func:`~.dynamical.reflectivity`, no resolution) at the grid's angles,
    followed (when ``window.used``) by the substrate window's sub-grid: shape (n_batch, n_fine [+ n_cells n_sub])."""
    theta = np.concatenate([grid.two_theta_deg, window.two_theta_deg], axis=1) if window.used else grid.two_theta_deg
    return reflectivity(dev(np.radians(theta / 2)), strain, debye_waller, dev(np.asarray(t_nm)), reflection, **options)


def _average_substrate_window(refl, grid: _FineGrid, window: _SubstrateWindow, *, xp=np, dev=_host):
    """The grid's reflectivity, with the cells of the substrate window replaced by their sub-grid average.

    ``refl`` holds the ``grid.n_fine`` grid points, then (when ``window.used``) the window's
    ``n_cells * n_sub`` sub-grid points: each cell's value becomes the mean over its cell, the
    Darwin curve's integrated reflectivity, which a point sample of a curve narrower than the
    step would miss or overstate. Returns shape (n_batch, n_fine).
    """
    r_grid = refl[:, : grid.n_fine]
    if not window.used:
        return r_grid
    n_batch = refl.shape[0]
    avg = xp.mean(xp.reshape(refl[:, grid.n_fine :], (n_batch, window.n_cells, window.n_sub)), axis=2)
    rel = np.arange(grid.n_fine)[None, :] - window.first_cell[:, None]
    inside = dev((rel >= 0) & (rel < window.n_cells))
    gathered = xp.take_along_axis(avg, dev(np.clip(rel, 0, window.n_cells - 1)), axis=1)
    return xp.where(inside, gathered, r_grid)


def _kernel_half_width_steps(grid: _FineGrid, shape: str) -> int:
    """Kernel half width in grid steps: the padding of the widest curve (Gaussian), the whole grid
    (pseudo-Voigt: a cut of the Lorentzian tails at 12 FWHM drops ~3 % of their weight and shows on
    a log scale)."""
    return int(grid.n_pad.max()) if shape == "gaussian" else max(int(grid.n_pad.max()), grid.n_fine)


def _sample_at_scan_angles(conv, tt, grid: _FineGrid, *, xp=np, dev=_host):
    """Values of the grid curves ``conv`` (n_batch, n_fine) at the scan angles ``tt`` (n_batch, n_points).

    A uniform scan's angles are grid points (:func:`_fine_grid`): taken exactly; otherwise linear
    interpolation between the two neighbouring grid points.
    """
    pos = (tt - dev(grid.lo_deg[:, None])) / dev(grid.step_deg[:, None])
    i_lo = xp.clip(xp.astype(xp.floor(pos + 1e-6), xp.int64), 0, grid.n_fine - 2)
    frac = xp.where(dev(grid.uniform[:, None]), 0.0 * pos, pos - xp.astype(i_lo, xp.float64))
    left = xp.take_along_axis(conv, i_lo, axis=1)
    right = xp.take_along_axis(conv, i_lo + 1, axis=1)
    return left + frac * (right - left)


def convolve_resolution(
    reflectivity_grid, *, step_deg, resolution_fwhm_deg, half_width_steps: int, shape: str = "gaussian", eta=0.5
):
    """The instrument's resolution convolution on a uniform grid (FFT), renormalised at the edges.

    Each curve is convolved with its own :func:`resolution_kernel`, normalised to unit sum over
    ``2 half_width_steps + 1`` grid steps; near the ends of the grid the result is divided by the
    kernel weight that fell inside, so a constant stays that constant (no darkening at the edges).

    Parameters
    ----------
    reflectivity_grid : array, shape (n_batch, n_grid)
        Values on a uniform grid per curve (any array namespace; the result stays in it).
    step_deg : array_like, shape (n_batch,)
        Grid step of each curve, degrees of 2-theta.
    resolution_fwhm_deg : array_like, shape (n_batch,)
        FWHM of each curve's resolution, degrees of 2-theta.
    half_width_steps : int
        Kernel half width in grid steps.
    shape, eta : see :func:`resolution_kernel` (``eta`` per curve, shape (n_batch,)).

    Returns
    -------
    array, shape (n_batch, n_grid)
    """
    xp = _namespace(reflectivity_grid)
    device = None if xp is np else getattr(reflectivity_grid, "device", None)
    dev = lambda a: a if xp is np else xp.asarray(a, device=device)
    n_batch, n_grid = reflectivity_grid.shape
    step = np.broadcast_to(np.asarray(step_deg, dtype=float).reshape(-1), (n_batch,))
    fwhm = np.broadcast_to(np.asarray(resolution_fwhm_deg, dtype=float).reshape(-1), (n_batch,))
    eta = np.broadcast_to(np.asarray(eta, dtype=float).reshape(-1), (n_batch,))
    n_k = int(half_width_steps)
    k_off = np.arange(-n_k, n_k + 1)[None, :] * step[:, None]
    kernel = resolution_kernel(k_off, fwhm[:, None], shape=shape, eta=eta[:, None])
    kernel = dev(kernel / kernel.sum(axis=1, keepdims=True))
    n_fft = 1 << int(math.ceil(math.log2(n_grid + 2 * n_k + 1)))
    fk = xp.fft.rfft(kernel, n=n_fft, axis=1)
    conv = xp.fft.irfft(xp.fft.rfft(reflectivity_grid, n=n_fft, axis=1) * fk, n=n_fft, axis=1)[:, n_k : n_k + n_grid]
    ones = xp.fft.irfft(xp.fft.rfft(xp.ones_like(reflectivity_grid), n=n_fft, axis=1) * fk, n=n_fft, axis=1)[
        :, n_k : n_k + n_grid
    ]
    return conv / ones


def _scan_inputs(xp, two_theta_deg, strain, resolution_fwhm_deg, thickness_nm, eta, *, shape, fine_step_deg, pad_deg):
    """Checked, batch-first inputs of :func:`simulate_scan`: (tt, strain, fwhm, t_nm, eta)."""
    tt = xp.asarray(two_theta_deg, dtype=xp.float64)
    tt = tt[None, :] if tt.ndim == 1 else tt
    strain = xp.asarray(strain, dtype=xp.float64)
    strain = strain[None, :] if strain.ndim == 1 else strain
    _check_scan(tt)
    n_batch = max(tt.shape[0], strain.shape[0], np.size(resolution_fwhm_deg), np.size(thickness_nm), np.size(eta))
    tt = xp.broadcast_to(tt, (n_batch, tt.shape[1]))
    fwhm = np.broadcast_to(np.asarray(resolution_fwhm_deg, dtype=float).reshape(-1), (n_batch,))
    t_nm = np.broadcast_to(np.asarray(thickness_nm, dtype=float).reshape(-1), (n_batch,))
    if not np.all(np.isfinite(fwhm)) or np.any(fwhm <= 0):
        raise ValueError("resolution_fwhm_deg must be positive and finite")
    if not np.all(np.isfinite(t_nm)) or np.any(t_nm <= 0):
        raise ValueError("thickness_nm must be positive and finite")
    if shape not in _KERNEL_HALF_WIDTH:
        raise ValueError(f"resolution shape must be 'gaussian' or 'pseudo-voigt', got {shape!r}")
    eta = np.broadcast_to(np.asarray(eta, dtype=float).reshape(-1), (n_batch,))
    if shape == "pseudo-voigt" and (not np.all(np.isfinite(eta)) or np.any((eta < 0) | (eta > 1))):
        raise ValueError("eta must lie in [0, 1]")
    if fine_step_deg is not None and not (math.isfinite(fine_step_deg) and fine_step_deg > 0):
        raise ValueError(f"fine_step_deg must be positive and finite, got {fine_step_deg!r}")
    if pad_deg is not None and not (math.isfinite(pad_deg) and pad_deg >= 0):
        raise ValueError(f"pad_deg must be non-negative and finite, got {pad_deg!r}")
    return tt, strain, fwhm, t_nm, eta


def _check_layer_peaks_in_scan(strain, reflection, lo_scan, hi_scan) -> None:
    """Refuse a most- or least-strained lamella whose peak (:mod:`.bragg`) falls outside its scan."""
    strain = np.broadcast_to(strain, (lo_scan.size, strain.shape[-1]))
    for e_lim in (strain.max(axis=1), strain.min(axis=1)):
        peak = layer_peak_two_theta_deg(e_lim, reflection.theta_bragg)  # NaN: no Bragg angle
        bad = ~np.isfinite(peak) | (peak < lo_scan) | (peak > hi_scan)
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(
                f"strain {100 * e_lim[i]:.3g} % puts the layer peak at 2theta = {peak[i]:.3f} deg, outside "
                f"the scan [{lo_scan[i]:.3f}, {hi_scan[i]:.3f}] deg"
            )


@dataclass(frozen=True, kw_only=True, eq=False)
class _FineGrid:
    """Per-curve uniform grid of a batch, a common number of points ``n_fine``."""

    lo_deg: np.ndarray  # (n_batch,) first grid angle
    step_deg: np.ndarray  # (n_batch,)
    n_pad: np.ndarray  # (n_batch,) grid points before the scan
    n_fine: int
    uniform: np.ndarray  # (n_batch,) the scan angles are grid points
    two_theta_deg: np.ndarray  # (n_batch, n_fine)


def _fine_grid(rows, fwhm, t_nm, reflection, *, shape, fine_step_deg, pad_deg) -> _FineGrid:
    """For a uniform scan the step divides the scan step and the grid passes through every scan angle
    (no interpolation error at the end); the padding holds the resolution's reach beyond the scan."""
    n_batch = rows.shape[0]
    lo_scan, hi_scan = rows.min(axis=1), rows.max(axis=1)
    half = _KERNEL_HALF_WIDTH[shape] * fwhm if pad_deg is None else np.full(n_batch, float(pad_deg))
    scan_step = np.min(np.diff(rows, axis=1), axis=1)
    uniform = np.all(np.abs(np.diff(rows, axis=1) - scan_step[:, None]) <= 1e-6 * scan_step[:, None], axis=1)
    need = np.array([fine_grid_step_deg(f, t, reflection) for f, t in zip(fwhm, t_nm)])
    sub_steps = np.maximum(1, np.ceil(scan_step / need - 1e-9))
    step = np.where(uniform, scan_step / sub_steps, np.minimum(need, scan_step))
    if fine_step_deg is not None:
        step = np.full(n_batch, float(fine_step_deg))
        uniform = uniform & (np.abs(scan_step / step - np.round(scan_step / step)) <= 1e-6 * scan_step / step)
    n_pad = np.ceil(half / step).astype(int)
    lo = lo_scan - n_pad * step
    n_fine = int(np.max(np.round((hi_scan - lo) / step).astype(int) + n_pad)) + 1
    return _FineGrid(
        lo_deg=lo,
        step_deg=step,
        n_pad=n_pad,
        n_fine=n_fine,
        uniform=uniform,
        two_theta_deg=lo[:, None] + step[:, None] * np.arange(n_fine)[None, :],
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class _SubstrateWindow:
    """Grid cells around the substrate peak, each sampled ``n_sub`` times to resolve the Darwin curve."""

    first_cell: np.ndarray  # (n_batch,) index of the window's first grid cell
    n_cells: int
    n_sub: int
    two_theta_deg: np.ndarray  # (n_batch, n_cells * n_sub)

    @property
    def used(self) -> bool:
        return self.n_sub > 1


def _substrate_window(grid: _FineGrid, reflection) -> _SubstrateWindow:
    """The substrate's Darwin curve is narrower than the grid step: its cells are averaged over a sub-grid."""
    step, lo, n_fine = grid.step_deg, grid.lo_deg, grid.n_fine
    darwin_deg = 2 * math.degrees(reflection.darwin_width_symmetric())
    centre = reflection.two_theta_bragg_deg + 2 * math.degrees(reflection.refraction_shift_symmetric())
    n_sub = max(1, math.ceil(float(np.max(step)) * _SUB_PER_DARWIN / darwin_deg))
    n_win = min(int(math.ceil(2 * _WINDOW_DARWIN * darwin_deg / float(np.min(step)))) + 1, n_fine)
    i0 = np.clip(np.round((centre - _WINDOW_DARWIN * darwin_deg - lo) / step).astype(int), 0, n_fine - n_win)
    offsets = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    cells = i0[:, None] + np.arange(n_win)[None, :]
    sub = (lo[:, None, None] + step[:, None, None] * (cells[:, :, None] + offsets[None, None, :])).reshape(lo.size, -1)
    return _SubstrateWindow(first_cell=i0, n_cells=n_win, n_sub=n_sub, two_theta_deg=sub)


def background_profile(two_theta_deg, *, level, slope=0.0, curvature=0.0, centre_deg=None):
    """Smooth background: ``level * (1 + slope x + curvature x^2)`` with ``x`` in degrees from the centre.

    Parameters
    ----------
    two_theta_deg : array, shape (n_points,) or (n_batch, n_points)
    level, slope, curvature : float or array, shape (n_batch,)
        Level in the units of the intensity; slope in 1/deg; curvature in 1/deg^2. Negative values
        that would make the background negative are clipped at 0.
    centre_deg : float or array, optional
        Centre of the expansion (default: middle of each scan).
    """
    tt = np.atleast_2d(np.asarray(two_theta_deg, dtype=float))
    col = lambda v: np.asarray(v, dtype=float).reshape(-1, 1)
    c = col(0.5 * (tt[:, :1] + tt[:, -1:]).ravel()) if centre_deg is None else col(centre_deg)
    x = tt - c
    return np.maximum(col(level) * (1 + col(slope) * x + col(curvature) * x * x), 0.0)


def apply_counts(
    reflectivity_curve, *, scale, background=0.0, rng=None, noise: str = "poisson", extra_noise: float = 0.0
):
    """Turn a reflectivity into measured counts: ``scale * R + background`` with counting noise.

    Parameters
    ----------
    reflectivity_curve : array, shape (n_batch, n_points) or (n_points,)
    scale : float or array, shape (n_batch,)
        Counts for a reflectivity of 1 (10^kappa in the paper).
    background : float or array broadcastable to the curves
        Background counts per point (constant, or from :func:`background_profile`).
    rng : numpy.random.Generator
        Source of randomness (required unless ``noise == "none"``).
    noise : {"poisson", "gaussian", "none"}
        Poisson counting, Gaussian with the Poisson variance, or no noise.
    extra_noise : float
        Additional multiplicative Gaussian noise, relative standard deviation (0: none).

    Returns
    -------
    ndarray, same shape as ``reflectivity_curve``
        Counts (float; integer-valued for Poisson noise).
    """
    r = np.asarray(reflectivity_curve, dtype=float)
    one_d = r.ndim == 1
    r = np.atleast_2d(r)
    if np.any(~np.isfinite(r)) or np.any(r < 0):
        raise ValueError("reflectivity must be finite and non-negative")
    scale = np.asarray(scale, dtype=float).reshape(-1, 1)
    if np.any(scale <= 0):
        raise ValueError("scale must be positive")
    bg = np.asarray(background, dtype=float)
    if np.any(bg < 0):
        raise ValueError("background must be non-negative")
    mean = scale * r + (bg.reshape(-1, 1) if bg.ndim == 1 else bg)
    if noise != "none" and rng is None:
        raise ValueError("a numpy.random.Generator is needed for noise")
    if extra_noise:
        mean = mean * np.clip(1 + extra_noise * rng.standard_normal(mean.shape), 0, None)
    if noise == "poisson":
        out = rng.poisson(mean).astype(float)
    elif noise == "gaussian":
        out = np.clip(mean + np.sqrt(mean) * rng.standard_normal(mean.shape), 0, None)
    elif noise == "none":
        out = mean
    else:
        raise ValueError(f"noise must be 'poisson', 'gaussian' or 'none', got {noise!r}")
    return out[0] if one_d else out
