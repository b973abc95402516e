"""Dynamical diffraction by a crystal with a depth-graded damaged layer (Takagi-Taupin recursion).

The layer is sliced into lamellae of constant strain ``e`` (along the surface normal) and static
Debye-Waller factor ``DW``. The amplitude ratio ``xi = D_h / D_0`` obeys, inside one lamella, the
Riccati form of the Takagi-Taupin equations (Bartels, Hornstra & Lobeek, Acta Cryst. A42 (1986) 539)::

    d xi / d tau = i (p xi^2 - 2 q xi + r),      tau = G z,  G = pi / (lambda sqrt(gamma_0 |gamma_h|))

with coupling ``p = C chi_-H``, ``r = C chi_H`` (scaled by DW) and deviation
``q = (b alpha' + chi_0 (1 - b)) / (2 sqrt|b|)``. Its solution across a lamella is the Moebius map::

    xi' = (E xi + u R) / (1 - u P xi),   E = exp(-2 i Q),  u = (1 - E) / (2 Q)

where ``Q = q tau``, ``P = p tau``, ``R = r tau`` (dimensionless). This is exact to first order in the
coupling inside each lamella (it gives the exact kinematic amplitude of a slab, sin Q / Q included)
and composes the lamellae exactly, so all multiple scattering between lamellae is kept; the neglected
term is the second-order coupling within one lamella, ``(|p r|)^(1/2) tau`` squared, which
:func:`reflectivity` keeps below ``max_coupling`` by sub-slicing.

Exactness of the phase: the deviation is taken as ``alpha' = -(2 |gamma_h| / k) Delta_z`` with the exact
wave-vector mismatch along the normal ``Delta_z = k_hz - (k_0z + H_z,n)`` (``k_hz`` from in-plane momentum
conservation), so the phase accumulated across a lamella is exactly ``Delta_z t_n``; in the symmetric case
``Delta_z = Q - H_n`` with ``Q = 4 pi sin(theta) / lambda`` and ``H_n = H / (1 + e_n)``
(``alpha' = 4 sin(theta) (sin(theta_Bn) - sin(theta))``). The susceptibilities are
scaled by the lamella's cell volume ``V (1 + e_n)`` and ``F_H`` is taken at ``H_n``. The
paper's linearised form (``bragg="linearized"``) uses ``theta_Bn = theta_B - e_n tan(theta_B)``,
``alpha = -2 (theta - theta_Bn) sin(2 theta_B)`` and the substrate's direction cosines.

Because ``Q`` is a per-point term minus a per-lamella term plus a tiny refraction term, ``E``
factorises into a per-point and a per-lamella exponential times ``exp(small)``, evaluated by a short
Taylor series: the recursion needs no transcendental function per (point, lamella) step. The same
step function is used by the vectorised array path (numpy, cupy, jax.numpy, torch) and, on numpy
with numba installed, by a fused compiled loop (one implementation of the physics).

Geometry: ``theta`` is the Bragg-angle variable (half of 2-theta, radians). The incidence angle on
the surface is ``theta - asymmetry`` and the exit angle ``theta + asymmetry``. Depth index 0 of the
profile arrays is the surface; the recursion starts in the substrate and ends at the surface.
"""

from __future__ import annotations

import functools
import importlib.util
import math

import numpy as np

__all__ = ["reflectivity", "DEFAULT_MAX_COUPLING"]

#: largest coupling |C sqrt(chi_h chi_-h)| G t_n allowed per lamella before sub-slicing
DEFAULT_MAX_COUPLING = 0.01
_TAYLOR_LIMIT = 0.05  # |x| below which exp(x) uses the series in _lamella_step


