"""Material constants for one reflection: d-spacing, cell volume, structure factors.

The only module of the physics core that talks to xrayutilities. It turns a material (a built-in
name or a CIF file) plus a reflection ``hkl`` and a wavelength into a frozen :class:`Reflection`
holding plain numbers, which is all the dynamical kernel consumes.

Sign convention: structure factors are ``F_H = sum_j f_j exp(+2 pi i H.r_j)`` with the anomalous
part ``f'' > 0`` (so ``Im F_0 > 0``), and susceptibilities ``chi = -Gamma F`` with
``Gamma = r_e lambda^2 / (pi V)``; absorption therefore appears as ``Im chi_0 < 0``.
(xrayutilities reports the complex conjugate, ``Im chi_0 > 0``.)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .bragg import bragg_angle, q_bragg_inv_angstrom

__all__ = ["Reflection", "make_reflection", "BUILTIN_MATERIALS", "MaterialError"]

#: classical electron radius in angstrom
R_ELECTRON_ANGSTROM = 2.8179403262e-5

#: strain range over which F_H(strain) is tabulated and fitted (fraction)
_FH_STRAIN_RANGE = (-0.10, 0.25)
_FH_POLY_DEGREE = 4

#: built-in materials: name -> (description, constructor key)
BUILTIN_MATERIALS = {
    "YSZ": "yttria-stabilised zirconia modelled as cubic fluorite ZrO2, a = 5.145 A",
    "ZrO2": "cubic fluorite ZrO2, a = 5.145 A (same model as YSZ)",
    "Si": "silicon (diamond), xrayutilities",
    "Ge": "germanium (diamond), xrayutilities",
    "GaN": "wurtzite GaN, xrayutilities",
    "MgO": "rock-salt MgO, xrayutilities",
    "GaAs": "zinc-blende GaAs, xrayutilities",
    "Al2O3": "sapphire, xrayutilities",
    "SiC-3C": "cubic (zinc-blende) SiC, a = 4.3596 A",
    "UO2": "fluorite UO2, a = 5.4682 A",
}

#: built-in crystals xrayutilities does not ship: space group, a (angstrom), atoms, Wyckoff positions
_FLUORITE_AND_ZINCBLENDE = {
    "YSZ": (225, 5.145, ("Zr", "O"), ("4a", "8c")),
    "ZrO2": (225, 5.145, ("Zr", "O"), ("4a", "8c")),
    "SiC-3C": (216, 4.3596, ("Si", "C"), ("4a", "4c")),
    "UO2": (225, 5.4682, ("U", "O"), ("4a", "8c")),
}


class MaterialError(ValueError):
    """A material, reflection or wavelength that cannot be used."""


@dataclass(frozen=True, kw_only=True)
class Reflection:
    """Everything the simulator needs to know about one reflection of one crystal.

    Parameters
    ----------
    material : str
        Name or CIF path as given by the user (provenance only).
    hkl : tuple of int
        Miller indices of the reflection; its planes are parallel to the surface in the
        symmetric geometry.
    wavelength_angstrom : float
        X-ray wavelength in angstrom.
    d_spacing_angstrom : float
        Interplanar spacing of ``hkl`` in the unstrained crystal, angstrom.
    cell_volume_angstrom3 : float
        Unit-cell volume of the unstrained crystal, cubic angstrom.
    f0, fh, fmh : complex
        Structure factors F_0, F_H and F_-H (electrons per cell), anomalous dispersion included.
    fh_strain_coeffs, fmh_strain_coeffs : tuple of complex
        Polynomial coefficients (lowest order first) of ``F_H(e)/F_H(0)`` and
        ``F_-H(e)/F_-H(0)`` for a lattice strained by ``e`` along the surface normal: the atomic
        form factors are taken at ``|H_e| = |H|/(1+e)``, the phases stay those of ``hkl``.
    """

    material: str
    hkl: tuple[int, int, int]
    wavelength_angstrom: float
    d_spacing_angstrom: float
    cell_volume_angstrom3: float
    f0: complex
    fh: complex
    fmh: complex
    fh_strain_coeffs: tuple[complex, ...] = field(default=(1.0,), repr=False)
    fmh_strain_coeffs: tuple[complex, ...] = field(default=(1.0,), repr=False)

    def __post_init__(self):
        if not (self.wavelength_angstrom > 0 and math.isfinite(self.wavelength_angstrom)):
            raise MaterialError(f"wavelength_angstrom must be positive, got {self.wavelength_angstrom}")
        if self.wavelength_angstrom >= 2 * self.d_spacing_angstrom:
            raise MaterialError(
                f"wavelength_angstrom={self.wavelength_angstrom} has no Bragg angle for reflection "
                f"{self.hkl} of {self.material} (needs lambda < 2d = {2 * self.d_spacing_angstrom:.4f} A)"
            )

    # -- plain data -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The constants as JSON-ready plain data (a complex number is ``[real, imag]``).

        :meth:`from_dict` rebuilds an equal :class:`Reflection`: floats round-trip exactly.
        """
        pair = lambda z: [z.real, z.imag]
        return {
            "material": self.material,
            "hkl": list(self.hkl),
            "wavelength_angstrom": self.wavelength_angstrom,
            "d_spacing_angstrom": self.d_spacing_angstrom,
            "cell_volume_angstrom3": self.cell_volume_angstrom3,
            "f0": pair(self.f0),
            "fh": pair(self.fh),
            "fmh": pair(self.fmh),
            "fh_strain_coeffs": [pair(z) for z in self.fh_strain_coeffs],
            "fmh_strain_coeffs": [pair(z) for z in self.fmh_strain_coeffs],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Reflection:
        """The :class:`Reflection` that :meth:`to_dict` wrote.

        Raises
        ------
        KeyError, TypeError, ValueError, IndexError
            ``data`` is not what :meth:`to_dict` writes (a caller reading a file treats it as absent).
        """
        number = lambda v: complex(float(v[0]), float(v[1]))
        return cls(
            material=str(data["material"]),
            hkl=tuple(int(i) for i in data["hkl"]),
            wavelength_angstrom=float(data["wavelength_angstrom"]),
            d_spacing_angstrom=float(data["d_spacing_angstrom"]),
            cell_volume_angstrom3=float(data["cell_volume_angstrom3"]),
            f0=number(data["f0"]),
            fh=number(data["fh"]),
            fmh=number(data["fmh"]),
            fh_strain_coeffs=tuple(map(number, data["fh_strain_coeffs"])),
            fmh_strain_coeffs=tuple(map(number, data["fmh_strain_coeffs"])),
        )

    # -- geometry -------------------------------------------------------------------------
    @property
    def theta_bragg(self) -> float:
        """Kinematic Bragg angle of the unstrained crystal, radians."""
        return bragg_angle(self.d_spacing_angstrom, self.wavelength_angstrom)

    @property
    def two_theta_bragg_deg(self) -> float:
        """Kinematic 2-theta Bragg angle, degrees."""
        return 2 * math.degrees(self.theta_bragg)

    @property
    def q_bragg_inv_angstrom(self) -> float:
        """Length of the reciprocal-lattice vector, H = 2 pi / d, inverse angstrom."""
        return q_bragg_inv_angstrom(self.d_spacing_angstrom)

    # -- susceptibilities -----------------------------------------------------------------
    @property
    def gamma(self) -> float:
        """Gamma = r_e lambda^2 / (pi V), the factor turning F into chi (dimensionless per e-)."""
        return R_ELECTRON_ANGSTROM * self.wavelength_angstrom**2 / (math.pi * self.cell_volume_angstrom3)

    @property
    def chi0(self) -> complex:
        """Mean susceptibility chi_0 = -Gamma F_0 (Im < 0: absorption)."""
        return -self.gamma * self.f0

    @property
    def chih(self) -> complex:
        """chi_H = -Gamma F_H."""
        return -self.gamma * self.fh

    @property
    def chimh(self) -> complex:
        """chi_-H = -Gamma F_-H."""
        return -self.gamma * self.fmh

    def darwin_width_symmetric(self, polarization_factor: float = 1.0) -> float:
        """Full width of the total-reflection plateau of a thick crystal, symmetric Bragg, radians.

        ``2 C |sqrt(chi_H chi_-H)| / sin(2 theta_B)`` (absorption neglected).
        """
        return 2 * polarization_factor * abs(np.sqrt(self.chih * self.chimh)) / math.sin(2 * self.theta_bragg)

    def refraction_shift_symmetric(self) -> float:
        """Shift of the centre of the Darwin plateau from theta_B, symmetric Bragg, radians.

        ``-Re(chi_0) / sin(2 theta_B)`` (positive: the peak sits above the kinematic angle).
        """
        return -self.chi0.real / math.sin(2 * self.theta_bragg)


def _atoms_of(crystal):
    """(atom, fractional position, occupancy, B factor) for every atom of the unit cell."""
    return [(a, np.asarray(p, dtype=float), occ, b) for a, p, occ, b in crystal.lattice.base()]


def _structure_factor(crystal, hkl, energy_ev, q_len):
    """F_hkl with atomic form factors evaluated at |q| = q_len (inverse angstrom)."""
    h = np.asarray(hkl, dtype=float)
    total = 0j
    for atom, pos, occ, b in _atoms_of(crystal):
        f = atom.f0(q_len) + atom.f1(energy_ev) + 1j * atom.f2(energy_ev)
        dw = math.exp(-b * (q_len / (4 * math.pi)) ** 2) if b else 1.0
        total += occ * f * dw * np.exp(2j * math.pi * float(h @ pos))
    return complex(total)


def _make_crystal(material: str):
    import xrayutilities as xu

    if material in _FLUORITE_AND_ZINCBLENDE:
        group, a, atoms, positions = _FLUORITE_AND_ZINCBLENDE[material]
        lattice = xu.materials.SGLattice(
            group, a, atoms=[getattr(xu.materials.elements, atom) for atom in atoms], pos=list(positions)
        )
        return xu.materials.Crystal(material, lattice)
    if os.path.splitext(material)[1].lower() == ".cif" or os.path.exists(material):
        if not os.path.exists(material):
            raise MaterialError(f"material CIF file not found: {material}")
        try:
            return xu.materials.Crystal.fromCIF(material)
        except Exception as exc:  # xrayutilities raises many kinds
            raise MaterialError(f"cannot read CIF file {material}: {exc}") from exc
    crystal = getattr(xu.materials, material, None)
    if crystal is None or not hasattr(crystal, "lattice"):
        raise MaterialError(f"unknown material {material!r}: give a CIF path or one of {', '.join(BUILTIN_MATERIALS)}")
    return crystal


@lru_cache(maxsize=64)
def make_reflection(material: str = "YSZ", hkl=(4, 0, 0), wavelength_angstrom: float = 1.5406) -> Reflection:
    """Build a :class:`Reflection` from a built-in material name or a CIF file.

    Parameters
    ----------
    material : str
        A name from :data:`BUILTIN_MATERIALS` or a path to a CIF file.
    hkl : sequence of 3 int
        Miller indices. Reflections forbidden by the structure (|F_H| ~ 0) are refused.
    wavelength_angstrom : float
        X-ray wavelength in angstrom (Cu K-alpha1: 1.5406).

    Raises
    ------
    MaterialError
        Unknown material, unreadable CIF, forbidden reflection, or a wavelength with no Bragg
        angle for this reflection.

    Examples
    --------
    >>> r = make_reflection("YSZ", (4, 0, 0), 1.5406)
    >>> round(r.q_bragg_inv_angstrom, 3)
    4.885

    The constants are kept in memory (an ``lru_cache``); this module reads no environment
    variable and writes no file. The command line, the live service and training read a
    reflection through :func:`xrd_strain_plugin.reflection_cache.cached_reflection`, which
    keeps built-in materials on disk as :meth:`Reflection.to_dict` (importing xrayutilities
    costs about 1.7 s, most of a CLI call's start-up).
    """
    hkl, wavelength_angstrom = check_reflection_request(hkl, wavelength_angstrom)
    return _compute_reflection(material, hkl, wavelength_angstrom)


def check_reflection_request(hkl, wavelength_angstrom) -> tuple[tuple[int, int, int], float]:
    """``hkl`` as three ints and the wavelength as a float, checked before anything is computed.

    Raises
    ------
    MaterialError
        ``hkl`` is not three integers or all zero; the wavelength is not a positive number.
    """
    hkl = tuple(int(i) for i in hkl)
    if len(hkl) != 3 or hkl == (0, 0, 0):
        raise MaterialError(f"hkl must be three integers, not all zero; got {hkl}")
    wavelength_angstrom = float(wavelength_angstrom)
    if not (wavelength_angstrom > 0 and math.isfinite(wavelength_angstrom)):
        raise MaterialError(f"wavelength_angstrom must be a positive number, got {wavelength_angstrom}")
    return hkl, wavelength_angstrom


def _compute_reflection(material, hkl, wavelength_angstrom) -> "Reflection":
    import xrayutilities as xu

    crystal = _make_crystal(material)
    q_vec = np.asarray(crystal.Q(*hkl), dtype=float)
    q_len = float(np.linalg.norm(q_vec))
    d = 2 * math.pi / q_len
    if wavelength_angstrom >= 2 * d:
        raise MaterialError(
            f"wavelength_angstrom={wavelength_angstrom} has no Bragg angle for reflection {hkl} of "
            f"{material} (needs lambda < 2d = {2 * d:.4f} A)"
        )
    energy_ev = float(xu.lam2en(wavelength_angstrom))
    f0 = _structure_factor(crystal, (0, 0, 0), energy_ev, 0.0)
    fh = _structure_factor(crystal, hkl, energy_ev, q_len)
    fmh = _structure_factor(crystal, tuple(-i for i in hkl), energy_ev, q_len)
    if abs(fh) < 1e-3 * abs(f0):
        raise MaterialError(f"reflection {hkl} of {material} is forbidden (|F_H| = {abs(fh):.3g})")

    strains = np.linspace(*_FH_STRAIN_RANGE, 15)

    def ratio_coeffs(h, f_ref):
        vals = np.array([_structure_factor(crystal, h, energy_ev, q_len / (1 + e)) / f_ref for e in strains])
        re = np.polynomial.polynomial.polyfit(strains, vals.real, _FH_POLY_DEGREE)
        im = np.polynomial.polynomial.polyfit(strains, vals.imag, _FH_POLY_DEGREE)
        return tuple(complex(a, b) for a, b in zip(re, im))

    return Reflection(
        material=str(material),
        hkl=hkl,
        wavelength_angstrom=wavelength_angstrom,
        d_spacing_angstrom=d,
        cell_volume_angstrom3=float(crystal.lattice.UnitCellVolume()),
        f0=f0,
        fh=fh,
        fmh=fmh,
        fh_strain_coeffs=ratio_coeffs(hkl, fh),
        fmh_strain_coeffs=ratio_coeffs(tuple(-i for i in hkl), fmh),
    )


def reflection(material: str = "YSZ", hkl=(4, 0, 0), wavelength_angstrom: float = 1.5406) -> Reflection:
    """Deprecated name of :func:`make_reflection` (it shadowed the ``reflection`` parameter everywhere)."""
    import warnings

    warnings.warn(
        "xrd_strain_plugin.physics.materials.reflection() is now make_reflection()", DeprecationWarning, stacklevel=2
    )
    return make_reflection(material, hkl, wavelength_angstrom)
