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
step is written once as array algebra (the reference path, any array namespace: numpy, cupy,
jax.numpy, torch) and once as a fused numba kernel that keeps each point's amplitude in registers
across all lamellae (the default on numpy; the two agree to ~1e-12, tested).

Geometry: ``theta`` is the Bragg-angle variable (half of 2-theta, radians). The incidence angle on
the surface is ``theta - asymmetry`` and the exit angle ``theta + asymmetry``. Depth index 0 of the
profile arrays is the surface; the recursion starts in the substrate and ends at the surface.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading

import numpy as np

__all__ = ["reflectivity", "substrate_amplitude", "DEFAULT_MAX_COUPLING", "HAVE_NUMBA", "ENGINES"]

#: largest coupling |C sqrt(chi_h chi_-h)| G t_n allowed per lamella before sub-slicing
DEFAULT_MAX_COUPLING = 0.01
_TAYLOR_LIMIT = 0.05  # |x| below which exp(x) uses the series in _lamella_step
#: |x| below which the compiled kernel's 3rd-order series is exact to < 1e-14 (x^4/24)
_SHORT_SERIES_LIMIT = 1e-3
#: points the compiled kernel advances together across the lamellae (one SIMD-friendly block)
_KERNEL_BLOCK = 16
#: recursion engines: "auto" = "compiled" where numba and numpy inputs allow, else "array"
ENGINES = ("auto", "array", "compiled")

