"""Independent reference: xrayutilities' DynamicalModel (4x4 transfer matrices, quartic dispersion).

A strained lamella is a tetragonal cell (P1, all atoms explicit) with c = a (1 + e) along the surface
normal, so that its (004) planes are the strained (400) planes of cubic YSZ.

A static Debye-Waller factor DW of a lamella is given to xrayutilities as an isotropic atomic
displacement factor B on every atom of that lamella's cell: xrayutilities multiplies each atomic form
factor by exp(-B (|q|/(4 pi))^2) in ``Crystal.chih`` (hence in chi_H and chi_-H of the DynamicalModel)
but not in ``Crystal.chi0`` (forward scattering, q = 0). Choosing B from the lamella's own
|H_n| = |H| / (1 + e_n) (:func:`b_factor_for_dw`) makes chi_H,n and chi_-H,n exactly DW times their
DW = 1 values and leaves chi_0 untouched: the same model as ours, built by independent code.

The end of the module holds the analytic (kinematic-limit) references for DW used beside it.
"""

import math

import numpy as np
import xrayutilities as xu

xu.config.VERBOSITY = 0

A_YSZ = 5.145
_ZR = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
_O = [(x, y, z) for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)]
# P1 has a single Wyckoff position, 1a (x, y, z): naming it skips xrayutilities' numerical search for the
# Wyckoff position of each atom (0.7 s per cell) and gives the same atoms
_POS_P1 = [("1a", p) for p in _ZR + _O]


def ysz_cell(strain: float = 0.0, name: str = "YSZ", *, b_angstrom2: float = 0.0):
    """Tetragonal P1 cell of YSZ with c = a (1 + strain) and an isotropic displacement factor B (A^2)
    on every atom (xrayutilities: each form factor times exp(-B (|q|/(4 pi))^2))."""
    atoms = [xu.materials.elements.Zr] * 4 + [xu.materials.elements.O] * 8
    lat = xu.materials.SGLattice(
        1, A_YSZ, A_YSZ, A_YSZ * (1 + strain), 90, 90, 90, atoms=atoms, pos=_POS_P1, b=[float(b_angstrom2)] * len(atoms)
    )
    return xu.materials.Crystal(name, lat)


def b_factor_for_dw(debye_waller, strain, hkl=(0, 0, 4)):
    """B (A^2) such that exp(-B (|H_n|/(4 pi))^2) = DW at reflection ``hkl`` (l along the normal) of the strained
    cell, |H_n| = 2 pi sqrt(h^2 + k^2 + l^2/(1 + e)^2) / a; for 004, B = -ln(DW) (a (1 + e) / 2)^2."""
    dw = np.asarray(debye_waller, dtype=float)
    if np.any(dw <= 0) or np.any(dw > 1):
        raise ValueError("the xrayutilities reference needs 0 < DW <= 1 (its eigenvectors divide by chi_-H)")
    h, k, l = hkl
    h_n = 2 * math.pi / A_YSZ * np.sqrt(h * h + k * k + (l / (1 + np.asarray(strain, dtype=float))) ** 2)
    return -np.log(dw) * (4 * math.pi / h_n) ** 2


def asymmetry_rad(hkl, grazing="incidence"):
    """Our ``asymmetry`` for reflection hkl of a (001) surface: the angle between H and the normal, positive
    for grazing incidence (incidence theta - asymmetry), negative for grazing exit."""
    h, k, l = hkl
    phi = math.atan2(math.hypot(h, k), l)
    return phi if grazing == "incidence" else -phi


