"""Results layout (v3, and v1, v2 still read), writer, queries and spool against a real Tiled server on loopback."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from tests.live_support import TiledProcess, free_port, synthetic_record
from xrd_strain_plugin.results import PROFILE_COLUMNS, ResultRecord
from xrd_strain_plugin.tiled import (
    ARRAY_NAMES,
    LAYOUT_NAME,
    LAYOUT_VERSION,
    Spool,
    SpoolingPublisher,
    SpoolLockedError,
    TiledResultsWriter,
    find_results,
    read_result,
)


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
    assert got["metadata"]["layout"] == {"name": LAYOUT_NAME, "version": "3"}
    assert got["metadata"]["raw_path"] == f"raw/{record.raw_uid}"
    assert got["metadata"]["refinement"] == {"status": "none"}
    assert {(s.name, s.version) for s in node.specs} >= {(LAYOUT_NAME, "3")}


def results_per_raw_uid(client, uids):
    """Read every result of ``uids`` back and count them per raw uid (a listing cannot show a duplicate)."""
    counts = {u: 0 for u in uids}
    for path, node in find_results(client).items():
        got = read_result(node)  # every one must read back, arrays included
        raw = got["metadata"]["raw_uid"]
        if raw in counts:
            assert path[0] == raw
            counts[raw] += 1
    return counts


def test_writing_a_record_twice_leaves_one_node_and_completes_a_partial_one(tiled_server):
    client = tiled_server.client()
    writer = TiledResultsWriter(client)
    record = synthetic_record(uid(), 0, seed=3)
    # A crash after the node was made but before its arrays: the replay must complete it.
    writer.prepare()
    run = client["results"].create_container(record.raw_uid)
    run.create_container("0", metadata={"raw_uid": record.raw_uid, "status": "ok"})
    writer.write(record)
    writer.write(record)

    hits = find_results(client, raw_uid=record.raw_uid)
    assert list(hits) == [(record.raw_uid, "0")]
    assert results_per_raw_uid(client, [record.raw_uid]) == {record.raw_uid: 1}
    np.testing.assert_array_equal(
        read_result(hits[(record.raw_uid, "0")])["arrays"]["strain_percent"], record.arrays["strain_percent"]
    )


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
        assert _result_uids(server.client()) == [r.raw_uid for r in records]  # in order
        # Crash between a write and its removal from the spool: the replay must not duplicate.
        publisher.spool.append(records[1])
        assert publisher.flush() is True
        assert results_per_raw_uid(server.client(), [r.raw_uid for r in records]) == {r.raw_uid: 1 for r in records}
        got = read_result(server.client()["results"][records[2].raw_uid])
        np.testing.assert_array_equal(got["arrays"]["depth_nm"], records[2].arrays["depth_nm"])
    finally:
        publisher.spool.close()
        server.stop()


def test_a_failing_tiled_spools_instead_of_raising(tmp_path, failing_http_url):
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(failing_http_url, api_key="k"),
        Spool(tmp_path / "spool"),
        retry_interval_s=0.0,
    )
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


def test_a_batch_costs_one_request_per_result_plus_one_and_each_reads_back_its_own_arrays(tiled_server):
    client = tiled_server.client()
    writer = TiledResultsWriter(client, tables="deferred")  # as the live path writes
    writer.prepare()  # off the critical path: containers and an arrays table made ahead
    multi = uid()
    records = [synthetic_record(uid(), e_max=i, seed=i) for i in range(5)] + [
        synthetic_record(multi, 0, seed=7),
        synthetic_record(uid(), status="rejected"),
    ]
    writer.prepare(raw_uid=multi, curve_index=0)  # the multi-curve run's node, also ahead
    before = writer.requests
    writer.write_many(records)
    assert writer.requests - before == len(records) + 1  # one node each, one arrays table for all
    for record in records:
        got = read_result(find_results(client, raw_uid=record.raw_uid)[record.path])
        assert got["metadata"]["status"] == record.status
        assert set(got["arrays"]) == (set(ARRAY_NAMES) if record.arrays else set())
        for name, values in record.arrays.items():
            np.testing.assert_array_equal(got["arrays"][name], values)
    pointers = {find_results(client, raw_uid=r.raw_uid)[r.path].metadata["arrays"]["node"] for r in records if r.arrays}
    assert len(pointers) == 1  # the arrays of the batch share one table
    # The per-result tables follow when the writer is idle: four requests per result with a profile.
    assert writer.pending_tables == 6 and "profile" not in client["results"][records[0].raw_uid]
    before = writer.requests
    writer.prepare()
    assert writer.pending_tables == 0
    assert writer.requests - before == 4 * 6 + 1  # and the arrays table the batch used is replaced
    assert list(client["results"][records[0].raw_uid]["profile"].read().columns) == list(PROFILE_COLUMNS)


def test_a_result_is_plain_tiled_data_a_profile_and_a_curve_table_with_units(tiled_server):
    from xrd_strain_plugin.tiled.client import ResultNode

    record = synthetic_record(uid(), sample="plain", seed=3)
    TiledResultsWriter(tiled_server.client()).write(record)
    node = tiled_server.client()["results"][record.raw_uid]  # plain Tiled calls
    profile = node["profile"].read()
    assert list(profile.columns) == ["depth_nm", "strain_percent", "debye_waller"]
    np.testing.assert_array_equal(profile["strain_percent"], record.arrays["strain_percent"])
    np.testing.assert_array_equal(node["curve"].read()["intensity_model"], record.arrays["intensity_model"])
    assert node["profile"].metadata["units"] == {"depth_nm": "nm", "strain_percent": "percent", "debye_waller": "1"}
    assert node.metadata["units"]["strain_max_percent"] == "percent"
    assert node.metadata["layout"]["version"] == LAYOUT_VERSION == "3"
    # The spec's client class, from the entry point: the same through its own vocabulary.
    assert isinstance(node, ResultNode) and node.status == "ok" and node.units["q_inv_angstrom"] == "1/angstrom"
    np.testing.assert_array_equal(node.curve()["q_inv_angstrom"], record.arrays["q_inv_angstrom"])
    assert node.figures["strain_max_percent"] == record.metadata["strain_max_percent"]
    assert node.refinement() is None


def test_results_of_layout_v2_are_still_found_and_read_with_todays_names(tiled_server):
    """A v2 node (arrays row with a column ``strain`` in percent, no per-result tables)."""
    import pyarrow as pa
    from tiled.structures.core import Spec

    from xrd_strain_plugin.tiled.client import ResultNode

    client = tiled_server.client()
    TiledResultsWriter(client).prepare()
    record = synthetic_record(uid(), sample="old-v2", seed=4)
    old = {("strain" if k == "strain_percent" else k): v for k, v in record.arrays.items()}
    frame = pa.table(
        {
            "raw_uid": [record.raw_uid],
            "curve_index": [-1],
            **{k: pa.array([v], pa.list_(pa.float64())) for k, v in old.items()},
        }
    ).to_pandas()
    key = uid()
    client["result_arrays"].write_dataframe(frame, key=key)
    md = {k: v for k, v in record.metadata.items() if k != "units"}
    md.update(
        layout={"name": LAYOUT_NAME, "version": "2"},
        arrays={"node": f"result_arrays/{key}", "row": 0},
        refinement={"status": "none"},
    )
    client["results"].create_container(record.raw_uid, metadata=md, specs=[Spec(LAYOUT_NAME, version="2")])
    (node,) = find_results(client, sample="old-v2", layout_version="2").values()
    got = read_result(node)
    np.testing.assert_array_equal(got["arrays"]["strain_percent"], record.arrays["strain_percent"])
    assert isinstance(node, ResultNode) and node.units["strain_percent"] == "percent"
    np.testing.assert_array_equal(node.profile()["strain_percent"], record.arrays["strain_percent"])
    from xrd_strain_plugin.tiled import find_unrefined

    assert (record.raw_uid,) in find_unrefined(client)  # v2 results are still offered for refinement


def test_results_of_layout_v1_are_still_found_and_read(tiled_server):
    """A node written by the version-1 writer (composite node, two tables) before the upgrade."""
    from tiled.structures.core import Spec

    client = tiled_server.client()
    TiledResultsWriter(client).prepare()
    record = synthetic_record(uid(), sample="old-v1", e_max=2.2, seed=9)
    md = dict(record.metadata, layout={"name": LAYOUT_NAME, "version": "1"})
    node = client["results"].create_container(
        record.raw_uid, metadata=md, specs=[Spec(LAYOUT_NAME, version="1"), Spec("composite")]
    )
    for table, columns in record.tables().items():
        columns = {("strain" if c == "strain_percent" else c): v for c, v in columns.items()}  # v1's names
        node.base.write_table(pd.DataFrame(columns), key=table) if hasattr(node, "base") else node.write_table(
            pd.DataFrame(columns), key=table
        )
    hits = find_results(client, sample="old-v1")
    assert list(hits) == [(record.raw_uid,)]
    got = read_result(hits[(record.raw_uid,)])
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(got["arrays"][name], record.arrays[name])
    assert find_results(client, sample="old-v1", layout_version="2") == {}
    assert find_results(client, sample="old-v1", layout_version=("1", "3")).keys() == {(record.raw_uid,)}


def test_a_record_that_cannot_be_written_is_set_aside_with_its_reason_and_the_rest_of_its_batch_written(
    tiled_server, tmp_path
):
    good = [synthetic_record(uid(), seed=i) for i in range(2)]
    bad = synthetic_record(uid(), seed=5)
    bad = ResultRecord(
        raw_uid=bad.raw_uid,
        curve_index=None,
        metadata=bad.metadata,
        arrays={**bad.arrays, "strain_percent": np.array(["x"] * bad.arrays["strain_percent"].size)},
    )
    spool = Spool(tmp_path / "spool")
    spool.append_many([good[0], bad, good[1]])  # one batch file, as an outage leaves it
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key="testsecret"), spool, retry_interval_s=0.0
    )
    assert publisher.flush() is True
    assert len(spool) == 0 and spool.pending() == []
    quarantined = sorted((tmp_path / "spool" / "quarantine").glob("*.npz"))
    assert [Spool.load(p).raw_uid for p in quarantined] == [bad.raw_uid]
    assert "could not convert string to float" in quarantined[0].with_suffix(".reason.txt").read_text()
    client = tiled_server.client()
    assert results_per_raw_uid(client, [r.raw_uid for r in good] + [bad.raw_uid]) == {
        good[0].raw_uid: 1,
        good[1].raw_uid: 1,
        bad.raw_uid: 0,
    }
    spool.close()


def test_stale_temporary_files_of_a_crashed_append_are_removed_and_never_replayed(tmp_path):
    spool = Spool(tmp_path / "spool")
    kept = synthetic_record(uid())
    spool.append(kept)
    spool.close()
    # A process killed between writing a temporary file and renaming it into place.
    stale = tmp_path / "spool" / ".tmp-000000000001.npz"
    stale.write_bytes(b"half a record")
    reopened = Spool(tmp_path / "spool")
    assert not stale.exists()
    assert [Spool.load(p).raw_uid for p in reopened.pending()] == [kept.raw_uid] and len(reopened) == 1
    assert reopened.append(kept).name == "000000000001.npz"
    reopened.close()


def test_a_batch_spooled_in_one_file_replays_in_order(tmp_path):
    spool = Spool(tmp_path / "spool")
    records = [synthetic_record(uid(), seed=i) for i in range(4)]
    spool.append_many(records[:3])
    spool.append(records[3])
    assert len(spool) == 4 and len(spool.pending()) == 2
    back = [r for p in spool.pending() for r in Spool.load_all(p)]
    assert [r.raw_uid for r in back] == [r.raw_uid for r in records]
    np.testing.assert_array_equal(back[2].arrays["intensity_model"], records[2].arrays["intensity_model"])
    spool.close()


def test_the_deployed_server_configuration_serves_results_with_its_catalog_in_wal_mode(tmp_path):
    """deploy/tiled/config.yml as shipped: `tiled serve config`, the plugin's catalog factory, scoped keys."""
    import sqlite3

    from tiled.client import from_uri

    from tests.tiled.pg_support import DeployedTiled
    from xrd_strain_plugin.tiled import TiledAuthError

    server = DeployedTiled(tmp_path, f"sqlite:///{tmp_path}/catalog.db", auth="scoped").start()
    try:
        assert set(server.keys) == {"listener", "flows", "reader"}
        record = synthetic_record(uid(), sample="deployed")
        TiledResultsWriter.from_uri(server.url, api_key=server.keys["listener"]).write(record)  # the listener writes
        got = read_result(find_results(from_uri(server.url), sample="deployed")[(record.raw_uid,)])  # public reads
        np.testing.assert_array_equal(got["arrays"]["strain_percent"], record.arrays["strain_percent"])
        # A reader's key reads, and cannot write: not a node, not metadata, not a claim.
        reader = from_uri(server.url, api_key=server.keys["reader"])
        assert reader["results"][record.raw_uid]["profile"].read().shape == (20, 3)
        with pytest.raises(TiledAuthError):
            TiledResultsWriter.from_uri(server.url, api_key=server.keys["reader"]).write(synthetic_record(uid()))
        from xrd_strain_plugin.tiled import claim_refinement

        with pytest.raises(Exception, match="401|403|Unauthorized|Forbidden"):
            claim_refinement(reader["results"][record.raw_uid], worker="reader")
        # The flows' key claims (it writes refinements).
        flows = from_uri(server.url, api_key=server.keys["flows"])
        assert claim_refinement(flows["results"][record.raw_uid], worker="flows")
        with pytest.raises(TiledAuthError):  # a made-up key is no key
            TiledResultsWriter.from_uri(server.url, api_key="0" * 72).write(synthetic_record(uid()))
        with sqlite3.connect(tmp_path / "catalog.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        server.stop()