HAVE_NUMBA = importlib.util.find_spec("numba") is not None


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
    """Propagate the amplitude ratio across one lamella (the reference form of the physics).

    Works on broadcastable arrays of any array namespace. Per-point quantities (``*_point``) vary
    with the angle, per-lamella quantities (``*_lam``) with depth. The compiled kernel
    (:func:`_fused_kernel`) is the same algebra written out in real arithmetic.

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


@functools.lru_cache(maxsize=None)
def _fused_kernel(series_order: int, parallel: bool):
    """The compiled recursion: every point's amplitude stays in registers across all lamellae.

    Points advance in blocks of :data:`_KERNEL_BLOCK` contiguous angles (the inner loop LLVM turns
    into SIMD lanes), the lamella constants of one step are scalars shared by the block, and all
    complex algebra is written in real arithmetic (no allocation, no branch, one reciprocal per step).
    ``series_order`` (3 or 5) is the Taylor order of exp(x) for the refraction term; it is a
    compile-time constant. ``parallel`` spreads the curves of a batch over numba's threads. Compiled
    once per process; the single-thread variant is cached on disk by numba (``cache=True``), so worker
    processes load it instead of recompiling.
    """
    import numba

    blk = _KERNEL_BLOCK
    order5 = series_order == 5
    loop = numba.prange if parallel else range

    # The kernel writes into an output array it is given and returns nothing: numba 0.6x sometimes
    # fails to box an array returned by a function loaded from its disk cache ("NRT_adapt_ndarray_
    # to_python: descr is NULL", seen when another process had just rewritten the cache), and with no
    # returned array there is nothing to box. The parallel variant stays uncached (it is for large
    # batches, where compiling it once per process is amortised).
    @numba.njit(cache=not parallel, fastmath=True, nogil=True, error_model="numpy", parallel=parallel)
    def kernel(pt, lam, xi0, out):  # pragma: no cover - compiled
        # pt: (n_batch, 7, n_points) rows: e_p re/im, x_p re/im, a_p, rho, cg
        # lam: (n_batch, 10, n_lam) rows: k re/im, du, b, c0 re/im, r re/im, p re/im
        # out: (n_batch, 2, n_points), written: xi re/im at the surface
        n_batch, _, n_points = pt.shape
        n_lam = lam.shape[2]
        for ib in loop(n_batch):
            loc = np.empty((7, blk))
            sr_ = np.empty(blk)
            si_ = np.empty(blk)
            for j0 in range(0, n_points, blk):
                for jj in range(blk):
                    j = min(j0 + jj, n_points - 1)  # the tail block repeats the last point
                    for row in range(7):
                        loc[row, jj] = pt[ib, row, j]
                    sr_[jj] = xi0[ib, 0, j]
                    si_[jj] = xi0[ib, 1, j]
                for n in range(n_lam - 1, -1, -1):  # interface -> surface
                    knr = lam[ib, 0, n]
                    kni = lam[ib, 1, n]
                    dn = lam[ib, 2, n]
                    bn = lam[ib, 3, n]
                    cnr = lam[ib, 4, n]
                    cni = lam[ib, 5, n]
                    rnr = lam[ib, 6, n]
                    rni = lam[ib, 7, n]
                    pnr = lam[ib, 8, n]
                    pni = lam[ib, 9, n]
                    for jj in range(blk):
                        rh = loc[5, jj]
                        tqr = 2.0 * (loc[4, jj] - bn + cnr * rh)  # 2Q
                        tqi = 2.0 * cni * rh
                        xr = loc[2, jj] * dn  # x = x_p du: exp(x) by its Taylor series
                        xim = loc[3, jj] * dn
                        if order5:
                            ar = 1.0 / 24.0 + xr * (1.0 / 120.0)
                            ai = xim * (1.0 / 120.0)
                            ar, ai = 1.0 / 6.0 + xr * ar - xim * ai, xr * ai + xim * ar
                            ar, ai = 0.5 + xr * ar - xim * ai, xr * ai + xim * ar
                        else:
                            ar = 0.5 + xr * (1.0 / 6.0)
                            ai = xim * (1.0 / 6.0)
                        ar, ai = 1.0 + xr * ar - xim * ai, xr * ai + xim * ar
                        ar, ai = 1.0 + xr * ar - xim * ai, xr * ai + xim * ar
                        t1r = loc[0, jj] * knr - loc[1, jj] * kni  # e_p k
                        t1i = loc[0, jj] * kni + loc[1, jj] * knr
                        er = t1r * ar - t1i * ai  # E
                        ei = t1r * ai + t1i * ar
                        omr = 1.0 - er
                        omi = -ei
                        g = loc[6, jj]
                        x0r = sr_[jj]
                        x0i = si_[jj]
                        ar = tqr * er - tqi * ei  # 2Q E
                        ai = tqr * ei + tqi * er
                        nr = ar * x0r - ai * x0i + g * (omr * rnr - omi * rni)  # 2Q E xi + (1-E) cg r
                        ni = ar * x0i + ai * x0r + g * (omr * rni + omi * rnr)
                        ur = g * (omr * pnr - omi * pni)  # (1-E) cg p
                        ui = g * (omr * pni + omi * pnr)
                        dr = tqr - (ur * x0r - ui * x0i)  # 2Q - (1-E) cg p xi
                        di = tqi - (ur * x0i + ui * x0r)
                        inv = 1.0 / (dr * dr + di * di)
                        sr_[jj] = (nr * dr + ni * di) * inv
                        si_[jj] = (ni * dr - nr * di) * inv
                for jj in range(min(blk, n_points - j0)):
                    out[ib, 0, j0 + jj] = sr_[jj]
                    out[ib, 1, j0 + jj] = si_[jj]

    return kernel


_THREAD_LOCK = threading.Lock()


def _run_fused(xi0, point_terms, lamella_terms, n_batch, threads):
    """Pack the terms into the kernel's real arrays and run it; returns complex xi (n_batch, n_points)."""
    e_p, x_p, a_p, rho, cg = point_terms
    k_l, du, b_l, c0_l, r_l, p_l = lamella_terms
    n_points = e_p.shape[-1]
    pt = np.empty((n_batch, 7, n_points))
    for row, v in enumerate((e_p.real, e_p.imag, x_p.real, x_p.imag, a_p, rho, cg)):
        pt[:, row] = np.broadcast_to(np.real(v), (n_batch, n_points))
    n_lam = k_l.shape[-1]
    lam = np.empty((n_batch, 10, n_lam))
    for row, v in enumerate(
        (k_l.real, k_l.imag, du, b_l, c0_l.real, c0_l.imag, r_l.real, r_l.imag, p_l.real, p_l.imag)
    ):
        lam[:, row] = np.broadcast_to(np.real(v), (n_batch, n_lam))
    x0 = np.empty((n_batch, 2, n_points))
    x0[:, 0] = np.broadcast_to(xi0.real, (n_batch, n_points))
    x0[:, 1] = np.broadcast_to(xi0.imag, (n_batch, n_points))
    x_max = float(np.max(np.abs(x_p))) * float(np.max(np.abs(du)))
    order = 3 if x_max < _SHORT_SERIES_LIMIT else 5
    parallel = threads != 1 and n_batch > 1
    kernel = _fused_kernel(order, parallel)
    out = np.empty((n_batch, 2, n_points))
    if parallel:
        import numba

        with _THREAD_LOCK:
            previous = numba.get_num_threads()
            numba.set_num_threads(min(numba.config.NUMBA_NUM_THREADS, threads or os.cpu_count() or 1))
            try:
                kernel(pt, lam, x0, out)
            finally:
                numba.set_num_threads(previous)
    else:
        kernel(pt, lam, x0, out)
    return out[:, 0] + 1j * out[:, 1]


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
    engine: str = "auto",
    threads: int | None = 1,
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
        Material constants (see :func:`xrd_strain_plugin.physics.materials.make_reflection`).
    asymmetry : float, keyword-only
        Angle between the reflecting planes and the surface, radians (0: symmetric Bragg).
    polarization : {"sigma", "pi", "unpolarized"}
        Polarisation of the incident beam; "unpolarized" averages the two intensities.
    bragg : {"exact", "linearized"}
        Exact Q-space phase (default) or the paper's linearised Bragg deviation.
    max_coupling : float
        Each lamella is split in equal parts until its coupling strength is below this value.
    engine : {"auto", "array", "compiled"}
        "compiled": the fused numba kernel (numpy inputs, numba installed; compiled on first use,
        cached on disk). "array": the vectorised reference path, on any array namespace (numpy,
        cupy, jax.numpy, torch, array-api-strict). "auto" (default): "compiled" where it can run,
        else "array". Both give the same curves to ~1e-12 (tests/physics/test_dynamical.py).
    threads : int or None
        Threads of the compiled kernel: 1 (default: the live process and every per-curve call stay
        on one core), n, or None for numba's thread count. Threads split the batch by curves.

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
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if polarization == "unpolarized":
        kw = dict(asymmetry=asymmetry, bragg=bragg, max_coupling=max_coupling, engine=engine, threads=threads)
        r_s = reflectivity(theta, strain, debye_waller, thickness_nm, reflection, polarization="sigma", **kw)
        r_p = reflectivity(theta, strain, debye_waller, thickness_nm, reflection, polarization="pi", **kw)
        return 0.5 * (r_s + r_p)
    if polarization not in ("sigma", "pi"):
        raise ValueError(f"polarization must be 'sigma', 'pi' or 'unpolarized', got {polarization!r}")

    xp = _namespace(theta, strain, debye_waller, thickness_nm)
    theta, strain, dw, t_nm = _checked_batch(xp, theta, strain, debye_waller, thickness_nm)
    if engine == "compiled" and not (HAVE_NUMBA and xp is np):
        raise ValueError("engine='compiled' needs numba and numpy inputs")
    compiled = engine == "compiled" or (engine == "auto" and HAVE_NUMBA and xp is np)
    terms = _geometry(xp, theta, strain, reflection, asymmetry, polarization, bragg)
    xi0 = substrate_amplitude(xp, terms, reflection)
    point_terms, lamella_terms = _lamella_terms(xp, terms, dw, t_nm, reflection, max_coupling, bragg)
    if compiled:
        xi = _run_fused(xi0, point_terms, lamella_terms, theta.shape[0], threads)
    else:
        xi = _recurse_array(xi0, point_terms, lamella_terms)
    # xi is normalised so that |xi|^2 is the reflected flux ratio (p and r carry no b factor:
    # the total-reflection plateau of a thick non-absorbing crystal is 1 in any geometry)
    return xp.abs(xi) ** 2