def xu_reflectivity(
    theta_deg,
    strain,
    thickness_nm,
    wavelength_angstrom=1.5406,
    *,
    debye_waller=None,
    polarization="S",
    hkl=(0, 0, 4),
    grazing="incidence",
):
    """Unconvolved reflectivity of YSZ ``hkl`` (l along the surface normal; default 004) with layers given surface
    first, at our Bragg-angle variable ``theta_deg`` (incidence theta - asymmetry, see :func:`asymmetry_rad`).

    ``polarization`` "S" (sigma) or "P" (pi); ``grazing`` "incidence" or "exit" for asymmetric reflections
    (xrayutilities' "lo_hi" / "hi_lo"). ``debye_waller`` (same shape as ``strain``, default all 1) is applied
    through per-lamella B factors (:func:`b_factor_for_dw`); the substrate keeps B = 0.
    """
    strain = np.atleast_1d(np.asarray(strain, dtype=float))
    dw = np.ones_like(strain) if debye_waller is None else np.atleast_1d(np.asarray(debye_waller, dtype=float))
    if dw.shape != strain.shape:
        raise ValueError(f"debye_waller {dw.shape} and strain {strain.shape} differ in shape")
    if grazing not in ("incidence", "exit"):
        raise ValueError(f"grazing must be 'incidence' or 'exit', got {grazing!r}")
    b = b_factor_for_dw(dw, strain, hkl)
    t_slice = thickness_nm * 10 / len(strain)
    sub = xu.simpack.Layer(ysz_cell(0.0, "sub"), np.inf)
    stack = xu.simpack.LayerStack("s", sub)
    for i in range(len(strain) - 1, -1, -1):  # substrate side first
        stack.append(xu.simpack.Layer(ysz_cell(float(strain[i]), f"l{i}", b_angstrom2=float(b[i])), t_slice))
    hxrd = xu.HXRD((1, 0, 0), (0, 0, 1), wl=wavelength_angstrom)
    model = xu.simpack.DynamicalModel(stack, experiment=hxrd, resolution_width=0, polarization=polarization)
    model.set_hkl(tuple(hkl))
    incidence = np.asarray(theta_deg, dtype=float) - math.degrees(asymmetry_rad(hkl, grazing))
    field = model.simulate(incidence, rettype="field", geometry="lo_hi" if grazing == "incidence" else "hi_lo")
    return np.abs(field) ** 2


def xu_absorption_length_um(wavelength_angstrom=1.5406):
    """Intensity absorption length of YSZ (a = 5.145 A) from xrayutilities, micrometres."""
    return float(ysz_cell(0.0).absorption_length(xu.lam2en(wavelength_angstrom)))


def compare_with_xu(
    strain,
    thickness_nm,
    *,
    debye_waller=None,
    xu_debye_waller=None,
    n_points=600,
    fwhm_theta_deg=0.02,
    bragg="exact",
    polarization="sigma",
):
    """rms of log10 differences between our recursion and xrayutilities' DynamicalModel.

    Both curves are computed on the same theta grid (covering the layer peak and the substrate) and
    convolved with the same Gaussian of ``fwhm_theta_deg`` FWHM in theta. ``debye_waller`` defaults to 1
    in every lamella; ``xu_debye_waller`` (default: the same) is what xrayutilities is given, to show how
    large a wrong DW would look. ``polarization``: "sigma" or "pi" (xrayutilities' "S" or "P").

    Returns
    -------
    float
        rms log10 difference.
    """
    from xrd_strain_plugin.physics.dynamical import reflectivity
    from xrd_strain_plugin.physics.materials import make_reflection

    r = make_reflection("YSZ", (4, 0, 0), 1.5406)
    strain = np.asarray(strain, dtype=float)
    dw = np.ones_like(strain) if debye_waller is None else np.asarray(debye_waller, dtype=float)
    th_b = math.degrees(r.theta_bragg)
    th_layer = math.degrees(math.asin(math.sin(r.theta_bragg) / (1 + strain.max())))
    th = np.linspace(th_layer - 0.3 - 0.3 * (th_b - th_layer), th_b + 0.15, n_points)
    ours = reflectivity(np.radians(th), strain, dw, thickness_nm, r, bragg=bragg, polarization=polarization)[0]
    ref = xu_reflectivity(
        th,
        strain,
        thickness_nm,
        debye_waller=dw if xu_debye_waller is None else xu_debye_waller,
        polarization={"sigma": "S", "pi": "P"}[polarization],
    )
    step = th[1] - th[0]
    s = fwhm_theta_deg / (2 * math.sqrt(2 * math.log(2)))
    k = int(math.ceil(4 * s / step))
    g = np.exp(-0.5 * (step * np.arange(-k, k + 1) / s) ** 2)
    conv = lambda x: np.convolve(x, g, "same") / np.convolve(np.ones_like(x), g, "same")
    return float(np.sqrt(np.mean((np.log10(conv(ours)) - np.log10(conv(ref))) ** 2)))


