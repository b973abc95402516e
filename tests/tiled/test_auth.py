"""A refused API key is a configuration error, not an outage: it fails at start in one line on
every path, and a refusal later is reported loudly (the results are kept, never dropped)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid

import pytest

from tests.live_support import API_KEY, free_port, synthetic_record
from xrd_strain_plugin.tiled import Spool, SpoolingPublisher, TiledAuthError, TiledResultsWriter
from xrd_strain_plugin.tiled.writer import check_credentials


@pytest.mark.parametrize("key", ["wrong-key", None], ids=["wrong", "missing"])
def test_a_refused_key_fails_at_start_in_one_line(tiled_server, tmp_path, key, tiny_bundle):
    from xrd_strain_plugin.bluesky import LiveInversion

    with pytest.raises(TiledAuthError) as info:
        check_credentials(tiled_server.url, api_key=key)
    assert "\n" not in str(info.value) and "127.0.0.1" in str(info.value)
    with pytest.raises(TiledAuthError):
        LiveInversion.from_uri(tiled_server.url, api_key=key, spool_directory=tmp_path / "spool", bundle=tiny_bundle)
    assert not (tmp_path / "spool").exists()


def test_an_unreachable_tiled_at_start_is_not_an_error():
    assert check_credentials(f"http://127.0.0.1:{free_port()}/api/v1", api_key=API_KEY) is None


def _cli(*args, key):
    env = dict(os.environ, TILED_RETRY_ATTEMPTS="1", TILED_RETRY_TIMEOUT="2")
    env.pop("TILED_API_KEY", None)
    if key:
        env["TILED_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "xrd_strain_plugin.cli", *args], env=env, capture_output=True, text=True, timeout=240
    )


@pytest.mark.parametrize("raw", [False, True], ids=["results-only", "with-raw"])
def test_listen_with_a_wrong_key_exits_at_start_with_one_line(tiled_server, tmp_path, raw):
    args = [
        "listen",
        "--zmq",
        f"127.0.0.1:{free_port()}",
        "--tiled",
        tiled_server.url,
        "--spool",
        str(tmp_path / "spool"),
    ] + (["--raw"] if raw else [])
    done = _cli(*args, key="wrong-key")
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and ("refused" in errors[0] or "API key" in errors[0]), done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_invert_publish_with_a_wrong_key_fails_before_inverting(tiled_server, tmp_path):
    curve = tmp_path / "c.xy"
    curve.write_text("72.0 10\n72.1 20\n")
    done = _cli(
        "invert",
        str(curve),
        "--material",
        "YSZ",
        "--hkl",
        "4",
        "0",
        "0",
        "--wavelength-angstrom",
        "1.5406",
        "--publish",
        tiled_server.url,
        "--out",
        str(tmp_path / "out"),
        key="wrong-key",
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: --api-key:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_key_refused_later_keeps_the_results_and_says_so_loudly(tiled_server, tmp_path, caplog):
    # The key worked at start; Tiled now refuses it (revoked, server reconfigured).
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key="revoked"),
        Spool(tmp_path / "spool"),
        retry_interval_s=0.0,
        auth_retry_interval_s=60.0,
    )
    record = synthetic_record(str(uuid.uuid4()))
    with caplog.at_level(logging.ERROR):
        assert publisher.publish(record) is False
    assert publisher.auth_error and "refused the API key" in publisher.auth_error
    assert any(r.levelno == logging.ERROR and "refused the API key" in r.getMessage() for r in caplog.records)
    assert [r.raw_uid for p in publisher.spool.pending() for r in Spool.load_all(p)] == [record.raw_uid]
    assert publisher.flush() is False  # no hammering: the next try waits auth_retry_interval_s
    publisher._connect = lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key=API_KEY)  # key fixed
    assert publisher.flush(force=True) is True and publisher.auth_error is None
    assert tiled_server.client()["results"][record.raw_uid].metadata["status"] == "ok"
    publisher.spool.close()