def _namespace(*arrays):
    """Array namespace of the inputs: the array API namespace of the first array that declares one
    (numpy, cupy, jax.numpy, array-api-strict, ...), torch for torch tensors, else numpy."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "torch":
            return __import__("torch")
        if hasattr(a, "__array_namespace__"):
            return a.__array_namespace__()
    return np


def _lamella_step(xi, e_point, k_lam, x_point, du_lam, a_point, b_lam, c0_lam, rho_point, cg_point, r_lam, p_lam):
    """Propagate the amplitude ratio across one lamella (the physics of the recursion).

    Works elementwise on scalars (inside the compiled loop) and on broadcastable arrays of any
    array namespace. Per-point quantities (``*_point``) vary with the angle, per-lamella
    quantities (``*_lam``) with depth.

    ``Q = t (A - B + chi0_n rho)`` with ``a_point = t A``, ``b_lam = t B_n``, ``c0_lam = t chi0_n``;
    ``E = exp(-2iQ) = e_point * k_lam * exp(x_point * du_lam)`` where ``e_point = exp(-2i t (A + chi0 rho))``,
    ``k_lam = exp(2 i t B_n)``, ``x_point = -2 i t chi0 rho`` and ``du_lam = 1/(1+e_n) - 1``;
    ``R = cg_point * r_lam``, ``P = cg_point * p_lam`` with ``cg = C G`` and ``r_lam = t chi_H,n``.
    """
    big_q = a_point - b_lam + c0_lam * rho_point
    x = x_point * du_lam  # |x| < _TAYLOR_LIMIT: exp(x) by a 5th-order series, error < 3e-11
    e = e_point * k_lam * (1 + x * (1 + x * (0.5 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120))))))
    # (E xi + u R) / (1 - u P xi) with u = (1 - E) / (2Q), multiplied through by 2Q: one division
    two_q, one_m_e = 2 * big_q, 1 - e
    return (two_q * e * xi + one_m_e * (cg_point * r_lam)) / (two_q - one_m_e * (cg_point * p_lam) * xi)


@functools.lru_cache(maxsize=1)
def _compiled_recursion():
    """The numba-compiled driver of the very same step function (built on first use; numba optional)."""
    import numba

    step = numba.njit(cache=True, fastmath=True)(_lamella_step)

    @numba.njit(cache=True, parallel=True, fastmath=True)
    def recurse(xi0, e_pt, x_pt, a_pt, rho_pt, cg_pt, k_l, du_l, b_l, c0_l, r_l, p_l):
        n_batch, n_points = xi0.shape
        n_lam = k_l.shape[1]
        out = xi0.copy()
        for ib in numba.prange(n_batch):  # curves in parallel over the cores
            xi = out[ib]
            ep, xp_, ap, rp, cp = e_pt[ib], x_pt[ib], a_pt[ib], rho_pt[ib], cg_pt[ib]
            for n in range(n_lam - 1, -1, -1):  # interface -> surface
                kn, dn, bn, cn, rn, pn = k_l[ib, n], du_l[ib, n], b_l[ib, n], c0_l[ib, n], r_l[ib, n], p_l[ib, n]
                for j in range(n_points):
                    xi[j] = step(xi[j], ep[j], kn, xp_[j], dn, ap[j], bn, cn, rp[j], cp[j], rn, pn)
        return out

    return recurse


HAVE_NUMBA = importlib.util.find_spec("numba") is not None


def _poly(xp, coeffs, x):
    """Complex polynomial (coefficients lowest order first) of a real array."""
    x = xp.astype(x, xp.complex128)
    out = 0 * x + coeffs[-1]
    for c in coeffs[-2::-1]:
        out = out * x + c
    return out


def reflectivity(
    theta,
    strain,
    debye_waller,
    thickness_nm,
    reflection,
    *,
    asymmetry: float = 0.0,
    polarization: str = "sigma",
    bragg: str = "exact",
    max_coupling: float = DEFAULT_MAX_COUPLING,
    engine: str = "array",
):
    """Intrinsic reflectivity of a substrate under a graded layer (no instrument, no noise).

    Parameters
    ----------
    theta : array, shape (n_points,) or (n_batch, n_points)
        Bragg-angle variable theta = (2 theta)/2 in radians, one row per curve or shared.
    strain : array, shape (n_slices,) or (n_batch, n_slices)
        Strain of each lamella along the surface normal (plain fraction), index 0 at the surface.
    debye_waller : array, same shape as ``strain``
        Static Debye-Waller factor of each lamella, 1 = perfect, 0 = fully disordered.
    thickness_nm : float or array, shape (n_batch,)
        Total thickness of the layer in nm (> 0). Lamellae have equal thickness.
    reflection : Reflection
        Material constants (see :func:`xrd_strain_plugin.physics.materials.reflection`).
    asymmetry : float, keyword-only
        Angle between the reflecting planes and the surface, radians (0: symmetric Bragg).
    polarization : {"sigma", "pi", "unpolarized"}
        Polarisation of the incident beam; "unpolarized" averages the two intensities.
    bragg : {"exact", "linearized"}
        Exact Q-space phase (default) or the paper's linearised Bragg deviation.
    max_coupling : float
        Each lamella is split in equal parts until its coupling strength is below this value.
    engine : {"array", "compiled"}
        "array" (default): the vectorised path, on any array namespace. "compiled": the same step
        function in a numba loop over the curves in parallel on all cores (numpy inputs, numba
        installed; compiled on first use). Per core both run at the same speed (BENCHMARKS.md).

    Returns
    -------
    array, shape (n_batch, n_points)
        Reflectivity |D_h/D_0|^2 scaled by the flux ratio, in the namespace of ``theta``.

    Raises
    ------
    ValueError
        Shape mismatch, non-finite input, non-positive thickness, or an angle at which the
        incident or diffracted beam does not enter/leave through the surface.
    """
    if bragg not in ("exact", "linearized"):
        raise ValueError(f"bragg must be 'exact' or 'linearized', got {bragg!r}")
    if polarization == "unpolarized":
        kw = dict(asymmetry=asymmetry, bragg=bragg, max_coupling=max_coupling, engine=engine)
        r_s = reflectivity(theta, strain, debye_waller, thickness_nm, reflection, polarization="sigma", **kw)
        r_p = reflectivity(theta, strain, debye_waller, thickness_nm, reflection, polarization="pi", **kw)
        return 0.5 * (r_s + r_p)
    if polarization not in ("sigma", "pi"):
        raise ValueError(f"polarization must be 'sigma', 'pi' or 'unpolarized', got {polarization!r}")

    xp = _namespace(theta, strain, debye_waller, thickness_nm)
    theta = xp.asarray(theta, dtype=xp.float64)
    strain = xp.asarray(strain, dtype=xp.float64)
    dw = xp.asarray(debye_waller, dtype=xp.float64)
    if theta.ndim == 1:
        theta = theta[None, :]
    if strain.ndim == 1:
        strain = strain[None, :]
    if dw.ndim == 1:
        dw = dw[None, :]
    if strain.shape != dw.shape:
        raise ValueError(f"strain {tuple(strain.shape)} and debye_waller {tuple(dw.shape)} differ in shape")
    t_nm = xp.asarray(thickness_nm, dtype=xp.float64)
    t_nm = xp.reshape(t_nm, (-1,)) if t_nm.ndim else xp.reshape(t_nm, (1,))
    n_batch = max(theta.shape[0], strain.shape[0], t_nm.shape[0])
    for name, arr in (("theta", theta), ("strain", strain), ("debye_waller", dw), ("thickness_nm", t_nm)):
        if not bool(xp.all(xp.isfinite(arr))):
            raise ValueError(f"{name} contains NaN or inf")
    if bool(xp.any(t_nm <= 0)):
        raise ValueError("thickness_nm must be positive")
    if bool(xp.any(strain <= -1)):
        raise ValueError("strain must be greater than -1 (a fraction, not percent)")
    if bool(xp.any((dw < 0) | (dw > 1))):
        raise ValueError("debye_waller must lie in [0, 1]")
    for name, arr in (("theta", theta), ("strain", strain), ("thickness_nm", t_nm)):
        if arr.shape[0] not in (1, n_batch):
            raise ValueError(f"batch size of {name} ({arr.shape[0]}) does not match {n_batch}")
    theta = xp.broadcast_to(theta, (n_batch, theta.shape[1]))
    strain = xp.broadcast_to(strain, (n_batch, strain.shape[1]))
    dw = xp.broadcast_to(dw, (n_batch, dw.shape[1]))
    t_nm = xp.broadcast_to(t_nm, (n_batch,))

    lam = reflection.wavelength_angstrom
    k = 2 * math.pi / lam
    h_len = reflection.q_bragg_inv_angstrom
    th_b = reflection.theta_bragg
    gamma0 = xp.sin(theta - asymmetry)  # incidence direction cosine
    # exit direction from in-plane momentum conservation (H_x = -H sin(asymmetry) is unchanged by a
    # strain along the normal): k_hz = sqrt(k^2 - (k cos(incidence) + H_x)^2)
    kx_out = k * xp.cos(theta - asymmetry) - h_len * math.sin(asymmetry)
    kz_out_sq = k * k - kx_out * kx_out
    if bool(xp.any(gamma0 <= 0)) or bool(xp.any(kz_out_sq <= 0)):
        raise ValueError("theta/asymmetry put the incident or diffracted beam below the surface")
    k_hz = xp.sqrt(kz_out_sq)
    gammah = k_hz / k  # |gamma_h|
    if polarization == "sigma":
        c_pol = xp.ones_like(theta)
    else:
        c_pol = xp.abs(xp.cos(2 * theta))

    # per-point terms (per unit length, inverse angstrom): Q = t (a - b_n + chi0_n rho)
    if bragg == "exact":
        # exact phase mismatch along the normal: k_hz - (k_0z + H_z,n), halved
        a_pt = 0.5 * (k_hz + k * gamma0)
        rho = math.pi * (1 / gamma0 + 1 / gammah) / (2 * lam)
        g = math.pi / (lam * xp.sqrt(gamma0 * gammah))
        b_lam = 0.5 * h_len * math.cos(asymmetry) / (1 + strain)
        volume_ratio = 1 + strain  # uniaxial strain along the normal: V_n = V (1 + e_n)
        # F_H is tabulated at |H| / (1 + e); a strain along the normal scales only H_z, so an asymmetric
        # lamella's |H_n| = |H| sqrt(sin^2 phi + cos^2 phi / (1 + e)^2): read the table at that length
        e_fh = strain if asymmetry == 0 else (
            1 / xp.sqrt(math.sin(asymmetry) ** 2 + math.cos(asymmetry) ** 2 / (1 + strain) ** 2) - 1)
        fh_ratio = _poly(xp, reflection.fh_strain_coeffs, e_fh)
        fmh_ratio = _poly(xp, reflection.fmh_strain_coeffs, e_fh)
        b_sub = 0.5 * h_len * math.cos(asymmetry)
    else:
        g0b, ghb = math.sin(th_b - asymmetry), math.sin(th_b + asymmetry)
        scale = math.pi * math.sin(2 * th_b) / (lam * ghb)
        a_pt = scale * theta
        rho = math.pi * (1 / g0b + 1 / ghb) / (2 * lam) + 0 * theta
        g = math.pi / (lam * math.sqrt(g0b * ghb)) + 0 * theta
        b_lam = scale * (th_b - strain * math.tan(th_b))
        volume_ratio = 1 + 0 * strain
        fh_ratio = fmh_ratio = xp.astype(1 + 0 * strain, xp.complex128)
        b_sub = scale * th_b
    cg = c_pol * g
    chi0, chih, chimh = reflection.chi0, reflection.chih, reflection.chimh
    if chi0.imag == 0:
        # without absorption Q can vanish exactly and (1 - E)/(2Q) becomes 0/0; an absorption
        # 1e-12 of the refraction keeps the lamella map regular and changes nothing measurable
        chi0 = complex(chi0.real, -1e-12 * max(abs(chi0.real), 1e-30))

    # substrate: fixed point of the Riccati equation, the root with |xi| <= 1
    cx = lambda v: xp.astype(v, xp.complex128)  # real -> complex before meeting complex constants
    q_s = cx(a_pt - b_sub) + chi0 * cx(rho)
    p_s, r_s = cx(cg) * chimh, cx(cg) * chih
    w = xp.sqrt(q_s * q_s - p_s * r_s)
    big = xp.where(xp.abs(q_s + w) >= xp.abs(q_s - w), q_s + w, q_s - w)
    xi0 = r_s / big

    # lamella thickness, sub-slicing where the coupling per lamella would be too strong
    n_slices = strain.shape[1]
    coupling = abs(math.sqrt(abs(chih * chimh))) * float(xp.max(cg)) * float(xp.max(t_nm)) * 10 / n_slices
    repeat = max(1, math.ceil(coupling / max_coupling))
    t_ang = t_nm * 10 / (n_slices * repeat)
    tt = t_ang[:, None]

    du = 1 / volume_ratio - 1 if bragg == "exact" else 0 * strain
    c0_l = cx(tt / volume_ratio) * chi0
    r_l = cx(tt * dw / volume_ratio) * fh_ratio * chih
    p_l = cx(tt * dw / volume_ratio) * fmh_ratio * chimh
    b_l = tt * b_lam
    k_l = xp.exp(2j * cx(b_l))
    a_p = tt * a_pt
    x_p = cx(tt * rho) * (-2j * chi0)
    e_p = xp.exp(-2j * cx(a_p) + x_p)
    if repeat > 1:
        du, c0_l, r_l, p_l, b_l, k_l = (xp.repeat(v, repeat, axis=1) for v in (du, c0_l, r_l, p_l, b_l, k_l))
    if float(xp.max(xp.abs(x_p))) * float(xp.max(xp.abs(du))) > _TAYLOR_LIMIT:
        raise ValueError("layer too thick for the refraction series; increase the number of lamellae")

    if engine not in ("array", "compiled"):
        raise ValueError(f"engine must be 'array' or 'compiled', got {engine!r}")
    if engine == "compiled":
        if not (HAVE_NUMBA and xp is np):
            raise ValueError("engine='compiled' needs numba and numpy inputs")
        c = lambda v: np.ascontiguousarray(np.broadcast_to(v, (n_batch, v.shape[-1])), dtype=np.complex128)
        xi = _compiled_recursion()(c(xi0), c(e_p), c(x_p), c(a_p), c(rho), c(cg), c(k_l), c(du), c(b_l),
                               c(c0_l), c(r_l), c(p_l))
    else:
        xi = xi0
        for n in range(k_l.shape[1] - 1, -1, -1):  # interface -> surface
            s = slice(n, n + 1)
            xi = _lamella_step(xi, e_p, k_l[:, s], x_p, du[:, s], a_p, b_l[:, s], c0_l[:, s], rho, cg,
                               r_l[:, s], p_l[:, s])
    # xi is normalised so that |xi|^2 is the reflected flux ratio (p and r carry no b factor:
    # the total-reflection plateau of a thick non-absorbing crystal is 1 in any geometry)
    return xp.abs(xi) ** 2
