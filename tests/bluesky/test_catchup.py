"""Catch-up from Tiled, in process: raw runs read back as BlueskyRuns (bluesky-tiled-plugins), inverted once."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan

from tests.live_support import API_KEY
from xrd_strain_plugin.bluesky import LiveInversion
from xrd_strain_plugin.bluesky.catchup import CatchUp, run_documents
from xrd_strain_plugin.bluesky.collector import RunCollector
from xrd_strain_plugin.bluesky.detection import RockingCurveConfig, plan_from_start
from xrd_strain_plugin.bluesky.raw import raw_run_writer
from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
from xrd_strain_plugin.cli.demo import SAMPLES
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.tiled import Spool, SpoolingPublisher, TiledResultsWriter, find_results


@pytest.fixture(scope="module")
def diff():
    return SimulatedDiffractometer(
        reflection=make_reflection("YSZ", (4, 0, 0), 1.5406),
        sample=SAMPLES[1].simulated(),
        rng=np.random.default_rng(11),
    )


def jobs_of(docs):
    out = []
    collector = None
    for name, doc in docs:
        if name == "start":
            collector = RunCollector(plan_from_start(doc, RockingCurveConfig()), out.append)
        collector(name, doc)
    return out


def test_a_raw_run_read_back_as_a_bluesky_run_gives_the_curve_the_live_path_saw(tiled_server, diff):
    from bluesky_tiled_plugins import BlueskyRun

    client = tiled_server.client()
    raw = raw_run_writer(client)
    live_docs = []
    RE = RunEngine({})
    RE.subscribe(raw)
    RE.subscribe(lambda name, doc: live_docs.append((name, doc)))
    lo, hi = diff.scan_range()
    (uid,) = RE(scan([diff.detector], diff.motor, lo, hi, 41), sample="catch-up-read")
    raw.wait()
    raw.close()
    run = tiled_server.client()["raw"][uid]
    assert isinstance(run, BlueskyRun)  # what users get from Tiled, with bluesky-tiled-plugins installed
    (live_job,) = jobs_of(live_docs)
    (tiled_job,) = jobs_of(run_documents(run, RockingCurveConfig()))
    np.testing.assert_array_equal(tiled_job.two_theta_deg, live_job.two_theta_deg)
    np.testing.assert_array_equal(tiled_job.intensity, live_job.intensity)
    assert (tiled_job.raw_uid, tiled_job.sample, tiled_job.planned_points) == (uid, "catch-up-read", 41)
    with pytest.raises(TypeError, match="not a bluesky run"):
        list(run_documents(tiled_server.client()["raw"][uid]["primary"], RockingCurveConfig()))


def test_catch_up_inverts_each_missing_run_once_oldest_first_and_leaves_the_rest(
    tiled_server, diff, inverter, tmp_path
):
    client = tiled_server.client()
    raw = raw_run_writer(client)
    RE = RunEngine({})
    RE.subscribe(raw)
    lo, hi = diff.scan_range()
    t0 = time.time()  # the session's server holds other tests' runs: look only at ours
    tag = f"cu-{t0:.0f}"
    done_live = RE(scan([diff.detector], diff.motor, lo, hi, 41), sample=f"{tag}-live")[0]
    seen_live = RE(scan([diff.detector], diff.motor, lo, hi, 41), sample=f"{tag}-seen")[0]
    missed = [RE(scan([diff.detector], diff.motor, lo, hi, 41), sample=f"{tag}-missed-{i}")[0] for i in range(2)]
    RE(count([diff.detector], 2))  # not a rocking curve
    raw.wait()
    raw.close()
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key=API_KEY),
        Spool(tmp_path / "spool"),
        retry_interval_s=0.2,
    )
    order = []
    live = LiveInversion(inverter, publisher, on_outcome=lambda o: order.append(o.path[0]))
    state = tmp_path / "catch-up.json"
    catch_up = CatchUp(
        client, live, state_path=state, since_s=time.time() - t0, margin_s=0.0, grace_s=0.5, interval_s=0.2
    )
    try:
        # done_live already has its result (written by the live path); seen_live is in flight live.
        from xrd_strain_plugin.bluesky.catchup import run_documents as docs_of

        live_router_docs = list(docs_of(client["raw"][done_live], live.config))
        for name, doc in live_router_docs:
            live(name, doc)
        assert live.wait(60)
        catch_up.note("start", {"uid": seen_live})
        time.sleep(0.6)  # past the grace period
        order.clear()
        assert catch_up.run_once() == 2
        assert live.wait(60)
        assert order == missed  # oldest first, nothing else
        assert catch_up.run_once() == 0  # a second pass finds nothing to do
        assert order == missed
        for uid in missed:
            (hit,) = find_results(client, raw_uid=uid).values()
            assert hit.metadata["status"] == "ok"
        assert not find_results(client, raw_uid=seen_live)  # the live path owns it
        # The watermark stops at the oldest run not resolved (seen_live, whose result is not in Tiled).
        stop_time = client["raw"][seen_live].metadata["stop"]["time"]
        assert json.loads(state.read_text())["watermark"] == pytest.approx(stop_time)
    finally:
        catch_up.close()
        live.close()
        publisher.spool.close()
