"""Refinement beside the network's answer: the claim, the write, the query, and the live worker.

Real Tiled server, real RunEngine, real refinement engine in a real separate process.
"""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
from live_support import API_KEY, synthetic_record

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


def test_live_refinement_appears_beside_the_networks_result_without_delaying_it(tmp_path, inverter, tiled_server):
    from bluesky import RunEngine
    from bluesky.plans import scan

    from xrd_strain_plugin.bluesky import LiveInversion
    from xrd_strain_plugin.bluesky.refiner import RefinementWorker
    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer, SimulatedSample
    from xrd_strain_plugin.physics import profiles
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.tiled import Spool, SpoolingPublisher

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    strain = profiles.strain_from_weights(np.exp(-0.5 * ((np.arange(10) - 2) / 2.0) ** 2), 0.015, 60)[0]
    dw = np.atleast_2d(profiles.dw_coupled(strain, 0.015, 0.5))[0]
    sample = SimulatedSample(name="RF", strain=strain, debye_waller=dw, thickness_nm=250.0)
    diff = SimulatedDiffractometer(reflection=refl, sample=sample, rng=np.random.default_rng(5))
    refiner = RefinementWorker(tiled_server.url, api_key=API_KEY, budget_s=1.0, global_budget_s=0.0, niceness=0)
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key=API_KEY), Spool(tmp_path / "spool")
    )
    written_at = {}
    live = LiveInversion(
        inverter, publisher, refiner=refiner, on_outcome=lambda o: written_at.setdefault(o.path[0], time.monotonic())
    )
    RE = RunEngine({})
    RE.subscribe(live)
    lo, hi = diff.scan_range()
    try:
        (uid,) = RE(scan([diff.detector], diff.motor, lo, hi, 121), sample="refined-live")
        assert live.wait(60)
        network_done = time.monotonic()
        node = tiled_server.client()["results"][uid]
        assert node.metadata["status"] == "ok"
        # The network's answer is there before the refinement is: it did not wait for it.
        assert node.metadata["refinement"]["status"] in ("none", "pending")
        assert refiner.wait(1, 120), refiner.counts
        outcome = refiner.finished[0]
        assert outcome["path"] == f"results/{uid}" and outcome["status"] in ("done", "failed"), outcome
        print("refinement outcome", outcome)
        assert written_at[uid] <= network_done < time.monotonic()
        node = tiled_server.client()["results"][uid]
        assert node.metadata["refinement"]["status"] == outcome["status"]
        if outcome["status"] == "done":
            got = read_refinement(node)
            assert got["arrays"]["strain_percent"].size > 0
            assert got["metadata"]["sigma_i"] <= got["metadata"]["sigma_i_start"] + 1e-9
        network = read_result(node)
        assert network["metadata"]["refinement"]["status"] == outcome["status"]
        assert network["arrays"]["intensity_measured"].shape == (121,)
    finally:
        live.close(60)
        publisher.spool.close()