def graded_profile(kind, e_max, n=30):
    """Graded strain profiles (surface first, zero at the interface) used in the validation sweep."""
    z = (np.arange(n) + 0.5) / n
    if kind == "ramp":
        return e_max * (1 - z)
    if kind == "gauss":
        return e_max * np.exp(-(((z - 0.3) / 0.2) ** 2)) * (1 - z) / np.max(np.exp(-(((z - 0.3) / 0.2) ** 2)) * (1 - z))
    if kind == "buried":
        return e_max * np.sin(np.pi * z) ** 2
    raise ValueError(kind)


def coupled_dw(strain, dw_min):
    """DW coupled to strain as in the paper's generator family: DW = dw_min^((e/e_max)^2), 1 where e = 0."""
    strain = np.asarray(strain, dtype=float)
    return dw_min ** ((strain / strain.max()) ** 2)


def dw_profile(kind, n=30):
    """Depth-varying DW profiles (surface first) independent of the strain, for the decoupled cases."""
    z = (np.arange(n) + 0.5) / n
    if kind == "rising":  # strongly damaged surface recovering towards the interface
        return 0.1 + 0.9 * z
    if kind == "dip":  # buried disorder maximum
        return 1 - 0.8 * np.exp(-(((z - 0.5) / 0.15) ** 2))
    if kind == "low":  # DW near 0.1 through the whole layer (the real-sample example), 0.08 -> 0.16
        return 0.08 + 0.08 * z
    raise ValueError(kind)


def fh_ratio_coeffs_at_exact_h_n(hkl, wavelength_angstrom=1.5406):
    """F_H(e)/F_H(0) (polynomial in e, lowest order first, as ``Reflection.fh_strain_coeffs``) with the form
    factors at the strained cell's own |H_n| = |(H_x, H_z/(1+e))|, from xrayutilities; (coeffs H, coeffs -H)."""
    en = xu.lam2en(wavelength_angstrom)
    strains = np.linspace(-0.10, 0.25, 15)
    out = []
    for sign in (1, -1):
        h = tuple(sign * i for i in hkl)
        ref = ysz_cell(0.0).StructureFactor(ysz_cell(0.0).Q(*h), en=en)
        vals = np.array([ysz_cell(float(e)).StructureFactor(ysz_cell(float(e)).Q(*h), en=en) / ref for e in strains])
        re = np.polynomial.polynomial.polyfit(strains, vals.real, 4)
        im = np.polynomial.polynomial.polyfit(strains, vals.imag, 4)
        out.append(tuple(complex(a, b) for a, b in zip(re, im)))
    return tuple(out)


