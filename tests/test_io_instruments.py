"""Diffractometer files (.xrdml, .ras) read through xrayutilities give the curve they hold."""

from pathlib import Path

import numpy as np
import pytest

from xrd_strain_plugin import io
from xrd_strain_plugin.io import FileFormatError

MEASURED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ysz_400_irradiated.xy"


def xrdml(two_theta, counts, *, count_time=2.0, axis="2Theta"):
    """A PANalytical XRDML 1.5 file of a continuous 2theta-omega scan (intensities are counts)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5" status="Completed">
 <xrdMeasurement measurementType="Scan" status="Completed">
  <scan appendNumber="0" mode="Continuous" scanAxis="Gonio" status="Completed">
   <dataPoints>
    <positions axis="{axis}" unit="deg"><startPosition>{float(two_theta[0])!r}</startPosition>
     <endPosition>{float(two_theta[-1])!r}</endPosition></positions>
    <positions axis="Omega" unit="deg"><startPosition>{float(two_theta[0]) / 2!r}</startPosition>
     <endPosition>{float(two_theta[-1]) / 2!r}</endPosition></positions>
    <commonCountingTime unit="seconds">{count_time}</commonCountingTime>
    <intensities unit="counts">{" ".join(repr(float(c)) for c in counts)}</intensities>
   </dataPoints>
  </scan>
 </xrdMeasurement>
</xrdMeasurements>
"""


def ras(two_theta, counts, *, attenuator=1.0, axis="TwoThetaOmega"):
    """A Rigaku RAS file (one scan; columns angle, counts, attenuator factor)."""
    lines = [
        "*RAS_DATA_START",
        "*RAS_HEADER_START",
        f'*MEAS_SCAN_AXIS_X_INTERNAL "{axis}"',
        f'*MEAS_DATA_COUNT "{len(two_theta)}"',
        '*MEAS_SCAN_STEP "0.002"',
        "*RAS_HEADER_END",
        "*RAS_INT_START",
    ]
    lines += [f"{a:.4f} {c:.6g} {attenuator:.3f}" for a, c in zip(two_theta, counts)]
    return "\r\n".join(lines + ["*RAS_INT_END", "*RAS_DATA_END"]) + "\r\n"


def test_an_xrdml_and_a_ras_file_of_the_measured_curve_read_as_the_xy_file(tmp_path):
    two_theta, counts = io.read_curve(MEASURED)
    (tmp_path / "ysz.xrdml").write_text(xrdml(two_theta, counts, count_time=2.0))
    got_tt, got_counts = io.read_curve(tmp_path / "ysz.xrdml")
    np.testing.assert_allclose(got_tt, two_theta, atol=1e-9)  # equally spaced from start to end
    np.testing.assert_allclose(got_counts, counts, rtol=1e-12)  # the counts, not xrayutilities rate
    (tmp_path / "ysz.ras").write_text(ras(two_theta, counts / 4.0, attenuator=4.0))
    got_tt, got_counts = io.read_curve(tmp_path / "ysz.ras")
    np.testing.assert_allclose(got_tt, two_theta, atol=5e-5)
    np.testing.assert_allclose(got_counts, counts, rtol=1e-5)


def test_invert_takes_an_xrdml_file(tmp_path, capsys):
    from xrd_strain_plugin import cli

    two_theta, counts = io.read_curve(MEASURED)
    (tmp_path / "ysz.xrdml").write_text(xrdml(two_theta, counts, count_time=1.0))
    rc = cli.main(
        [
            "invert",
            str(tmp_path / "ysz.xrdml"),
            "--material",
            "YSZ",
            "--hkl",
            "4",
            "0",
            "0",
            "--wavelength-angstrom",
            "1.5406",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert any((tmp_path / "out").iterdir())


def test_files_that_are_not_what_their_name_says_get_a_clear_error(tmp_path):
    bad = tmp_path / "bad.xrdml"
    bad.write_text("<not-xml")
    with pytest.raises(FileFormatError, match="bad.xrdml: not a readable XRDML file"):
        io.read_curve(bad)
    omega = tmp_path / "omega.xrdml"
    omega.write_text(xrdml(np.array([30.0, 31.0, 32.0]), [1, 2, 3], axis="Chi"))
    with pytest.raises(FileFormatError, match="no 2Theta positions"):
        io.read_curve(omega)
    rocking = tmp_path / "phi.ras"
    rocking.write_text(ras(np.array([1.0, 2.0, 3.0]), [1, 2, 3], axis="Phi"))
    with pytest.raises(FileFormatError, match="'Phi', not a 2-theta axis"):
        io.read_curve(rocking)
    with pytest.raises(FileNotFoundError):
        io.read_curve(tmp_path / "missing.ras")
