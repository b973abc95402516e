"""xrd-strain results export --nexus: stored results (and a refinement) as a NeXus file, read back with h5py."""

from __future__ import annotations

import uuid

import h5py
import numpy as np

from tests.live_support import API_KEY, synthetic_record
from tests.tiled.test_refinement import refinement_result
from xrd_strain_plugin import cli
from xrd_strain_plugin.tiled import TiledResultsWriter, claim_refinement, write_refinement


def test_export_writes_one_nxentry_per_result_with_units_and_the_refinement(tiled_server, tmp_path, capsys):
    tag = uuid.uuid4().hex[:8]
    records = [synthetic_record(str(uuid.uuid4()), sample=f"nx-{tag}", e_max=1.0 + i, seed=i) for i in range(2)]
    records.append(synthetic_record(str(uuid.uuid4()), sample=f"nx-{tag}", status="rejected"))
    client = tiled_server.client()
    TiledResultsWriter(client).write_many(records)
    node = client["results"][records[0].raw_uid]
    assert claim_refinement(node, worker="test")
    refined = refinement_result()
    write_refinement(node, refined)
    out = tmp_path / "results.nxs"
    rc = cli.main(
        [
            "results",
            "export",
            "--nexus",
            str(out),
            "--tiled",
            tiled_server.url,
            "--api-key",
            API_KEY,
            "--sample",
            f"nx-{tag}",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "wrote 2 result(s)" in capsys.readouterr().out  # the rejected one has no profile
    with h5py.File(out) as f:
        assert f.attrs["NX_class"] == "NXroot"
        entry = f[f"results_{records[0].raw_uid}"]
        assert entry.attrs["NX_class"] == "NXentry" and entry.attrs["default"] == "profile"
        profile = entry["profile"]
        assert profile.attrs["NX_class"] == "NXdata" and profile.attrs["signal"] == "strain_percent"
        assert list(profile.attrs["axes"]) == ["depth_nm"]
        np.testing.assert_array_equal(profile["strain_percent"][()], records[0].arrays["strain_percent"])
        assert profile["strain_percent"].attrs["units"] == "percent" and profile["depth_nm"].attrs["units"] == "nm"
        assert profile["debye_waller"].attrs["units"] == "dimensionless"
        curve = entry["curve"]
        np.testing.assert_array_equal(curve["intensity_model"][()], records[0].arrays["intensity_model"])
        assert curve["q_inv_angstrom"].attrs["units"] == "1/angstrom"
        np.testing.assert_array_equal(entry["refinement/strain_percent"][()], refined.strain_percent)
        assert entry["sample/name"][()].decode() == f"nx-{tag}"
        assert entry["strain_max_percent"][()] == records[0].metadata["strain_max_percent"]
        assert "refinement" not in f[f"results_{records[1].raw_uid}"]


def test_export_of_nothing_says_so(tiled_server, tmp_path, capsys):
    rc = cli.main(
        [
            "results",
            "export",
            "--nexus",
            str(tmp_path / "x.nxs"),
            "--tiled",
            tiled_server.url,
            "--api-key",
            API_KEY,
            "--sample",
            "no-such-sample",
        ]
    )
    assert rc == 2 and "no result with a profile to export" in capsys.readouterr().err
    assert not (tmp_path / "x.nxs").exists()
    rc = cli.main(
        [
            "results",
            "export",
            "--nexus",
            str(tmp_path / "x.nxs"),
            "--tiled",
            tiled_server.url,
            "--api-key",
            API_KEY,
            "--path",
            "nope",
        ]
    )
    assert rc == 2 and "--path: no result 'nope'" in capsys.readouterr().err
