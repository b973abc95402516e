"""The document journal: durable, ordered, resumable, never in the RunEngine's way (no model, no Tiled)."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from xrd_strain_plugin.bluesky.journal import (
    JournalClient,
    JournalReader,
    JournalWriter,
    decode,
    encode,
    prune,
    segments,
    serve_in_thread,
)
from xrd_strain_plugin.bluesky.remote import Cursor


def docs(n, start=0):
    return [
        ("event", {"seq_num": i, "data": {"det": np.float64(i), "n": np.int64(i)}}) for i in range(start, start + n)
    ]


def test_lines_round_trip_numpy_values_as_json():
    seq, name, doc = decode(encode(7, "event", {"data": {"x": np.float32(1.5), "a": np.arange(3)}}))
    assert (seq, name, doc) == (7, "event", {"data": {"x": 1.5, "a": [0, 1, 2]}})


def test_sequence_numbers_go_on_across_restarts_and_segments(tmp_path):
    w = JournalWriter(tmp_path, segment_bytes=500)
    for i, (name, doc) in enumerate(docs(30)):
        w(name, doc)
        if i % 5 == 4:
            w.wait()  # several writes, so that segments rotate
    w.close()
    w = JournalWriter(tmp_path, segment_bytes=500)
    assert w.next_seq == 30
    for name, doc in docs(5, 30):
        w(name, doc)
    w.close()
    assert len(segments(tmp_path)) > 2
    reader = JournalReader(tmp_path, stride=4)
    assert reader.refresh() == 35
    lines, nxt = reader.read(0, max_docs=100)
    got = [decode(line) for line in lines.splitlines(keepends=True)]
    assert [g[0] for g in got] == list(range(35)) and nxt == 35
    assert [g[2]["seq_num"] for g in got] == list(range(35))
    lines, nxt = reader.read(17, max_docs=3)
    assert [decode(x)[0] for x in lines.splitlines(keepends=True)] == [17, 18, 19] and nxt == 20


def test_a_line_torn_by_a_crash_is_never_read_and_is_cut_off_by_the_next_writer(tmp_path):
    w = JournalWriter(tmp_path)
    for name, doc in docs(3):
        w(name, doc)
    w.close()
    (path,) = segments(tmp_path)
    with open(path, "ab") as fh:
        fh.write(b'3\tevent\t{"seq_num": 3, "da')  # the writer died mid-line
    reader = JournalReader(tmp_path)
    assert reader.refresh() == 3
    assert len(reader.read(0)[0].splitlines()) == 3
    w = JournalWriter(tmp_path)
    assert w.next_seq == 3
    w("stop", {"uid": "s"})
    w.close()
    reader = JournalReader(tmp_path)
    assert reader.refresh() == 4
    assert [decode(x)[:2] for x in reader.read(0)[0].splitlines(keepends=True)][-1] == (3, "stop")


def test_the_runengine_never_waits_for_the_disk(tmp_path):
    w = JournalWriter(tmp_path)
    release = threading.Event()
    real_write = w._write

    def stuck(items):  # a disk that hangs
        release.wait(10)
        return real_write(items)

    w._write = stuck
    t0 = time.perf_counter()
    for name, doc in docs(2000):
        w(name, doc)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, elapsed  # queue appends only (measured: ~2 ms for 2000 documents)
    assert not w.wait(0.2)
    release.set()
    assert w.wait(10)
    w.close()
    assert JournalReader(tmp_path).refresh() == 2000


def test_documents_are_synced_at_each_stop(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    w = JournalWriter(tmp_path, fsync_interval_s=60.0)
    before = len(synced)
    w("start", {"uid": "r"})
    w.wait()
    time.sleep(0.05)
    assert len(synced) == before  # events wait for the interval or a stop...
    w("stop", {"uid": "s"})
    w.wait()
    deadline = time.monotonic() + 5
    while len(synced) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(synced) > before  # ...a stop is synced at once
    w.close()


def test_a_listener_reads_by_position_long_polls_and_reconnects_after_a_server_restart(tmp_path):
    w = JournalWriter(tmp_path)
    for name, doc in docs(10):
        w(name, doc)
    w.wait()
    server, thread = serve_in_thread(tmp_path)
    client = JournalClient(server.endpoint, consumer="test", timeout_s=1.0)
    assert [d[0] for d in client.fetch(4, max_docs=3)] == [4, 5, 6] and client.head == 10
    threading.Timer(0.3, lambda: w("stop", {"uid": "late"})).start()
    t0 = time.perf_counter()
    got = client.fetch(10, wait_s=5.0, ack=10)
    assert [d[:2] for d in got] == [(10, "stop")] and 0.25 < time.perf_counter() - t0 < 2.0
    consumer = json.loads((tmp_path / "consumers" / "test.json").read_text())
    assert consumer["acknowledged"] == 10
    server.stop()
    thread.join(5)
    with pytest.raises(ConnectionError):
        client.fetch(11, wait_s=0.1)
    server, thread = serve_in_thread(tmp_path, server.endpoint)  # the same address again
    w("stop", {"uid": "after"})
    w.wait()
    assert [d[2]["uid"] for d in client.fetch(11, wait_s=1.0)] == ["after"]
    client.close()
    server.stop()
    thread.join(5)
    w.close()


def test_prune_keeps_what_a_listener_has_not_acknowledged(tmp_path):
    w = JournalWriter(tmp_path, segment_bytes=300)
    for name, doc in docs(40):
        w(name, doc)
        w.wait()
    w.close()
    before = segments(tmp_path)
    assert prune(tmp_path, keep_s=0) == []  # no consumer recorded: keep everything
    (tmp_path / "consumers").mkdir()
    (tmp_path / "consumers" / "l.json").write_text(json.dumps({"acknowledged": 20}))
    deleted = prune(tmp_path, keep_s=0)
    kept = segments(tmp_path)
    assert deleted and set(deleted) | set(kept) == set(before)
    reader = JournalReader(tmp_path)
    reader.refresh()
    assert reader.first() <= 20  # everything from the acknowledged position on is still there
    assert [decode(x)[0] for x in reader.read(20, max_docs=1)[0].splitlines(keepends=True)] == [20]
    with pytest.raises(KeyError, match="pruned"):
        reader.read(0)


def test_the_cursor_is_durable_and_starts_at_zero(tmp_path):
    cursor = Cursor(tmp_path / "pos.json")
    assert cursor.position == 0
    cursor.save(42)
    assert Cursor(tmp_path / "pos.json").position == 42