def _checked_batch(xp, theta, strain, debye_waller, thickness_nm):
    """The four inputs as float64 arrays broadcast to one batch, each checked (named errors)."""
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
    return theta, strain, dw, t_nm


def _geometry(xp, theta, strain, reflection, asymmetry, polarization, bragg):
    """Per-point and per-lamella terms of the deviation from the Bragg condition (a dict).

    ``a_pt`` (per point) and ``b_lam`` (per lamella) are the two halves of the phase mismatch along
    the normal, ``rho`` the refraction weight, ``cg`` = polarisation factor x G, ``b_sub`` the
    substrate's ``b``, ``volume_ratio`` / ``fh_ratio`` / ``fmh_ratio`` the lamella's cell volume and
    structure-factor scaling.
    """
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
    c_pol = xp.ones_like(theta) if polarization == "sigma" else xp.abs(xp.cos(2 * theta))
    if bragg == "exact":
        # exact phase mismatch along the normal: k_hz - (k_0z + H_z,n), halved
        # F_H is tabulated at |H| / (1 + e); a strain along the normal scales only H_z, so an asymmetric
        # lamella's |H_n| = |H| sqrt(sin^2 phi + cos^2 phi / (1 + e)^2): read the table at that length
        e_fh = (
            strain
            if asymmetry == 0
            else (1 / xp.sqrt(math.sin(asymmetry) ** 2 + math.cos(asymmetry) ** 2 / (1 + strain) ** 2) - 1)
        )
        return dict(
            a_pt=0.5 * (k_hz + k * gamma0),
            rho=math.pi * (1 / gamma0 + 1 / gammah) / (2 * lam),
            cg=c_pol * math.pi / (lam * xp.sqrt(gamma0 * gammah)),
            b_lam=0.5 * h_len * math.cos(asymmetry) / (1 + strain),
            volume_ratio=1 + strain,  # uniaxial strain along the normal: V_n = V (1 + e_n)
            fh_ratio=_poly(xp, reflection.fh_strain_coeffs, e_fh),
            fmh_ratio=_poly(xp, reflection.fmh_strain_coeffs, e_fh),
            b_sub=0.5 * h_len * math.cos(asymmetry),
            du=1 / (1 + strain) - 1,
        )
    g0b, ghb = math.sin(th_b - asymmetry), math.sin(th_b + asymmetry)
    scale = math.pi * math.sin(2 * th_b) / (lam * ghb)
    one = xp.astype(1 + 0 * strain, xp.complex128)
    return dict(
        a_pt=scale * theta,
        rho=math.pi * (1 / g0b + 1 / ghb) / (2 * lam) + 0 * theta,
        cg=c_pol * (math.pi / (lam * math.sqrt(g0b * ghb)) + 0 * theta),
        b_lam=scale * (th_b - strain * math.tan(th_b)),
        volume_ratio=1 + 0 * strain,
        fh_ratio=one,
        fmh_ratio=one,
        b_sub=scale * th_b,
        du=0 * strain,
    )


