"""Inversion of the real YSZ 400 curve with the shipped model, in process and through the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xrd_strain_plugin.inference import BundleMismatchError, Inverter, default_bundle_path
from xrd_strain_plugin.io import read_curve
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.physics.qspace import CurveError

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / ".." / "shared" / "data" / "ysz_400_irradiated.xy"
YSZ_400 = ("YSZ", (4, 0, 0), 1.5406)


@pytest.fixture(scope="module")
def inverter():
    return Inverter(default_bundle_path())


@pytest.fixture(scope="module")
def result(inverter):
    two_theta, intensity = read_curve(REAL)
    return inverter.invert(two_theta, intensity, make_reflection(*YSZ_400))


def test_shipped_model_answers_on_real_data(result, inverter):
    card = inverter.card
    assert result.model_id == card.model_id and result.model_sha256 == card.weights_sha256
    assert result.refined is False
    # Profile table from the surface (0) to the interface, where the substrate takes over.
    assert result.depth_nm[0] == 0.0 and result.depth_nm[-1] == pytest.approx(result.thickness_nm)
    assert np.all(np.diff(result.depth_nm) > 0)
    assert result.strain_percent[-1] == pytest.approx(0.0, abs=1e-9)
    assert result.debye_waller[-1] == pytest.approx(1.0)
    assert np.all((result.debye_waller > 0) & (result.debye_waller <= 1))
    assert result.strain_max_percent == pytest.approx(result.strain_percent.max())
    # The layer peak of this sample lies at ~0.5-1 % strain, inside CNN2's range.
    assert 0.2 < result.strain_max_percent < 2.0
    assert 50 < result.thickness_nm < 1000
    # The curve computed from the answer is on the measured angles and close in log10.
    assert result.intensity_model.shape == result.two_theta_deg.shape == (501,)
    assert np.all(result.intensity_model > 0)
    assert 0 < result.sigma_i < 0.6
    assert result.elapsed_s < 5.0


def test_mismatched_reflection_and_bad_curve_are_refused(inverter):
    two_theta, intensity = read_curve(REAL)
    with pytest.raises(BundleMismatchError, match="wavelength"):
        inverter.invert(two_theta, intensity, make_reflection("YSZ", (4, 0, 0), 1.7890))
    shuffled = two_theta.copy()
    shuffled[[10, 11]] = shuffled[[11, 10]]
    with pytest.raises(CurveError, match="not sorted"):
        inverter.invert(shuffled, intensity, make_reflection(*YSZ_400))
    # the Bragg peak of the stated reflection must be in the scan (2theta shifted by 10 degrees)
    with pytest.raises(CurveError, match="does not contain the Bragg peak"):
        inverter.invert(two_theta + 10.0, intensity, make_reflection(*YSZ_400))


def test_descending_scan_and_equivalent_reflection_give_the_same_answer(inverter, result):
    """A descending scan is the same measurement; 004 of a cubic crystal is the same reflection as 400."""
    two_theta, intensity = read_curve(REAL)
    down = inverter.invert(two_theta[::-1], intensity[::-1], make_reflection("YSZ", (0, 0, 4), 1.5406))
    np.testing.assert_allclose(down.two_theta_deg, result.two_theta_deg)
    np.testing.assert_allclose(down.strain_percent, result.strain_percent, rtol=1e-6, atol=1e-9)
    assert down.sigma_i == pytest.approx(result.sigma_i, rel=1e-6)
    assert down.transfer == {}


def test_other_crystal_is_refused_without_transfer_and_mapped_with_it(inverter):
    """SiC-3C 400 at 1.5498 A: the YSZ network's answer is mapped (thickness by Q_B ratio) as a start."""
    sic = make_reflection("SiC-3C", (4, 0, 0), 1.5498)
    two_theta = np.linspace(sic.two_theta_bragg_deg - 1.2, sic.two_theta_bragg_deg + 0.3, 400)
    from xrd_strain_plugin.physics.instrument import simulate_scan

    curve = (
        simulate_scan(two_theta, np.full(50, 0.006), np.full(50, 0.8), 150.0, sic, resolution_fwhm_deg=0.02)[0] * 1e5
        + 1.0
    )
    with pytest.raises(BundleMismatchError, match="--refine"):
        inverter.invert(two_theta, curve, sic)
    mapped = inverter.invert(two_theta, curve, sic, transfer=True)
    ysz = make_reflection(*YSZ_400)
    assert mapped.transfer["thickness_factor"] == pytest.approx(ysz.q_bragg_inv_angstrom / sic.q_bragg_inv_angstrom)
    assert mapped.material == "SiC-3C" and np.all(np.isfinite(mapped.intensity_model))


def _invert_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "xrd_strain_plugin.cli", "invert", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=False,
    )


def test_cli_inverts_good_files_and_reports_bad_ones(tmp_path):
    good = tmp_path / "sample A.xy"
    good.write_bytes(REAL.read_bytes())
    bad = tmp_path / "broken.dat"
    bad.write_text("2theta intensity\n73.0 abc\n")
    out = tmp_path / "out"
    proc = _invert_cli(
        good, bad, "--material", "YSZ", "--hkl", 4, 0, 0, "--wavelength-angstrom", 1.5406, "--out", out, cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    assert "broken.dat" in proc.stderr and "1 of 2 file(s) failed" in proc.stderr
    target = out / "sample A"
    summary = json.loads((target / "result.json").read_text())
    for key in (
        "sigma_i",
        "strain_max_percent",
        "depth_of_max_nm",
        "thickness_nm",
        "dw_min",
        "fwhm_deg",
        "refined",
        "elapsed_s",
        "model",
        "inputs",
    ):
        assert key in summary
    assert summary["refined"] is False and summary["model"]["sha256"]
    assert summary["inputs"]["hkl"] == [4, 0, 0]
    profile = (target / "profile.csv").read_text().splitlines()
    assert profile[0] == "depth_nm,strain_percent,debye_waller" and len(profile) > 50
    curve = np.loadtxt(target / "curve.csv", delimiter=",", skiprows=1)
    assert (target / "curve.csv").read_text().startswith("two_theta_deg,intensity_measured,intensity_model")
    np.testing.assert_allclose(curve[:, 1], read_curve(REAL)[1])
    assert (target / "fit.png").stat().st_size > 10_000
    assert not (out / "broken").exists()


def test_cli_no_plot_and_bad_options(tmp_path):
    proc = _invert_cli(
        REAL,
        "--material",
        "YSZ",
        "--hkl",
        4,
        0,
        0,
        "--wavelength-angstrom",
        1.5406,
        "--out",
        tmp_path / "o",
        "--no-plot",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "ysz_400_irradiated" / "result.json").is_file()
    assert not (tmp_path / "o" / "ysz_400_irradiated" / "fit.png").exists()
    proc = _invert_cli(
        REAL,
        "--material",
        "YSZ",
        "--hkl",
        4,
        0,
        0,
        "--wavelength-angstrom",
        1.5406,
        "--out",
        tmp_path / "o",
        "--model",
        tmp_path,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "--model" in proc.stderr and "card.json" in proc.stderr
