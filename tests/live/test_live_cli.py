"""``xrd-strain results`` against a real Tiled server."""

from __future__ import annotations

import json
import uuid

from conftest import API_KEY, synthetic_record

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
    assert shown["arrays"]["strain"] == list(records[1].arrays["strain"])


def test_results_names_a_missing_result_and_a_missing_key(tiled_server, capsys, monkeypatch):
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    assert main(["results", "--tiled", tiled_server.url]) == 2
    assert "--tiled: cannot open" in capsys.readouterr().err
    assert main(["results", "--tiled", tiled_server.url, "--api-key", API_KEY, "--show", "no-such-uid"]) == 2
    assert "--show: no result 'no-such-uid'" in capsys.readouterr().err
