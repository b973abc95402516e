"""Material constants against independent references (xrayutilities' own routines, lattice facts)."""

import dataclasses
import math

import numpy as np
import pytest
import xrayutilities as xu

from xrd_strain_plugin.physics.materials import MaterialError, make_reflection

SHARED = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "data"
EN_CU = xu.lam2en(1.5406)


def test_ysz_400_reciprocal_vector_is_8pi_over_a():
    """Cubic a = 5.145 A: H_400 = 2 pi * 4 / a = 4.885 1/A (the issue's Q_B), d = a/4."""
    r = make_reflection("YSZ", (4, 0, 0), 1.5406)
    assert r.q_bragg_inv_angstrom == pytest.approx(8 * math.pi / 5.145, rel=1e-9)
    assert round(r.q_bragg_inv_angstrom, 3) == 4.885
    assert r.d_spacing_angstrom == pytest.approx(5.145 / 4)
    assert r.cell_volume_angstrom3 == pytest.approx(5.145**3)
    # Bragg's law: the measured substrate peak of the shared YSZ 400 curve is near 73.57 deg
    assert r.two_theta_bragg_deg == pytest.approx(73.578, abs=0.01)


@pytest.mark.parametrize(
    "material,hkl",
    [
        (str(SHARED / "ZrO2.cif"), (4, 0, 0)),
        ("Si", (0, 0, 4)),
        ("GaN", (0, 0, 2)),
        (str(SHARED / "MgO.cif"), (2, 0, 0)),
    ],
)
def test_structure_factors_match_xrayutilities(material, hkl):
    """F_0, F_H, F_-H equal xrayutilities' StructureFactor (its own implementation) incl. anomalous terms."""
    r = make_reflection(material, hkl, 1.5406)
    crystal = xu.materials.Crystal.fromCIF(material) if material.endswith(".cif") else getattr(xu.materials, material)
    minus = tuple(-i for i in hkl)
    # xrayutilities sums exp(-i q.r): its F(H) is our F(-H), exactly (complex, anomalous part included)
    assert r.fh == pytest.approx(crystal.StructureFactor(crystal.Q(*minus), EN_CU), rel=1e-6)
    assert r.fmh == pytest.approx(crystal.StructureFactor(crystal.Q(*hkl), EN_CU), rel=1e-6)
    f0_xu = crystal.StructureFactor((0, 0, 0), EN_CU)
    assert r.f0 == pytest.approx(f0_xu, rel=1e-6)
    # chi_0 is the complex conjugate of xrayutilities' chi0 (their Im chi_0 > 0)
    assert r.chi0 == pytest.approx(np.conj(crystal.chi0(EN_CU)), rel=2e-3)
    assert r.chi0.imag < 0 < r.f0.imag


def test_non_centrosymmetric_gan_has_different_fh_and_fmh():
    """Friedel's law breaks with anomalous dispersion in a polar crystal: F_H != F_-H* ."""
    r = make_reflection("GaN", (0, 0, 2), 1.5406)
    assert abs(r.fh - r.fmh) > 1e-3 * abs(r.fh)


def test_strain_dependence_of_fh_follows_form_factors():
    """F_H at H/(1+e): recomputed directly from the atomic form factors at the strained |H|."""
    r = make_reflection("YSZ", (4, 0, 0), 1.5406)
    zr, o = xu.materials.elements.Zr, xu.materials.elements.O
    for e in (-0.02, 0.03, 0.08, 0.2):
        q = r.q_bragg_inv_angstrom / (1 + e)
        f = lambda a: a.f0(q) + a.f1(EN_CU) + 1j * a.f2(EN_CU)
        direct = 4 * f(zr) + 8 * f(o)  # fluorite 400: all atoms in phase
        poly = np.polynomial.polynomial.polyval(e, r.fh_strain_coeffs) * r.fh
        assert poly == pytest.approx(direct, rel=2e-4)


def test_darwin_width_and_refraction_shift_of_ysz_400():
    """The issue quotes an intrinsic substrate peak about 0.002 deg wide for YSZ 400 (theta)."""
    r = make_reflection()
    assert math.degrees(r.darwin_width_symmetric()) == pytest.approx(0.00225, abs=0.0002)
    assert r.refraction_shift_symmetric() > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(material="Unobtainium"), "unknown material"),
        (dict(material="YSZ", hkl=(1, 0, 0)), "forbidden"),
        (dict(material="YSZ", hkl=(0, 0, 0)), "hkl"),
        (dict(material="YSZ", wavelength_angstrom=3.0), "no Bragg angle"),
        (dict(material="YSZ", wavelength_angstrom=-1.0), "wavelength"),
        (dict(material="/nonexistent/x.cif"), "not found"),
    ],
)
def test_bad_material_input_names_the_problem(kwargs, match):
    with pytest.raises(MaterialError, match=match):
        make_reflection(**kwargs)


def test_unreadable_cif_is_reported(tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a not-a-number\nloop_\n_atom_site_label\n")
    with pytest.raises(MaterialError, match="CIF"):
        make_reflection(str(bad), (4, 0, 0), 1.5406)


def test_reflection_is_frozen():
    r = make_reflection()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.hkl = (2, 0, 0)


def test_the_old_name_still_answers_and_warns():
    from xrd_strain_plugin.physics import materials

    with pytest.warns(DeprecationWarning, match="make_reflection"):
        old = materials.reflection("YSZ", (4, 0, 0), 1.5406)
    assert old == make_reflection("YSZ", (4, 0, 0), 1.5406)
