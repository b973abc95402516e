"""The live refiner: a real RunEngine, a real refinement engine in a real separate process, real Tiled."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.live_support import API_KEY, cheap_refinement
from xrd_strain_plugin.tiled import TiledResultsWriter, read_refinement, read_result


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
    # two refining processes share the queue (RefinementWorker(processes=2), the demo's setting)
    refiner = RefinementWorker(tiled_server.url, api_key=API_KEY, options=cheap_refinement(), niceness=0, processes=2)
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
        # two more scans while the processes are warm: every result is refined exactly once
        uids = [RE(scan([diff.detector], diff.motor, lo, hi, 61), sample=f"refined-live-{k}")[0] for k in range(2)]
        assert live.wait(60)
        assert refiner.wait(3, 120), refiner.counts
        paths = sorted(o["path"] for o in refiner.finished)
        assert paths == sorted(f"results/{u}" for u in [uid, *uids]), paths
        assert refiner.counts["done"] + refiner.counts["failed"] == 3, refiner.counts
    finally:
        live.close(60)
        publisher.spool.close()
    assert not refiner._alive(), "a refining process outlived close()"


def test_a_bad_refinement_option_fails_at_construction_not_in_the_process():
    from xrd_strain_plugin.bluesky.refiner import RefinementWorker

    with pytest.raises(TypeError, match="no_such_option"):
        RefinementWorker("http://127.0.0.1:9/api/v1", options={"no_such_option": 1})
