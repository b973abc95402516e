"""``xrd-strain invert --refine``: the real YSZ curve, another crystal through the YSZ network, refusals."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from xrd_strain_plugin.io import write_curve
from xrd_strain_plugin.physics.instrument import apply_counts, simulate_scan
from xrd_strain_plugin.physics.materials import make_reflection

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / ".." / "shared" / "data" / "ysz_400_irradiated.xy"


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "xrd_strain_plugin.cli", "invert", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=False,
    )


def test_refine_writes_the_refined_answer_beside_the_networks(tmp_path):
    sic = make_reflection("SiC-3C", (4, 0, 0), 1.5498)
    tt = np.arange(sic.two_theta_bragg_deg - 1.6, sic.two_theta_bragg_deg + 0.3, 0.005)
    z = (np.arange(100) + 0.5) / 100
    strain = 0.008 * np.exp(-0.5 * ((z - 0.4) / 0.25) ** 2) * (1 - z)
    dw = np.exp(np.log(0.5) * (strain / strain.max()) ** 2)
    counts = apply_counts(
        simulate_scan(tt, strain, dw, 250.0, sic, resolution_fwhm_deg=0.02),
        scale=1e5,
        background=1.0,
        rng=np.random.default_rng(5),
    )[0]
    sic_file = tmp_path / "sic.xy"
    write_curve(sic_file, tt[::-1], counts[::-1])  # a descending scan, as some diffractometers write it
    real = tmp_path / "ysz.xy"
    real.write_bytes(REAL.read_bytes())

    # another crystal without --refine: refused, and told what to do
    proc = _cli(
        sic_file,
        "--material",
        "SiC-3C",
        "--hkl",
        4,
        0,
        0,
        "--wavelength-angstrom",
        1.5498,
        "--out",
        tmp_path / "no",
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "--refine" in proc.stderr

    proc = _cli(
        real,
        "--material",
        "YSZ",
        "--hkl",
        0,
        0,
        4,
        "--wavelength-angstrom",
        1.5406,
        "--refine",
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    target = tmp_path / "out" / "ysz"
    summary = json.loads((target / "result.json").read_text())
    block = summary["refinement"]
    assert summary["refined"] is True and block["refined"] is True
    assert summary["sigma_i"] == block["sigma_i"] < summary["network"]["sigma_i"]
    assert summary["sigma_i"] < 0.12
    for key in ("path", "sigma_i_start", "n_evaluations", "elapsed_s", "uncertainties", "values", "stages"):
        assert key in block
    assert (target / "profile_network.csv").is_file() and (target / "fit.png").stat().st_size > 10_000
    curve = (target / "curve.csv").read_text().splitlines()
    assert curve[0] == "two_theta_deg,intensity_measured,intensity_model,intensity_start"

    proc = _cli(
        sic_file,
        "--material",
        "SiC-3C",
        "--hkl",
        4,
        0,
        0,
        "--wavelength-angstrom",
        1.5498,
        "--refine",
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "sic" / "result.json").read_text())
    assert summary["network"]["transfer"]["from"].startswith("YSZ")
    # SiC 400 lies at a larger Q than YSZ 400: a fringe period of the YSZ network means a thinner SiC layer
    assert 0.8 < summary["refinement"]["start_transfer"]["thickness_factor"] < 0.9
    assert summary["sigma_i"] < 1.3 * summary["refinement"]["noise_floor_sigma_i"]
    assert abs(summary["strain_max_percent"] - 100 * strain.max()) < 0.1 * 100 * strain.max()
