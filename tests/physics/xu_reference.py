"""Independent reference: xrayutilities' DynamicalModel (4x4 transfer matrices, quartic dispersion).

A strained lamella is a tetragonal cell (P1, all atoms explicit) with c = a (1 + e) along the surface
normal, so that its (004) planes are the strained (400) planes of cubic YSZ.
"""

import numpy as np
import xrayutilities as xu

xu.config.VERBOSITY = 0

A_YSZ = 5.145
_ZR = [(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)]
_O = [(x, y, z) for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)]


def ysz_cell(strain: float = 0.0, name: str = "YSZ"):
    atoms = [xu.materials.elements.Zr] * 4 + [xu.materials.elements.O] * 8
    lat = xu.materials.SGLattice(1, A_YSZ, A_YSZ, A_YSZ * (1 + strain), 90, 90, 90, atoms=atoms, pos=_ZR + _O)
    return xu.materials.Crystal(name, lat)


def xu_reflectivity(theta_deg, strain, thickness_nm, wavelength_angstrom=1.5406):
    """Unconvolved sigma-polarised reflectivity of YSZ 004 with layers given surface first."""
    strain = np.atleast_1d(strain)
    t_slice = thickness_nm * 10 / len(strain)
    sub = xu.simpack.Layer(ysz_cell(0.0, "sub"), np.inf)
    stack = xu.simpack.LayerStack("s", sub)
    for i, e in enumerate(strain[::-1]):  # substrate side first
        stack.append(xu.simpack.Layer(ysz_cell(float(e), f"l{i}"), t_slice))
    hxrd = xu.HXRD((1, 0, 0), (0, 0, 1), wl=wavelength_angstrom)
    model = xu.simpack.DynamicalModel(stack, experiment=hxrd, resolution_width=0, polarization="S")
    model.set_hkl((0, 0, 4))
    return model.simulate(np.asarray(theta_deg, dtype=float), rettype="field") if False else np.abs(
        model.simulate(np.asarray(theta_deg, dtype=float), rettype="field")) ** 2


def xu_absorption_length_um(wavelength_angstrom=1.5406):
    """Intensity absorption length of YSZ (a = 5.145 A) from xrayutilities, micrometres."""
    return float(ysz_cell(0.0).absorption_length(xu.lam2en(wavelength_angstrom)))


def compare_with_xu(strain, thickness_nm, *, n_points=600, fwhm_theta_deg=0.02, bragg="exact"):
    """rms of log10 differences between our recursion and xrayutilities' DynamicalModel.

    Both curves are computed on the same theta grid (covering the layer peak and the substrate) and
    convolved with the same Gaussian of ``fwhm_theta_deg`` FWHM in theta.

    Returns
    -------
    float
        rms log10 difference.
    """
    import math

    from xrd_strain_plugin.physics.dynamical import reflectivity
    from xrd_strain_plugin.physics.materials import reflection

    r = reflection("YSZ", (4, 0, 0), 1.5406)
    strain = np.asarray(strain, dtype=float)
    th_b = math.degrees(r.theta_bragg)
    th_layer = math.degrees(math.asin(math.sin(r.theta_bragg) / (1 + strain.max())))
    th = np.linspace(th_layer - 0.3 - 0.3 * (th_b - th_layer), th_b + 0.15, n_points)
    ours = reflectivity(np.radians(th), strain, np.ones_like(strain), thickness_nm, r, bragg=bragg)[0]
    ref = xu_reflectivity(th, strain, thickness_nm)
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
