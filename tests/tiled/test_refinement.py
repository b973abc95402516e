"""Refinement beside the network's answer: the claim, the write, the query, and the one
claim -> refine -> write/fail step (real Tiled server; the live worker is in tests/bluesky/test_refiner.py).
"""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from tests.live_support import synthetic_record
from xrd_strain_plugin.tiled import (
    TiledResultsWriter,
    claim_refinement,
    fail_refinement,
    find_results,
    find_unrefined,
    read_refinement,
    read_result,
    release_refinement,
    write_refinement,
)


def refinement_result(n_depth=40, n_points=64, sigma=0.2):
    from xrd_strain_plugin.refinement import RefinementResult

    z = np.linspace(0, 300, n_depth)
    return RefinementResult(
        depth_nm=z,
        strain_percent=np.exp(-z / 100),
        debye_waller=1 - 0.5 * np.exp(-z / 100),
        two_theta_deg=np.linspace(72, 74, n_points),
        intensity_measured=np.ones(n_points),
        intensity_model=np.full(n_points, 1.1),
        intensity_start=np.full(n_points, 1.3),
        thickness_nm=300.0,
        strain_max_percent=1.0,
        depth_of_max_nm=0.0,
        dw_min=0.5,
        sigma_i=sigma,
        sigma_i_start=0.4,
        noise_floor_sigma_i=0.1,
        path="local",
        poor_fit=False,
        poor_threshold=0.3,
        values={"t": 300.0},
        uncertainties={"t": 5.0},
    )


def test_a_result_is_claimed_once_among_concurrent_refiners_and_refined_beside_the_networks_answer(tiled_server):
    client = tiled_server.client()
    tag = uuid.uuid4().hex[:8]
    records = [synthetic_record(str(uuid.uuid4()), sample=f"ref-{tag}", seed=i) for i in range(2)]
    TiledResultsWriter(client).write_many(records)
    unrefined = {p for p in find_unrefined(client) if p[0] in {r.raw_uid for r in records}}
    assert unrefined == {(r.raw_uid,) for r in records}

    node = client["results"][records[0].raw_uid]
    wins, barrier = [], threading.Barrier(4)

    def refiner(i):
        mine = tiled_server.client()["results"][records[0].raw_uid]
        barrier.wait()
        wins.append(claim_refinement(mine, worker=f"r{i}"))

    threads = [threading.Thread(target=refiner, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 3 + [True]
    assert claim_refinement(node, worker="late") is False
    assert find_results(client, sample=f"ref-{tag}", refinement_status="pending").keys() == {(records[0].raw_uid,)}
    assert (records[0].raw_uid,) not in find_unrefined(client)

    refined = refinement_result()
    write_refinement(node, refined)
    node = tiled_server.client()["results"][records[0].raw_uid]
    done = find_results(client, sample=f"ref-{tag}", refinement_status="done")
    assert list(done) == [(records[0].raw_uid,)]
    assert node.metadata["refinement"]["sigma_i"] == pytest.approx(0.2)
    got = read_refinement(node)
    assert got["metadata"]["status"] == "done" and got["metadata"]["path"] == "local"
    for name, values in refined.arrays().items():
        np.testing.assert_array_equal(got["arrays"][name], values)
    # The network's answer is untouched, in the same node.
    network = read_result(node)
    for name, values in records[0].arrays.items():
        np.testing.assert_array_equal(network["arrays"][name], values)
    assert network["metadata"]["status"] == "ok"

    other = client["results"][records[1].raw_uid]
    assert claim_refinement(other, worker="x")
    fail_refinement(other, reason="did not converge")
    md = tiled_server.client()["results"][records[1].raw_uid].metadata["refinement"]
    assert md["status"] == "failed" and md["reason"] == "did not converge"
    release_refinement(tiled_server.client()["results"][records[1].raw_uid])
    assert (records[1].raw_uid,) in find_unrefined(client)


def test_claim_and_refine_marks_a_failure_with_its_reason_and_leaves_a_claimed_result_alone(tiled_server):
    """The one claim -> refine -> write/fail step of the live refiner and the flow."""
    from xrd_strain_plugin.tiled.refinement import claim_and_refine

    client = tiled_server.client()
    record = synthetic_record(str(uuid.uuid4()), seed=7)
    TiledResultsWriter(client).write(record)
    node = client["results"][record.raw_uid]

    def unusable():
        raise ValueError("no usable curve")

    claimed = []
    got = claim_and_refine(node, worker="w1", inputs=unusable, on_claimed=lambda: claimed.append(True))
    assert got.status == "failed" and got.reason == "ValueError: no usable curve"
    assert isinstance(got.error, ValueError) and got.result is None and claimed == [True]
    md = tiled_server.client()["results"][record.raw_uid].metadata["refinement"]
    assert md["status"] == "failed" and md["reason"] == "ValueError: no usable curve" and md["worker"] == "w1"

    again = claim_and_refine(node, worker="w2", inputs=unusable, on_claimed=lambda: claimed.append(True))
    assert again.status == "claimed_elsewhere" and claimed == [True]  # nothing done, the failure stands
    assert tiled_server.client()["results"][record.raw_uid].metadata["refinement"]["worker"] == "w1"


def test_a_replayed_result_keeps_its_refinement(tiled_server):
    client = tiled_server.client()
    writer = TiledResultsWriter(client)
    record = synthetic_record(str(uuid.uuid4()), seed=4)
    writer.write(record)
    node = client["results"][record.raw_uid]
    assert claim_refinement(node, worker="w")
    write_refinement(node, refinement_result())
    writer.write(record)  # a spool replay after a crash
    md = tiled_server.client()["results"][record.raw_uid].metadata
    assert md["refinement"]["status"] == "done"
