"""Tiled on PostgreSQL, for real: the deployed configuration (deploy/tiled/config.yml) with its
catalog in a PostgreSQL server this module starts, and the results, refinement-claim and catch-up
tests of the SQLite suite run against it unchanged (imported below, with ``tiled_server`` bound to
the PostgreSQL-backed server)."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from tests.live_support import synthetic_record
from tests.tiled.pg_support import DeployedTiled, PostgresCluster, missing_reason

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))

# The same tests as on SQLite, collected here again with this module's ``tiled_server``.
from tests.bluesky.test_catchup import (  # noqa: E402,F401
    diff,
    test_catch_up_inverts_each_missing_run_once_oldest_first_and_leaves_the_rest,
)
from tests.tiled.test_refinement import (  # noqa: E402,F401
    test_a_replayed_result_keeps_its_refinement,
    test_a_result_is_claimed_once_among_concurrent_refiners_and_refined_beside_the_networks_answer,
)
from tests.tiled.test_results import (  # noqa: E402,F401
    test_a_batch_costs_one_request_per_result_plus_one_and_each_reads_back_its_own_arrays,
    test_a_written_result_reads_back_as_named_arrays_with_its_metadata,
    test_queries_select_by_sample_run_emax_range_model_version_and_status,
    test_results_of_layout_v1_are_still_found_and_read,
    test_writing_a_record_twice_leaves_one_node_and_completes_a_partial_one,
)


@pytest.fixture(scope="module")
def postgres():
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def tiled_server(postgres, tmp_path_factory):
    server = DeployedTiled(tmp_path_factory.mktemp("tiled-pg"), postgres.create_database()).start()
    yield server
    server.stop()


def test_the_catalog_is_in_postgresql(tiled_server, postgres):
    """Not a SQLite file beside it: the nodes are rows of the PostgreSQL database."""
    import asyncio

    import asyncpg

    from xrd_strain_plugin.tiled import TiledResultsWriter

    record = synthetic_record(str(uuid.uuid4()), sample="in-postgres")
    TiledResultsWriter(tiled_server.client()).write(record)
    assert not list(tiled_server.directory.glob("*.db"))

    async def count():
        dsn = tiled_server.catalog_uri.replace("postgresql+asyncpg", "postgresql")
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("SELECT count(*) FROM nodes WHERE key = $1", record.raw_uid)
        finally:
            await conn.close()

    assert asyncio.run(count()) == 1


def test_refiners_in_separate_processes_claim_one_result_exactly_once(tiled_server):
    """Four processes (not threads: separate clients, connections and transactions) race for one claim."""
    import multiprocessing

    from xrd_strain_plugin.tiled import TiledResultsWriter

    record = synthetic_record(str(uuid.uuid4()), sample="pg-race")
    TiledResultsWriter(tiled_server.client()).write(record)
    ctx = multiprocessing.get_context("spawn")
    barrier, wins = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(tiled_server.url, record.raw_uid, i, barrier, wins)) for i in range(4)]
    for p in procs:
        p.start()
    got = sorted(wins.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert got == [False, False, False, True]
    md = tiled_server.client()["results"][record.raw_uid].metadata["refinement"]
    assert md["status"] == "pending"


def _claim(url, uid, i, barrier, wins):  # runs in a child process
    from tiled.client import from_uri

    from tests.live_support import API_KEY
    from xrd_strain_plugin.tiled.refinement import claim_refinement

    node = from_uri(url, api_key=API_KEY)["results"][uid]
    barrier.wait()
    wins.put(claim_refinement(node, worker=f"p{i}"))


def test_concurrent_writers_of_different_results_all_land(tiled_server):
    """Several writers at once, as PostgreSQL is deployed for: the listener, invert --publish, a flow."""
    from xrd_strain_plugin.tiled import TiledResultsWriter, find_results

    tag = uuid.uuid4().hex[:8]
    records = [
        [synthetic_record(str(uuid.uuid4()), sample=f"pg-{tag}", seed=10 * w + i) for i in range(5)] for w in range(3)
    ]
    threads = [
        threading.Thread(target=lambda rs: TiledResultsWriter(tiled_server.client()).write_many(rs), args=(rs,))
        for rs in records
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    hits = find_results(tiled_server.client(), sample=f"pg-{tag}")
    assert len(hits) == 15
    node = hits[(records[1][2].raw_uid,)]
    from xrd_strain_plugin.tiled import read_result

    np.testing.assert_array_equal(read_result(node)["arrays"]["strain_percent"], records[1][2].arrays["strain_percent"])