def _chi0(reflection):
    """chi_0 with a vanishing absorption made tiny but non-zero: without absorption Q can vanish
    exactly and (1 - E)/(2Q) becomes 0/0; an absorption 1e-12 of the refraction keeps the lamella map
    regular and changes nothing measurable."""
    chi0 = reflection.chi0
    return chi0 if chi0.imag != 0 else complex(chi0.real, -1e-12 * max(abs(chi0.real), 1e-30))


def _cx(xp, v):
    return xp.astype(v, xp.complex128)  # real -> complex before meeting complex constants


def substrate_amplitude(xp, terms, reflection):
    """Amplitude ratio of the semi-infinite substrate: the fixed point of the Riccati equation,
    the root with |xi| <= 1 (the boundary condition the recursion starts from)."""
    q_s = _cx(xp, terms["a_pt"] - terms["b_sub"]) + _chi0(reflection) * _cx(xp, terms["rho"])
    p_s, r_s = _cx(xp, terms["cg"]) * reflection.chimh, _cx(xp, terms["cg"]) * reflection.chih
    w = xp.sqrt(q_s * q_s - p_s * r_s)
    big = xp.where(xp.abs(q_s + w) >= xp.abs(q_s - w), q_s + w, q_s - w)
    return r_s / big


def _lamella_terms(xp, terms, dw, t_nm, reflection, max_coupling, bragg):
    """Lamella thickness (sub-sliced where the coupling per lamella would be too strong) and the
    per-point / per-lamella constants of :func:`_lamella_step`."""
    chi0, chih, chimh = _chi0(reflection), reflection.chih, reflection.chimh
    cg, vr = terms["cg"], terms["volume_ratio"]
    n_slices = dw.shape[1]
    coupling = abs(math.sqrt(abs(chih * chimh))) * float(xp.max(cg)) * float(xp.max(t_nm)) * 10 / n_slices
    repeat = max(1, math.ceil(coupling / max_coupling))
    tt = (t_nm * 10 / (n_slices * repeat))[:, None]
    du = terms["du"]
    c0_l = _cx(xp, tt / vr) * chi0
    r_l = _cx(xp, tt * dw / vr) * terms["fh_ratio"] * chih
    p_l = _cx(xp, tt * dw / vr) * terms["fmh_ratio"] * chimh
    b_l = tt * terms["b_lam"]
    k_l = xp.exp(2j * _cx(xp, b_l))
    a_p = tt * terms["a_pt"]
    x_p = _cx(xp, tt * terms["rho"]) * (-2j * chi0)
    e_p = xp.exp(-2j * _cx(xp, a_p) + x_p)
    if repeat > 1:
        du, c0_l, r_l, p_l, b_l, k_l = (xp.repeat(v, repeat, axis=1) for v in (du, c0_l, r_l, p_l, b_l, k_l))
    if float(xp.max(xp.abs(x_p))) * float(xp.max(xp.abs(du))) > _TAYLOR_LIMIT:
        raise ValueError("layer too thick for the refraction series; increase the number of lamellae")
    return (e_p, x_p, a_p, terms["rho"], cg), (k_l, du, b_l, c0_l, r_l, p_l)


def _recurse_array(xi0, point_terms, lamella_terms):
    """The reference recursion: one vectorised :func:`_lamella_step` per lamella, any array namespace."""
    e_p, x_p, a_p, rho, cg = point_terms
    k_l, du, b_l, c0_l, r_l, p_l = lamella_terms
    xi = xi0
    for n in range(k_l.shape[1] - 1, -1, -1):  # interface -> surface
        s = slice(n, n + 1)
        xi = _lamella_step(xi, e_p, k_l[:, s], x_p, du[:, s], a_p, b_l[:, s], c0_l[:, s], rho, cg, r_l[:, s], p_l[:, s])
    return xi
