"""``xrd-strain results`` against a real Tiled server."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.live_support import API_KEY, synthetic_record
from xrd_strain_plugin.cli import main
from xrd_strain_plugin.tiled import TiledResultsWriter


def test_results_lists_matching_results_and_shows_one_as_json(tiled_server, capsys, monkeypatch):
    writer = TiledResultsWriter.from_uri(tiled_server.url, api_key=API_KEY)
    tag = uuid.uuid4().hex[:8]
    records = [synthetic_record(str(uuid.uuid4()), e_max=e, sample=f"cli-{tag}") for e in (0.5, 1.5, 3.0)]
    for r in records:
        writer.write(r)
    monkeypatch.setenv("TILED_API_KEY", API_KEY)

    assert main(["results", "--tiled", tiled_server.url, "--sample", f"cli-{tag}", "--emax-min", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["strain_max_percent"] for r in rows) == [1.5, 3.0]

    assert main(["results", "--tiled", tiled_server.url, "--sample", f"cli-{tag}"]) == 0
    table = capsys.readouterr().out
    assert "3 result(s)" in table and records[0].raw_uid[:8] in table

    assert main(["results", "--tiled", tiled_server.url, "--show", records[1].raw_uid, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["metadata"]["strain_max_percent"] == 1.5
    assert shown["arrays"]["strain_percent"] == list(records[1].arrays["strain_percent"])


def test_results_names_a_missing_result_and_a_missing_key(tiled_server, capsys, monkeypatch):
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    assert main(["results", "--tiled", tiled_server.url]) == 2
    assert "--tiled: cannot open" in capsys.readouterr().err
    assert main(["results", "--tiled", tiled_server.url, "--api-key", API_KEY, "--show", "no-such-uid"]) == 2
    assert "--show: no result 'no-such-uid'" in capsys.readouterr().err


def test_offline_inversions_publish_in_the_live_layout_once_per_file(tiled_server, inverter, tmp_path):
    import numpy as np

    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.cli.demo import SAMPLES
    from xrd_strain_plugin.io import read_curve
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.tiled import find_results, read_result
    from xrd_strain_plugin.tiled.records import offline_uid, publish_offline

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    diff = SimulatedDiffractometer(reflection=refl, sample=SAMPLES[0].simulated(), rng=np.random.default_rng(2))
    two_theta = np.linspace(72.4, 74.0, 161)
    path = tmp_path / f"offline-{uuid.uuid4().hex[:6]}.xy"
    np.savetxt(path, np.c_[two_theta, diff.counts(two_theta)], header="two_theta intensity")
    angles, counts = read_curve(path)
    result = inverter.invert(angles, counts, refl)

    for _ in range(2):  # publishing the same file again must not duplicate it
        assert publish_offline(
            [(result, path)], tiled_server.url, api_key=API_KEY, spool_directory=tmp_path / "spool"
        ) == {"written": 1, "spooled": 0}
    hits = find_results(tiled_server.client(), sample=path.stem)
    assert list(hits) == [(offline_uid(path),)]
    got = read_result(hits[(offline_uid(path),)])
    assert got["metadata"]["source"]["file"] == path.name and got["metadata"]["raw_path"] is None
    np.testing.assert_allclose(got["arrays"]["intensity_measured"], counts)
    assert got["metadata"]["sigma_i"] == result.sigma_i


def test_invert_publish_stores_results_in_tiled_and_spools_when_it_is_away(
    tiled_server, tiny_bundle, tmp_path, capsys, monkeypatch, failing_http_url
):
    """`xrd-strain invert --publish URL`: results land in Tiled in the live layout; with Tiled away they
    are spooled and written by the next publish that uses the same spool."""
    import numpy as np

    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.cli.demo import SAMPLES
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.tiled import find_results, read_result
    from xrd_strain_plugin.tiled.records import offline_uid

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    diff = SimulatedDiffractometer(reflection=refl, sample=SAMPLES[0].simulated(), rng=np.random.default_rng(5))
    two_theta = np.linspace(72.4, 74.0, 161)
    path = tmp_path / f"pub-{uuid.uuid4().hex[:6]}.xy"
    np.savetxt(path, np.c_[two_theta, diff.counts(two_theta)], header="two_theta intensity")
    monkeypatch.setenv("TILED_API_KEY", API_KEY)
    common = [
        str(path),
        "--material",
        "YSZ",
        "--hkl",
        "4",
        "0",
        "0",
        "--wavelength-angstrom",
        "1.5406",
        "--model",
        str(tiny_bundle),
        "--no-plot",
        "--spool",
        str(tmp_path / "spool"),
    ]

    assert main(["invert", *common, "--out", str(tmp_path / "a"), "--publish", failing_http_url]) == 0
    assert "1 spooled" in capsys.readouterr().out
    assert main(["invert", *common, "--out", str(tmp_path / "b"), "--publish", tiled_server.url]) == 0
    assert "published to" in capsys.readouterr().out
    hits = find_results(tiled_server.client(), sample=path.stem)
    assert list(hits) == [(offline_uid(path),)]  # spooled once, published once: one node
    stored = read_result(hits[(offline_uid(path),)])
    saved = json.loads((tmp_path / "b" / path.stem / "result.json").read_text())
    assert stored["metadata"]["strain_max_percent"] == saved["strain_max_percent"]
    assert len(stored["arrays"]["strain_percent"]) > 10


@pytest.mark.parametrize("source", ["--zmq", "--journal"])
@pytest.mark.parametrize("raw", [False, True])
def test_listen_with_a_wrong_or_missing_key_fails_at_start_with_one_line(
    tiled_server, tmp_path, capsys, monkeypatch, source, raw, tiny_bundle
):
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    common = [
        source,
        "127.0.0.1:9",
        "--tiled",
        tiled_server.url,
        "--spool",
        str(tmp_path / "spool"),
        "--model",
        str(tiny_bundle),
    ] + (["--raw"] if raw else [])
    for key in (["--api-key", "wrong-key"], []):
        t0 = time.monotonic()
        assert main(["listen", *common, *key]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("xrd-strain listen: error: --"), err
        assert ("--api-key" in err[0]) or ("--tiled: cannot open" in err[0] and raw), err
        assert time.monotonic() - t0 < 30  # at start, not after retries
