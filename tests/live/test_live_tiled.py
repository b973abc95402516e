"""Results layout, writer, queries and spool against a real Tiled server on loopback."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from live_support import TiledProcess, free_port, synthetic_record

from xrd_strain_plugin.tiled import (
    ARRAY_NAMES,
    LAYOUT_NAME,
    Spool,
    SpoolingPublisher,
    SpoolLockedError,
    TiledResultsWriter,
    find_results,
    read_result,
)
from xrd_strain_plugin.tiled.layout import ResultRecord


def uid():
    return str(uuid.uuid4())


def test_a_written_result_reads_back_as_named_arrays_with_its_metadata(tiled_server):
    record = synthetic_record(uid(), e_max=1.7, sample="A")
    TiledResultsWriter(tiled_server.client()).write(record)

    node = tiled_server.client()["results"][record.raw_uid]
    got = read_result(node)
    assert set(got["arrays"]) == set(ARRAY_NAMES)
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(got["arrays"][name], record.arrays[name])
    assert got["metadata"]["strain_max_percent"] == 1.7
    assert got["metadata"]["layout"] == {"name": LAYOUT_NAME, "version": "1"}
    assert got["metadata"]["raw_path"] == f"raw/{record.raw_uid}"
    assert {(s.name, s.version) for s in node.specs} >= {(LAYOUT_NAME, "1")}


def test_writing_a_record_twice_leaves_one_node_and_completes_a_partial_one(tiled_server):
    client = tiled_server.client()
    writer = TiledResultsWriter(client)
    record = synthetic_record(uid(), 0, seed=3)
    # A crash after the node was made but before its tables: the replay must complete it.
    from xrd_strain_plugin.tiled.writer import _specs

    run = writer.results.create_container(record.raw_uid)
    run.create_container("0", metadata=dict(record.metadata), specs=_specs())
    writer.write(record)
    writer.write(record)

    hits = find_results(client, raw_uid=record.raw_uid)
    assert list(hits) == [(record.raw_uid, "0")]
    np.testing.assert_array_equal(read_result(hits[(record.raw_uid, "0")])["arrays"]["strain"], record.arrays["strain"])


def test_queries_select_by_sample_run_emax_range_model_version_and_status(tiled_server):
    client = tiled_server.client()
    writer = TiledResultsWriter(client)
    tag = uid()[:8]
    multi = uid()
    records = [
        synthetic_record(uid(), e_max=0.4, sample=f"{tag}-a"),
        synthetic_record(uid(), e_max=1.2, sample=f"{tag}-a"),
        synthetic_record(multi, 0, e_max=2.5, sample=f"{tag}-b"),
        synthetic_record(multi, 1, e_max=5.0, sample=f"{tag}-b"),
        synthetic_record(uid(), sample=f"{tag}-a", status="rejected"),
    ]
    for r in records:
        writer.write(r)

    assert len(find_results(client, sample=f"{tag}-a")) == 3
    assert set(find_results(client, sample=f"{tag}-b")) == {(multi, "0"), (multi, "1")}
    assert set(find_results(client, raw_uid=multi)) == {(multi, "0"), (multi, "1")}
    in_range = find_results(client, sample=f"{tag}-b", strain_max_percent=(1.0, 3.0))
    assert list(in_range) == [(multi, "0")]
    assert len(find_results(client, sample=f"{tag}-a", strain_max_percent=(1.0, None))) == 1
    assert len(find_results(client, sample=f"{tag}-a", model_version="1")) == 3
    assert find_results(client, sample=f"{tag}-a", model_version="2") == {}
    rejected = find_results(client, sample=f"{tag}-a", status="rejected")
    assert [n.metadata["reason"] for n in rejected.values()] == ["because"]
    assert read_result(next(iter(rejected.values())))["arrays"] == {}


def test_spool_files_are_durable_ordered_and_exclusive(tmp_path):
    spool = Spool(tmp_path / "spool")
    records = [synthetic_record(uid(), seed=i) for i in range(3)]
    for r in records:
        spool.append(r)
    with pytest.raises(SpoolLockedError):
        Spool(tmp_path / "spool")
    spool.close()

    reopened = Spool(tmp_path / "spool")  # a restarted plugin
    assert len(reopened) == 3
    back = [reopened.load(p) for p in reopened.pending()]
    assert [r.raw_uid for r in back] == [r.raw_uid for r in records]
    np.testing.assert_array_equal(back[1].arrays["intensity_model"], records[1].arrays["intensity_model"])
    assert reopened.append(records[0]).name == "000000000003.npz"  # numbering continues
    reopened.close()


def _result_uids(client):
    return [key for key in client["results"]] if "results" in client else []


def test_results_spooled_while_tiled_is_down_are_written_in_order_exactly_once_after_a_restart(tmp_path):
    server = TiledProcess(tmp_path / "tiled", port=free_port())  # not started yet: unreachable
    connect = lambda: TiledResultsWriter.from_uri(server.url, api_key="testsecret")  # noqa: E731
    publisher = SpoolingPublisher(connect, Spool(tmp_path / "spool"), retry_interval_s=0.0)
    records = [synthetic_record(uid(), seed=i) for i in range(4)]
    assert [publisher.publish(r) for r in records[:3]] == [False, False, False]
    assert len(publisher.spool) == 3
    publisher.spool.close()  # the plugin dies with three results waiting

    server.start()
    try:
        # A new plugin process: new spool object on the same directory, new records arrive.
        publisher = SpoolingPublisher(connect, Spool(tmp_path / "spool"), retry_interval_s=0.0)
        assert publisher.publish(records[3]) is True  # replays the three first, then writes this one
        assert len(publisher.spool) == 0
        assert publisher.flush() is True
        assert _result_uids(server.client()) == [r.raw_uid for r in records]
        # Crash between a write and its removal from the spool: the replay must not duplicate.
        publisher.spool.append(records[1])
        assert publisher.flush() is True
        assert _result_uids(server.client()) == [r.raw_uid for r in records]
        got = read_result(server.client()["results"][records[2].raw_uid])
        np.testing.assert_array_equal(got["arrays"]["depth_nm"], records[2].arrays["depth_nm"])
    finally:
        publisher.spool.close()
        server.stop()


def test_a_failing_tiled_spools_instead_of_raising(tmp_path, failing_http_url):
    publisher = SpoolingPublisher(lambda: TiledResultsWriter.from_uri(failing_http_url, api_key="k"),
                                  Spool(tmp_path / "spool"), retry_interval_s=0.0)
    record = synthetic_record(uid())
    assert publisher.publish(record) is False
    assert publisher.flush() is False
    assert [Spool.load(p).raw_uid for p in publisher.spool.pending()] == [record.raw_uid]
    publisher.spool.close()


def test_a_record_must_carry_a_known_status_and_complete_tables():
    with pytest.raises(ValueError, match="status"):
        ResultRecord(raw_uid="u", curve_index=None, metadata={"status": "fine"})
    arrays = {k: np.zeros(3) for k in ARRAY_NAMES}
    arrays["intensity_model"] = np.zeros(4)
    with pytest.raises(ValueError, match="curve"):
        ResultRecord(raw_uid="u", curve_index=None, metadata={"status": "ok"}, arrays=arrays)


def test_a_prepared_node_is_invisible_to_queries_until_its_result_is_written(tiled_server):
    client = tiled_server.client()
    writer = TiledResultsWriter(client)
    record = synthetic_record(uid(), sample="prepared", seed=5)
    assert writer.prepare(raw_uid=record.raw_uid, curve_index=None) is True
    assert find_results(client, raw_uid=record.raw_uid) == {}
    writer.write(record)
    hits = find_results(client, raw_uid=record.raw_uid)
    assert list(hits) == [(record.raw_uid,)]
    got = read_result(hits[(record.raw_uid,)])
    assert got["metadata"]["sample"] == "prepared" and "pending" not in got["metadata"]
    np.testing.assert_array_equal(got["arrays"]["debye_waller"], record.arrays["debye_waller"])
    # A stub left by a previous process (prepared, never written) is completed by a new writer.
    other = synthetic_record(uid(), sample="stub", seed=6)
    writer.prepare(raw_uid=other.raw_uid, curve_index=None)
    TiledResultsWriter(tiled_server.client()).write(other)
    assert read_result(tiled_server.client()["results"][other.raw_uid])["metadata"]["sample"] == "stub"