def compare_asymmetric_with_xu(
    strain,
    thickness_nm,
    *,
    hkl=(2, 0, 4),
    grazing="incidence",
    debye_waller=None,
    exact_fh=False,
    n_points=800,
    fwhm_theta_deg=0.02,
):
    """rms log10 difference (both curves convolved with a Gaussian in theta) for an asymmetric reflection of
    a (001) YSZ surface, ours with ``asymmetry = asymmetry_rad(hkl, grazing)`` against xrayutilities.

    ``exact_fh``: replace our F_H(e) table by one tabulated directly at the strained lamella's own |H_n|
    (:func:`fh_ratio_coeffs_at_exact_h_n`). Kept for the record: the simulator now reads its |H|/(1+e) table
    at the equivalent strain of |H_n| itself, so this option applies the correction twice.
    """
    import dataclasses

    from xrd_strain_plugin.physics.dynamical import reflectivity
    from xrd_strain_plugin.physics.materials import make_reflection

    r = make_reflection("YSZ", tuple(hkl), 1.5406)
    if exact_fh:
        fh_c, fmh_c = fh_ratio_coeffs_at_exact_h_n(hkl)
        r = dataclasses.replace(r, fh_strain_coeffs=fh_c, fmh_strain_coeffs=fmh_c)
    strain = np.asarray(strain, dtype=float)
    dw = np.ones_like(strain) if debye_waller is None else np.asarray(debye_waller, dtype=float)
    th_b = math.degrees(r.theta_bragg)
    th = np.linspace(th_b - 1.3 * strain.max() * math.degrees(math.tan(r.theta_bragg)) - 0.3, th_b + 0.15, n_points)
    ours = reflectivity(np.radians(th), strain, dw, thickness_nm, r, asymmetry=asymmetry_rad(hkl, grazing))[0]
    ref = xu_reflectivity(th, strain, thickness_nm, debye_waller=dw, hkl=hkl, grazing=grazing)
    step = th[1] - th[0]
    s = fwhm_theta_deg / (2 * math.sqrt(2 * math.log(2)))
    k = int(math.ceil(4 * s / step))
    g = np.exp(-0.5 * (step * np.arange(-k, k + 1) / s) ** 2)
    conv = lambda x: np.convolve(x, g, "same") / np.convolve(np.ones_like(x), g, "same")
    return float(np.sqrt(np.mean((np.log10(conv(ours)) - np.log10(conv(ref))) ** 2)))


def rms_log10_tolerance(thickness_nm):
    """Tolerance on :func:`compare_with_xu` (sigma, 0.02 deg Gaussian), from the measured sweep in docs/physics.md.

    Measured: a floor of 3-5e-5 at any thickness (it stays at max_coupling = 1e-3), plus our sub-slicing
    truncation (second-order coupling inside a lamella, ``max_coupling`` = 0.01), which grows with the
    thickness: at most 7.2e-5 up to 500 nm and 2.1e-4 at 1000 nm (DW = 1 and 0.1-0.9 alike).
    """
    if thickness_nm <= 500:
        return 1e-4
    if thickness_nm <= 1000:
        return 3e-4
    raise ValueError("no measured tolerance beyond 1000 nm")


def dw_sweep_cases():
    """(group, label, strain profile, DW profile, thickness nm) of the intermediate / depth-varying DW sweep;
    group is "uniform", "coupled" (DW = DW_min^((e/e_max)^2) over a graded strain) or "decoupled"."""
    cases = []
    for e in (0.01, 0.04):
        for t in (100.0, 300.0, 1000.0):
            for dw in (0.9, 0.6, 0.3, 0.1):
                cases.append(("uniform", f"uniform e {100 * e:g} %, DW {dw:g}", np.full(20, e), np.full(20, dw), t))
    for kind in ("ramp", "gauss", "buried"):
        for e, t in ((0.01, 300.0), (0.02, 500.0), (0.02, 1000.0), (0.08, 300.0)):
            for dw_min in (0.5, 0.1):
                prof = graded_profile(kind, e)
                label = f"{kind} e_max {100 * e:g} %, coupled DW_min {dw_min:g}"
                cases.append(("coupled", label, prof, coupled_dw(prof, dw_min), t))
    z = (np.arange(30) + 0.5) / 30
    for s_name, prof in (("constant 1 %", np.full(30, 0.01)), ("ramp 2->1 %", 0.01 * (2 - z))):
        for kind in ("rising", "dip", "low"):
            for t in (300.0, 1000.0):
                cases.append(("decoupled", f"strain {s_name}, decoupled DW {kind}", prof, dw_profile(kind), t))
    return cases


