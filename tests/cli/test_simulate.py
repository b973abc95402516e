"""``xrd-strain simulate`` end to end: the real command in a subprocess, real files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xrd_strain_plugin import io
from xrd_strain_plugin.cli import main

ROOT = Path(__file__).resolve().parents[2]
CIF = ROOT / ".." / "shared" / "data" / "ZrO2.cif"
TWO_THETA_BRAGG_YSZ_400 = 73.578  # Bragg's law, a = 5.145 A, lambda = 1.5406 A
SCAN = ["--two-theta-deg", "72.6", "73.9", "0.002"]


def xrd_strain(*args, cwd):
    """Run the installed command line (``python -m`` works without the entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "xrd_strain_plugin.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def profile_csv(tmp_path):
    return io.write_profile(tmp_path / "PROFILE.csv", [0, 60, 150, 300], [0.3, 0.8, 0.4, 0.0], [0.9, 0.7, 0.85, 1.0])


def test_simulate_writes_curve_and_figure(tmp_path, profile_csv):
    out, figure = tmp_path / "res" / "CURVE.csv", tmp_path / "fig.png"
    result = xrd_strain(
        "simulate",
        "--material",
        "YSZ",
        "--hkl",
        4,
        0,
        0,
        "--wavelength-angstrom",
        1.5406,
        *SCAN,
        "--profile",
        profile_csv,
        "--resolution-fwhm-deg",
        0.01,
        "--out",
        out,
        "--lamellae",
        200,
        "--bragg",
        "exact",
        "--plot",
        figure,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines()[0] == "two_theta_deg,intensity"
    two_theta, intensity = io.read_curve(out)
    assert two_theta.size == 651
    np.testing.assert_allclose(two_theta[[0, -1]], [72.6, 73.9])
    # The substrate peak sits at the Bragg angle (plus a refraction shift of a few mdeg).
    assert two_theta[np.argmax(intensity)] == pytest.approx(TWO_THETA_BRAGG_YSZ_400, abs=0.01)
    assert intensity.max() < 1.0  # a reflectivity, not counts
    # The strained layer (0.8 % at most) scatters on the low-angle side, above the tails:
    # e = 0.8 % puts its peak near 73.578 - 2 tan(theta_B) e (rad) = 72.9 deg.
    layer = (two_theta > 72.95) & (two_theta < 73.45)
    tail = two_theta < 72.7
    assert np.median(intensity[layer]) > 30 * np.median(intensity[tail])
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000


def test_simulate_counts_are_poisson_and_reproducible(tmp_path, profile_csv):
    common = [
        "simulate",
        *SCAN,
        "--profile",
        profile_csv,
        "--resolution-fwhm-deg",
        0.01,
        "--lamellae",
        100,
        "--counts",
        50000,
        "--seed",
        7,
        "--background",
        1.5,
        "--material",
        CIF,
    ]
    first = xrd_strain(*common, "--out", tmp_path / "a.csv", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = xrd_strain(*common, "--out", tmp_path / "b.csv", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    _, counts_a = io.read_curve(tmp_path / "a.csv")
    _, counts_b = io.read_curve(tmp_path / "b.csv")
    np.testing.assert_array_equal(counts_a, counts_b)
    np.testing.assert_array_equal(counts_a, np.round(counts_a))  # whole counts
    assert 49000 < counts_a.max() < 51000  # Poisson around MAX (sigma ~ 224)


def test_bad_input_exits_2_with_a_one_line_message(tmp_path):
    result = xrd_strain(
        "simulate",
        *SCAN,
        "--profile",
        tmp_path / "missing.csv",
        "--resolution-fwhm-deg",
        0.01,
        "--out",
        tmp_path / "c.csv",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("xrd-strain simulate: error: --profile:")
    assert "missing.csv" in result.stderr
    assert not (tmp_path / "c.csv").exists()


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "option", "message"),
    [
        ({"profile": "depth_nm,strain_percent,debye_waller\n0,1,0.9\n"}, "--profile", "thickness"),
        ({"profile": "depth_nm,strain_percent,debye_waller\n0,1,0.9\n-100,0,1\n"}, "--profile", "strictly increasing"),
        (
            {"profile": "depth_nm,strain_percent,debye_waller\n0,1,0.9\n50,1,1\n50,0,1\n"},
            "--profile",
            "strictly increasing",
        ),
        ({"profile": "depth_nm,strain_percent,debye_waller\n0,nan,0.9\n50,0,1\n"}, "--profile", "NaN"),
        (
            {"profile": "depth_nm,strain_percent,debye_waller\n0,5,0.9\n100,0,1\n"},
            "--profile",
            "% puts the layer peak at 2theta = 69.5",
        ),
        ({"--wavelength-angstrom": "3.0"}, "--wavelength-angstrom", "no Bragg angle"),
        ({"--material": "Unobtainium"}, "--material", "unknown material"),
        ({"--material": "missing.cif"}, "--material", "not found"),
        ({"--material": "broken.cif"}, "--material", "cannot read CIF"),
        ({"--hkl": ["2", "1", "0"]}, "--hkl", "forbidden"),
        ({"--two-theta-deg": ["73.9", "72.6", "0.002"]}, "--two-theta-deg", "STOP"),
        ({"--two-theta-deg": ["72.6", "73.9", "-0.002"]}, "--two-theta-deg", "STEP must be > 0"),
        ({"--seed": "3"}, "--seed", "only meaningful with --counts"),
    ],
)
def test_bad_input_names_the_parameter(tmp_path, capsys, change, option, message):
    write(tmp_path / "broken.cif", "data_broken\n_cell_length_a oops\n")
    options = {
        "--profile": str(
            write(
                tmp_path / "p.csv", change.pop("profile", "depth_nm,strain_percent,debye_waller\n0,0.5,0.9\n200,0,1\n")
            )
        ),
        "--two-theta-deg": SCAN[1:],
        "--resolution-fwhm-deg": "0.01",
        "--out": str(tmp_path / "c.csv"),
        "--lamellae": "50",
    }
    options.update(
        {name: str(tmp_path / value) if str(value).endswith(".cif") else value for name, value in change.items()}
    )
    argv = ["simulate"]
    for name, value in options.items():
        argv += [name, *value] if isinstance(value, list) else [name, value]
    status = main(argv)
    stderr = capsys.readouterr().err
    assert status == 2
    assert f"error: {option}:" in stderr
    assert message in stderr
    assert not (tmp_path / "c.csv").exists()


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["--resolution-fwhm-deg", "nan"], "argument --resolution-fwhm-deg: must be finite"),
        (["--resolution-fwhm-deg", "0"], "argument --resolution-fwhm-deg: must be > 0"),
        (["--wavelength-angstrom", "-1"], "argument --wavelength-angstrom: must be > 0"),
        (["--lamellae", "0"], "argument --lamellae: must be a positive integer"),
        (["--two-theta-deg", "72", "inf", "0.01"], "argument --two-theta-deg: must be finite"),
        (["--bragg", "approximate"], "argument --bragg: invalid choice"),
    ],
)
def test_option_values_are_checked_by_the_parser(tmp_path, capsys, argv, text):
    base = {
        "--profile": "p.csv",
        "--two-theta-deg": ["72.6", "73.9", "0.002"],
        "--resolution-fwhm-deg": ["0.01"],
        "--out": "c.csv",
    }
    full = ["simulate"] + argv
    for name, value in base.items():
        if name not in argv:
            full += [name, *([value] if isinstance(value, str) else value)]
    with pytest.raises(SystemExit) as stop:
        main(full)
    assert stop.value.code == 2
    assert text in capsys.readouterr().err
