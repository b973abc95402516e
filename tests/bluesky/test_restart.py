"""Nothing missed across listener restarts, with real processes.

`xrd-strain listen` runs as a real subprocess (killed with SIGKILL in the middle of a series of
scans, then started again), behind a real `xrd-strain journal serve` process or a real
`bluesky-0MQ-proxy` process, against a real Tiled server on loopback; a real RunEngine scans the
simulated diffractometer in this process. Afterwards every scan's result is read back and
counted per raw uid: exactly one each, and the stopped scan is marked partial.

The journal test (deploy/'s setup) runs in the default suite; the 0MQ + catch-up one is marked
slow (catch-up's logic is tested in process by tests/bluesky/test_catchup.py), to keep the default
suite's cost down.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from bluesky.utils import RunEngineInterrupted

from tests.live_support import API_KEY, TiledProcess, free_port
from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer, SimulatedSample
from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.tiled import find_results, read_result

REFL = make_reflection("YSZ", (4, 0, 0), 1.5406)
N_POINTS = 61
BIN = pathlib.Path(sys.executable).parent


@pytest.fixture(scope="module")
def diffractometer():
    strain = profiles.strain_from_weights(np.exp(-0.5 * ((np.arange(10) - 2) / 2.0) ** 2), 0.02, 60)[0]
    dw = np.atleast_2d(profiles.dw_coupled(strain, 0.02, 0.3))[0]
    s = SimulatedSample(name="R", strain=strain, debye_waller=dw, thickness_nm=250.0)
    return SimulatedDiffractometer(reflection=REFL, sample=s, rng=np.random.default_rng(7))


class Listener:
    """`xrd-strain listen` as a subprocess; ``started`` waits for its start line."""

    def __init__(self, args, log_path):
        env = dict(os.environ, TILED_API_KEY=API_KEY, TF_CPP_MIN_LOG_LEVEL="3")
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [str(BIN / "xrd-strain"), "listen", *args], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )

    def started(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"Ctrl-C to stop" in pathlib.Path(self.log_path).read_bytes():
                return True
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"listener did not start:\n{pathlib.Path(self.log_path).read_text()[-3000:]}")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.log.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return pathlib.Path(self.log_path).read_text()


def service(args, log_path, ready=b"", timeout=60):
    """A helper process (journal server, 0MQ proxy); waits for ``ready`` in its output."""
    log = open(log_path, "wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while ready and ready not in pathlib.Path(log_path).read_bytes():
        assert process.poll() is None and time.monotonic() < deadline, pathlib.Path(log_path).read_text()
        time.sleep(0.05)
    return process


def stop_after(RE, n_events):
    """A callback that pauses the RunEngine (from another thread, as Ctrl-C would) after ``n_events``."""
    seen = {"n": 0}

    def cb(name, doc):
        if name == "event":
            seen["n"] += 1
            if seen["n"] == n_events:
                threading.Thread(target=RE.request_pause).start()

    return cb


def kill_during(RE, listener, n_events):
    """A callback that SIGKILLs the listener in the middle of the current scan."""
    seen = {"n": 0}

    def cb(name, doc):
        if name == "event":
            seen["n"] += 1
            if seen["n"] == n_events:
                listener.process.send_signal(signal.SIGKILL)

    return cb


def series(RE, diff, n, tag):
    lo, hi = diff.scan_range()
    return [RE(scan([diff.detector], diff.motor, lo, hi, N_POINTS), sample=f"{tag}-{i}")[0] for i in range(n)]


def stopped_scan(RE, diff, tag, n_events):
    """A scan stopped with RE.stop() after ``n_events`` points (past the Bragg peak): exit status 'success'."""
    lo, hi = diff.scan_range()
    token = RE.subscribe(stop_after(RE, n_events))
    try:
        with pytest.raises(RunEngineInterrupted):
            RE(scan([diff.detector], diff.motor, lo, hi, N_POINTS), sample=f"{tag}-stopped")
        (uid,) = RE.stop()
    finally:
        RE.unsubscribe(token)
    return uid


def final_counts(out):
    """The listener's closing counts (``xrd-strain listen: stopped; {...}``)."""
    import ast

    line = next(line for line in out.splitlines() if line.startswith("xrd-strain listen: stopped; "))
    return ast.literal_eval(line.split("; ")[1])


