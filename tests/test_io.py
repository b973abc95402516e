"""Plain-text files: measured curves, PROFILE.csv, CURVE.csv (xrd_strain_plugin.io)."""

from pathlib import Path

import numpy as np
import pytest

from xrd_strain_plugin import io
from xrd_strain_plugin.io import FileFormatError

MEASURED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ysz_400_irradiated.xy"


def test_reads_the_measured_ysz_curve():
    """The RaDMaX YSZ 400 file: 501 points, 72.788-73.788 deg in 0.002 deg steps."""
    two_theta, intensity = io.read_curve(MEASURED)
    assert two_theta.shape == intensity.shape == (501,)
    assert two_theta[0] == pytest.approx(72.788) and two_theta[-1] == pytest.approx(73.788)
    np.testing.assert_allclose(np.diff(two_theta), 0.002, atol=1e-9)
    # The substrate peak is the sharp maximum near 73.57 deg.
    assert two_theta[np.argmax(intensity)] == pytest.approx(73.57, abs=0.01)
    assert intensity.min() == pytest.approx(0.00646, rel=1e-3)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.xy", "# comment\n72.0 1.5\n72.1 2.5\n72.2 3.5\n"),
        ("b.dat", "2theta\tintensity\n72.0\t1.5\n72.1\t2.5\n\n72.2\t3.5\n"),
        ("c.csv", "two_theta_deg,intensity\n72.0,1.5\n72.1,2.5\n72.2,3.5\n"),
        ("d.txt", "Sample: YSZ\nangle;counts\n72,0;1,5\n72,1;2,5\n72,2;3,5\n"),
        ("e.csv", "72.0, 1.5, 0.1\n72.1, 2.5, 0.1 # trailing comment\n72.2, 3.5, 0.1\n"),
        ("f.xy", "\ufeff72.0 1.5e0\n72.1 2.5\n72.2 35e-1\n"),
    ],
)
def test_reads_common_two_column_layouts(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    two_theta, intensity = io.read_curve(path)
    np.testing.assert_allclose(two_theta, [72.0, 72.1, 72.2])
    np.testing.assert_allclose(intensity, [1.5, 2.5, 3.5])


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("# only comments\nangle intensity\n", FileFormatError, "no numeric rows"),
        ("72.0\n72.1\n", FileFormatError, r"line 1: found 1 column\(s\), need 2"),
        ("72.0 1\n72.1 x\n", FileFormatError, "line 2: not numeric"),
    ],
)
def test_curve_errors_are_clear(tmp_path, text, error, message):
    path = tmp_path / "bad.xy"
    path.write_text(text)
    with pytest.raises(error, match=message):
        io.read_curve(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.xy: no such file"):
        io.read_curve(tmp_path / "nope.xy")


def test_curve_csv_round_trip_with_header(tmp_path):
    two_theta = np.linspace(72.5, 74.0, 751)
    intensity = np.exp(-(((two_theta - 73.5) / 0.05) ** 2)) + 1e-7
    path = io.write_curve(tmp_path / "out" / "CURVE.csv", two_theta, intensity)
    assert path.read_text().splitlines()[0] == "two_theta_deg,intensity"
    back_two_theta, back_intensity = io.read_curve(path)
    np.testing.assert_allclose(back_two_theta, two_theta, rtol=1e-10)
    np.testing.assert_allclose(back_intensity, intensity, rtol=1e-9)


def test_profile_csv_round_trip(tmp_path):
    path = io.write_profile(tmp_path / "PROFILE.csv", [0, 50, 200], [1.5, 0.8, 0.0], [0.6, 0.9, 1.0])
    assert path.read_text().splitlines()[0] == "depth_nm,strain_percent,debye_waller"
    table = io.read_profile(path)
    np.testing.assert_array_equal(table.depth_nm, [0, 50, 200])
    np.testing.assert_array_equal(table.strain_percent, [1.5, 0.8, 0.0])
    np.testing.assert_array_equal(table.debye_waller, [0.6, 0.9, 1.0])


def test_profile_columns_may_come_in_any_order(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("# my profile\nstrain_percent, debye_waller, depth_nm\n2, 0.5, 0\n0, 1, 300\n")
    table = io.read_profile(path)
    np.testing.assert_array_equal(table.depth_nm, [0, 300])
    np.testing.assert_array_equal(table.strain_percent, [2, 0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("depth_nm,strain_percent\n0,1\n100,0\n", "missing debye_waller"),
        ("0,1,1\n100,0,1\n", "no header"),
        ("depth_nm,strain_percent,debye_waller\n0,1\n", r"found 2 column\(s\), need 3"),
        ("depth_nm,strain_percent,debye_waller\n", "no numeric rows"),
    ],
)
def test_profile_errors_are_clear(tmp_path, text, message):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=message):
        io.read_profile(path)


def test_writing_unequal_columns_fails(tmp_path):
    with pytest.raises(ValueError, match="equal lengths"):
        io.write_curve(tmp_path / "c.csv", [1, 2, 3], [1, 2])
