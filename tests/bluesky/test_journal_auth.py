"""Who may read the journal: loopback by default; other hosts only with CURVE keys (real 0MQ sockets)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.live_support import free_port
from xrd_strain_plugin.bluesky.journal import (
    ClientKeys,
    JournalClient,
    JournalServer,
    JournalUnavailable,
    JournalWriter,
    make_keys,
    serve_in_thread,
)


@pytest.fixture
def journal(tmp_path):
    w = JournalWriter(tmp_path / "journal")
    for i in range(5):
        w("event", {"seq_num": i, "sample": "secret-proposal-sample"})
    w.close()
    return tmp_path / "journal"


@pytest.fixture
def keys(tmp_path):
    make_keys(tmp_path / "keys", "server")
    make_keys(tmp_path / "keys" / "clients", "gpu-listener")
    make_keys(tmp_path / "other", "intruder")  # a valid key pair the server does not know
    return tmp_path / "keys", tmp_path / "other"


def test_a_server_reachable_from_other_hosts_needs_keys(journal, keys):
    for address in ("tcp://0.0.0.0:0", "tcp://*:0", "tcp://10.1.2.3:0"):
        with pytest.raises(ValueError, match="needs CURVE keys"):
            JournalServer(journal, address)
    with pytest.raises(ValueError, match="both"):
        JournalServer(journal, "tcp://127.0.0.1:0", secret_key=keys[0] / "server.key_secret")
    with pytest.raises(ValueError, match="holds no secret key"):
        JournalServer(journal, "tcp://0.0.0.0:0", secret_key=keys[0] / "server.key", client_keys=keys[0] / "clients")
    with pytest.raises(ValueError, match="no client keys"):
        JournalServer(
            journal, "tcp://0.0.0.0:0", secret_key=keys[0] / "server.key_secret", client_keys=keys[1] / "none"
        )


def test_with_keys_only_an_allowed_listener_reads_and_it_acknowledges_under_its_key_name(journal, keys):
    d, other = keys
    port = free_port()
    server, thread = serve_in_thread(
        journal, f"tcp://0.0.0.0:{port}", secret_key=d / "server.key_secret", client_keys=d / "clients"
    )
    address = f"127.0.0.1:{port}"
    try:
        plain = JournalClient(address, timeout_s=1.0)
        with pytest.raises(JournalUnavailable):
            plain.fetch(0, wait_s=0.1)  # no keys: the handshake fails, nothing is served
        plain.close()
        intruder = JournalClient(
            address, timeout_s=1.0, keys=ClientKeys.from_files(d / "server.key", other / "intruder.key_secret")
        )
        with pytest.raises(JournalUnavailable):
            intruder.fetch(0, wait_s=0.1)  # a key the server was not given
        intruder.close()
        allowed = JournalClient(
            address,
            consumer="xrd-strain-listen",
            timeout_s=5.0,
            keys=ClientKeys.from_files(d / "server.key", d / "clients" / "gpu-listener.key_secret"),
        )
        got = allowed.fetch(0, wait_s=0.1, ack=3)
        assert [seq for seq, _, _ in got] == [0, 1, 2, 3, 4] and got[0][2]["sample"] == "secret-proposal-sample"
        allowed.close()
    finally:
        server.stop()
        thread.join(10)
    # The acknowledgement is the key holder's, whatever consumer name the request claimed.
    assert sorted(p.name for p in (journal / "consumers").iterdir()) == ["gpu-listener.json"]
    assert json.loads((journal / "consumers" / "gpu-listener.json").read_text())["acknowledged"] == 3


def test_keys_are_never_overwritten_and_secret_files_are_private(tmp_path):
    public, secret = make_keys(tmp_path, "server")
    assert (secret.stat().st_mode & 0o077) == 0
    with pytest.raises(FileExistsError):
        make_keys(tmp_path, "server")
    with pytest.raises(ValueError, match="letters"):
        make_keys(tmp_path, "../x")


def test_journal_serve_binds_loopback_by_default_and_refuses_other_hosts_without_keys(journal, keys):
    cmd = [sys.executable, "-m", "xrd_strain_plugin.cli", "journal", "serve", str(journal)]
    out = subprocess.run(
        [*cmd, "--bind", "0.0.0.0", "--port", str(free_port())], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "--bind: 0.0.0.0 is reachable from other hosts" in out.stderr
    out = subprocess.run(
        [*cmd, "--secret-key", str(keys[0] / "server.key_secret")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "give both" in out.stderr
    server = subprocess.Popen(
        [
            *cmd,
            "--port",
            str(free_port()),
            "--bind",
            "0.0.0.0",
            "--secret-key",
            str(keys[0] / "server.key_secret"),
            "--client-keys",
            str(keys[0] / "clients"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stderr.readline()
        assert "CURVE keys required (gpu-listener)" in line, line
    finally:
        server.terminate()
        assert server.wait(30) == 0
    made = subprocess.run(
        [sys.executable, "-m", "xrd_strain_plugin.cli", "journal", "keys", str(keys[0]), "--name", "server"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 2 and "exists" in made.stderr