def wait_for_results(client, uids, timeout):
    deadline = time.monotonic() + timeout
    missing = list(uids)
    while time.monotonic() < deadline:
        missing = [u for u in missing if not find_results(client, raw_uid=u)]
        if not missing:
            return []
        time.sleep(0.3)
    return missing


def assert_exactly_one_result_each(client, uids, stopped_uid):
    for uid in uids:
        hits = find_results(client, raw_uid=uid)
        assert len(hits) == 1, f"{len(hits)} results for raw run {uid}"
        got = read_result(next(iter(hits.values())))
        md = got["metadata"]
        assert md["raw_uid"] == uid
        if uid == stopped_uid:
            assert md["status"] == "partial", md
            assert md["reason"].startswith("run stopped after ") and md["planned_points"] == N_POINTS
            assert md["n_points"] < N_POINTS and got["arrays"]["intensity_measured"].shape == (md["n_points"],)
        else:
            assert md["status"] == "ok", md
            assert got["arrays"]["intensity_measured"].shape == (N_POINTS,)


def assert_raw_runs_complete(client, uids):
    """The raw run each result links to exists in Tiled, complete: its stop, and every event."""
    for uid in uids:
        run = client["raw"][uid]
        stop = run.metadata["stop"]
        assert stop is not None and stop["exit_status"] == "success"
        n = stop["num_events"]["primary"]
        assert len(run["primary"]["det"].read()) == n