# --- kinematic limit of the DW factor (analytic references, no xrayutilities) --------------------------------
#
# To first order in the layer's coupling, the amplitude at the surface is A(DW) = A_S + DW A_L: A_S is the
# substrate's wave seen through the layer (absorbed and refracted by chi_0, which carries no DW) and A_L the
# layer's own scattering, proportional to chi_H DW. Hence R(DW) = a DW^2 + b DW + c at every angle, with
# a = |A_L|^2, b = 2 Re(A_L conj(A_S)), c = |A_S|^2 = R(DW = 0). At the layer peak far from the substrate
# (c << R(1)) this is R(DW) / R(1) = DW^2, up to the interference with the substrate's tail, bounded by
#   |R(DW) / (DW^2 R(1)) - 1| <= 2 rho (1 + rho) (1/DW - 1) + rho^2 (1/DW^2 - 1),   rho = sqrt(R(0) / R(1))
# (|b| <= 2 sqrt(a c) and sqrt(a) <= sqrt(R(1)) + sqrt(c)).


def kinematic_dw_bound(rho, dw):
    """Largest |R(DW)/(DW^2 R(1)) - 1| that the substrate's tail of relative amplitude ``rho`` allows
    in the kinematic limit (first order in the layer's coupling)."""
    return 2 * rho * (1 + rho) * (1 / dw - 1) + rho**2 * (1 / dw**2 - 1)


def layer_peak_dw_ratio(strain, thickness_nm, dws, *, n_slices=5):
    """At the layer peak of a uniform layer (the maximum of R(DW = 1) within +-0.05 deg of theta_B/(1+e)):
    ``rho = sqrt(R(0)/R(1))`` and ``dev[i] = R(dws[i]) / (dws[i]^2 R(1)) - 1``, from our recursion."""
    from xrd_strain_plugin.physics.dynamical import reflectivity
    from xrd_strain_plugin.physics.materials import make_reflection

    r = make_reflection("YSZ", (4, 0, 0), 1.5406)
    th_l = math.asin(math.sin(r.theta_bragg) / (1 + strain))
    th = th_l + np.radians(np.linspace(-0.05, 0.05, 2001))
    r1 = reflectivity(th, np.full(n_slices, strain), np.ones(n_slices), thickness_nm, r)[0]
    levels = np.array((1.0, 0.0) + tuple(dws))
    rd = reflectivity(
        np.array([th[np.argmax(r1)]]),
        np.full((len(levels), n_slices), strain),
        np.repeat(levels[:, None], n_slices, axis=1),
        thickness_nm,
        r,
    )[:, 0]
    return math.sqrt(rd[1] / rd[0]), rd[2:] / (rd[0] * np.asarray(dws) ** 2) - 1


def quadratic_dw_deviation(theta, strain, thickness_nm, dws, *, dw_map=None):
    """Largest relative deviation over the angles of R(DW) from the quadratic in DW through DW = 0, 0.5, 1,
    ``|R - (a DW^2 + b DW + c)| / (|a| DW^2 + |b| DW + c)``, for each DW in ``dws``.

    ``dw_map`` (default identity) is applied to every DW level before it reaches the simulator: a negative
    control (e.g. ``lambda d: d**2`` is what a simulator scaling chi_H by DW^2 would do).
    """
    from xrd_strain_plugin.physics.dynamical import reflectivity
    from xrd_strain_plugin.physics.materials import make_reflection

    r = make_reflection("YSZ", (4, 0, 0), 1.5406)
    f = (lambda d: d) if dw_map is None else dw_map
    strain = np.asarray(strain, dtype=float)
    levels = (0.0, 0.5, 1.0) + tuple(dws)
    curves = reflectivity(
        theta, np.stack([strain] * len(levels)), np.stack([np.full_like(strain, f(d)) for d in levels]), thickness_nm, r
    )
    c, half, one = curves[:3]
    a = 2 * (one - 2 * half + c)
    b = one - c - a
    return [
        float(np.max(np.abs(cur - (a * d * d + b * d + c)) / (np.abs(a) * d * d + np.abs(b) * d + c)))
        for d, cur in zip(dws, curves[3:])
    ]