def test_a_journal_listener_killed_mid_series_resumes_and_every_scan_gets_its_raw_run_and_one_result(
    tmp_path, tiled_server, tiny_bundle, diffractometer
):
    """--journal --raw (deploy/'s setup): the listener is the raw writer, the journal is the transport."""
    from xrd_strain_plugin.bluesky.journal import JournalWriter

    journal_dir, spool = tmp_path / "journal", tmp_path / "spool"
    journal = JournalWriter(journal_dir)
    port = free_port()
    server = service(
        [str(BIN / "xrd-strain"), "journal", "serve", str(journal_dir), "--port", str(port), "--bind", "127.0.0.1"],
        tmp_path / "journal.log",
        ready=b"serving",
    )
    args = [
        "--journal",
        f"127.0.0.1:{port}",
        "--tiled",
        tiled_server.url,
        "--spool",
        str(spool),
        "--raw",
        "--model",
        str(tiny_bundle),
    ]
    RE = RunEngine({})
    RE.subscribe(journal)
    client = tiled_server.client()
    listener = Listener(args, tmp_path / "listen.log")
    try:
        listener.started()
        uids = series(RE, diffractometer, 2, "j-before")
        token = RE.subscribe(kill_during(RE, listener, N_POINTS // 2))
        uids += series(RE, diffractometer, 1, "j-killed")  # the listener dies in the middle of this scan
        RE.unsubscribe(token)
        listener.process.wait(30)
        uids += series(RE, diffractometer, 2, "j-down")  # made while no listener runs
        stopped = stopped_scan(RE, diffractometer, "j-down", N_POINTS - 10)
        uids.append(stopped)
        RE(count([diffractometer.detector], 3))  # not a rocking curve: never a result
        listener.log.close()
        finished = {u for u in uids if find_results(client, raw_uid=u)}  # by the listener that died
        assert stopped not in finished and uids[3] not in finished
        listener = Listener(args, tmp_path / "listen.log")
        listener.started()
        uids += series(RE, diffractometer, 2, "j-after")
        assert not wait_for_results(client, uids, 90)
        journal.wait()
        time.sleep(1.0)  # a duplicate would come now, if at all
        out = listener.stop()
        assert_exactly_one_result_each(client, uids, stopped)
        assert_raw_runs_complete(client, uids)
        assert "replaying journal documents" in out
        # Inverted exactly once: the restarted listener inverted every scan the first one had not
        # finished (the killed one, those made while it was down, the stopped one, the two after)
        # and skipped those it had.
        counts = final_counts(out)
        assert counts.get("partial", 0) == 1, counts
        assert counts.get("ok", 0) + counts.get("partial", 0) == len(set(uids) - finished), (counts, len(finished))
        position = int(__import__("json").loads((spool / "journal-position.json").read_text())["next"])
        assert position == journal.next_seq  # everything acknowledged at the end
    finally:
        listener.stop()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        journal.close()


@pytest.mark.slow  # ~55 s at load 9; catch-up itself is covered in the default suite by tests/bluesky/test_catchup.py
def test_a_zmq_listener_killed_mid_series_catches_up_from_tiled_while_new_scans_flow(
    tmp_path, tiny_bundle, diffractometer
):
    """--zmq without --raw: the RunEngine host writes the raw runs; the restarted listener finds
    the runs it missed in Tiled and inverts each once, oldest first, while new scans keep flowing.

    A Tiled server of its own: catch-up would rightly take up other tests' runs without results."""
    from bluesky.callbacks.zmq import Publisher

    from xrd_strain_plugin.bluesky.raw import raw_run_writer

    tiled_server = TiledProcess(tmp_path / "tiled").start()

    in_port, out_port = free_port(), free_port()
    proxy = service([str(BIN / "bluesky-0MQ-proxy"), str(in_port), str(out_port)], tmp_path / "proxy.log")
    spool = tmp_path / "spool"
    args = [
        "--zmq",
        f"127.0.0.1:{out_port}",
        "--tiled",
        tiled_server.url,
        "--spool",
        str(spool),
        "--model",
        str(tiny_bundle),
        "--catch-up-grace-s",
        "1",
        "--catch-up-interval-s",
        "1",
    ]
    client = tiled_server.client()
    raw = raw_run_writer(client)
    publisher = Publisher(f"127.0.0.1:{in_port}")
    RE = RunEngine({})
    RE.subscribe(raw)
    RE.subscribe(publisher)
    listener = Listener(args, tmp_path / "listen.log")
    try:
        listener.started()
        time.sleep(1.0)  # 0MQ slow joiner; a scan missed here would be caught up anyway
        uids = series(RE, diffractometer, 2, "z-before")
        token = RE.subscribe(kill_during(RE, listener, N_POINTS // 2))
        uids += series(RE, diffractometer, 1, "z-killed")
        RE.unsubscribe(token)
        listener.process.wait(30)
        uids += series(RE, diffractometer, 2, "z-down")
        stopped = stopped_scan(RE, diffractometer, "z-down", N_POINTS - 10)
        uids.append(stopped)
        raw.wait()
        listener.log.close()
        listener = Listener(args, tmp_path / "listen.log")
        listener.started()
        time.sleep(1.0)
        uids += series(RE, diffractometer, 2, "z-after")  # new scans while catch-up works
        raw.wait()
        assert not wait_for_results(client, uids, 90)
        time.sleep(2.5)  # two more catch-up passes: a duplicate would come now, if at all
        out = listener.stop()
        assert_exactly_one_result_each(client, uids, stopped)
        caught_up = re.findall(r"catch-up: run (\S+) has no result; inverting it", out)
        assert len(caught_up) == len(set(caught_up)) and set(caught_up) <= set(uids)
        assert set(uids[2:6]) <= set(caught_up)  # the killed scan, the two made while down, the stopped one
        # Inverted exactly once: each run the restarted listener handled, it handled by one path only.
        counts = final_counts(out)
        assert counts.get("ok", 0) + counts.get("partial", 0) == len(set(caught_up) | set(uids[6:])), counts
    finally:
        listener.stop()
        publisher.close()
        raw.close()
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(30)
        tiled_server.stop()
