"""Reliability of the live plugin: Tiled outages during runs, restarts, 0MQ, bursts."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import scan
from event_model import compose_run

from tests.live_support import API_KEY, TiledProcess, free_port
from xrd_strain_plugin.bluesky import LiveInversion
from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer, SimulatedSample
from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.tiled import Spool, SpoolingPublisher, TiledResultsWriter, find_results, read_result

REFL = make_reflection("YSZ", (4, 0, 0), 1.5406)


@pytest.fixture(scope="module")
def diffractometer():
    strain = profiles.strain_from_weights(np.exp(-0.5 * ((np.arange(10) - 2) / 2.0) ** 2), 0.02, 60)[0]
    dw = np.atleast_2d(profiles.dw_coupled(strain, 0.02, 0.3))[0]
    s = SimulatedSample(name="R", strain=strain, debye_waller=dw, thickness_nm=250.0)
    return SimulatedDiffractometer(reflection=REFL, sample=s, rng=np.random.default_rng(3))


def make_live(inverter, url, spool_dir, **kwargs):
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(url, api_key=API_KEY), Spool(spool_dir), retry_interval_s=0.2
    )
    return LiveInversion(inverter, publisher, **kwargs)


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_results_of_runs_made_while_tiled_is_down_reach_it_in_order_exactly_once_across_a_restart(
    tmp_path, inverter, diffractometer
):
    server = TiledProcess(tmp_path / "tiled", port=free_port())  # down during the runs
    live = make_live(inverter, server.url, tmp_path / "spool")
    RE = RunEngine({})
    RE.subscribe(live)
    lo, hi = diffractometer.scan_range()
    uids = [
        RE(scan([diffractometer.detector], diffractometer.motor, lo, hi, 81), sample=f"down-{i}")[0] for i in range(3)
    ]
    assert live.wait(60)
    assert live.counts["spooled"] == 3 and RE.state == "idle"
    live.close()  # the plugin stops with three results on disk only
    assert len(live.publisher.spool) == 3
    live.publisher.spool.close()

    server.start()
    try:
        restarted = make_live(inverter, server.url, tmp_path / "spool")
        RE2 = RunEngine({})
        RE2.subscribe(restarted)
        uids.append(RE2(scan([diffractometer.detector], diffractometer.motor, lo, hi, 81), sample="up")[0])
        assert restarted.wait(60)
        assert wait_for(lambda: len(restarted.publisher.spool) == 0, 30)
        restarted.close()
        client = server.client()
        assert list(client["results"]) == uids  # written in run order, no duplicates
        for uid in uids:
            got = read_result(client["results"][uid])
            assert got["metadata"]["status"] == "ok" and got["arrays"]["intensity_measured"].shape == (81,)
    finally:
        restarted.publisher.spool.close()
        server.stop()


def test_results_spooled_while_tiled_fails_are_written_once_it_recovers(
    tmp_path, inverter, diffractometer, failing_http_url, tiled_server
):
    # The plugin writes to whatever answers at the URL: first a failing server, then a good one.
    target = {"url": failing_http_url}
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(target["url"], api_key=API_KEY),
        Spool(tmp_path / "spool"),
        retry_interval_s=0.2,
    )
    live = LiveInversion(inverter, publisher)
    RE = RunEngine({})
    RE.subscribe(live)
    lo, hi = diffractometer.scan_range()
    (uid,) = RE(scan([diffractometer.detector], diffractometer.motor, lo, hi, 61))
    assert live.wait(60) and live.counts["spooled"] == 1
    target["url"] = tiled_server.url  # Tiled is back
    assert wait_for(lambda: len(publisher.spool) == 0, 30)
    live.close()
    publisher.spool.close()
    assert read_result(tiled_server.client()["results"][uid])["metadata"]["status"] == "ok"


def test_documents_through_a_0mq_proxy_are_inverted_by_a_remote_listener(
    tmp_path, inverter, diffractometer, tiled_server
):
    from xrd_strain_plugin.bluesky.remote import ListenerThread, start_proxy

    in_port, out_port = free_port(), free_port()
    start_proxy(in_port, out_port)
    live = make_live(inverter, tiled_server.url, tmp_path / "spool")
    remote = ListenerThread(in_port, out_port, [live])
    assert remote.subscribed and remote.connected
    publisher, listener = remote.publisher, remote.thread

    RE = RunEngine({})
    RE.subscribe(publisher)
    lo, hi = diffractometer.scan_range()
    (uid,) = RE(scan([diffractometer.detector], diffractometer.motor, lo, hi, 81), sample="remote")
    try:
        assert wait_for(lambda: find_results(tiled_server.client(), raw_uid=uid), 60)
        md = read_result(tiled_server.client()["results"][uid])["metadata"]
        assert md["status"] == "ok" and md["sample"] == "remote"
    finally:
        remote.close()
        live.close()
        live.publisher.spool.close()
    assert not listener.is_alive()


def _runs(n_runs, *, every_valid, two_theta, counts):
    """Documents of ``n_runs`` one-curve runs; every ``every_valid``-th is a full curve, the others 5 points."""
    for i in range(n_runs):
        run = compose_run(metadata={"hints": {"dimensions": [[["tth"], "primary"]]}, "sample": f"b{i}"})
        desc = run.compose_descriptor(
            name="primary",
            data_keys={
                "tth": {"dtype": "number", "shape": [], "source": "sim"},
                "det": {"dtype": "number", "shape": [], "source": "sim"},
            },
            hints={"det": {"fields": ["det"]}},
        )
        n = two_theta.size if i % every_valid == 0 else 5
        yield "start", run.start_doc
        yield "descriptor", desc.descriptor_doc
        yield (
            "event_page",
            desc.compose_event_page(
                data={"tth": two_theta[:n], "det": counts[:n]},
                timestamps={"tth": two_theta[:n] * 0, "det": counts[:n] * 0},
                seq_num=list(range(1, n + 1)),
                time=list(two_theta[:n] * 0),
            ),
        )
        yield "stop", run.compose_stop()


def test_a_burst_of_1000_curves_is_all_processed_in_order_with_bounded_memory_never_holding_the_caller(
    tmp_path, inverter, diffractometer
):
    # Tiled is down, so every record must land in the spool: nothing may be dropped.
    # Every 50th curve is a full curve that the model inverts, the others are 5-point curves that
    # validation rejects; a full inversion of all 1,000 is the slow test below.
    live = make_live(inverter, f"http://127.0.0.1:{free_port()}/api/v1", tmp_path / "spool", queue_size=16)
    two_theta = np.linspace(71.6, 74.2, 131)
    counts = diffractometer.counts(two_theta)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    longest_call = 0.0
    for name, doc in _runs(1000, every_valid=50, two_theta=two_theta, counts=counts):
        t = time.perf_counter()
        live(name, doc)
        longest_call = max(longest_call, time.perf_counter() - t)
    assert live.wait(120)
    elapsed = time.perf_counter() - t0
    live.close()
    spool = live.publisher.spool
    records = [r for p in spool.pending() for r in spool.load_all(p)]
    spool.close()

    assert len(records) == 1000
    assert [r.metadata["sample"] for r in records] == [f"b{i}" for i in range(1000)]
    assert sum(r.status == "ok" for r in records) == 20
    assert {r.metadata["reason"] for r in records if r.status != "ok"} == {"too few points: 5 (need at least 10)"}
    # The caller was never held: beyond 16 curves in memory, curves waited on disk, in order.
    assert live.counts["overflow"] > 0 and live.peak_queue_depth <= 16 and len(live.queue.overflow) == 0
    assert live.routing.router._start_to_start_doc == {}
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 200_000  # kB
    # a disk write at most, never a wait for the worker (which would take tens of seconds for this burst);
    # generous because a loaded machine stretches any single call
    assert longest_call < 3.0, longest_call
    print(f"burst: 1000 curves in {elapsed:.1f} s; longest document call {1e3 * longest_call:.0f} ms")


@pytest.mark.slow
def test_a_burst_of_1000_full_curves_is_all_inverted_and_written_to_tiled(
    tmp_path, inverter, diffractometer, tiled_server
):
    live = make_live(inverter, tiled_server.url, tmp_path / "spool", queue_size=16)
    two_theta = np.linspace(71.6, 74.2, 131)
    counts = diffractometer.counts(two_theta)
    t0 = time.perf_counter()
    for name, doc in _runs(1000, every_valid=1, two_theta=two_theta, counts=counts):
        live(name, doc)
    assert live.wait(3600)
    elapsed = time.perf_counter() - t0
    live.close()
    live.publisher.spool.close()
    assert live.counts["ok"] == 1000 and live.counts["written"] == 1000
    assert live.peak_queue_depth <= 16
    print(f"burst: 1000 full curves inverted and written in {elapsed:.1f} s ({1000 / elapsed:.1f} curves/s)")


def test_a_bad_model_fails_at_start_not_in_the_middle_of_a_run(tmp_path, tiny_bundle):
    import shutil as _shutil

    from xrd_strain_plugin.inference import BundleError

    broken = tmp_path / "broken"
    _shutil.copytree(tiny_bundle, broken)
    weights = broken / "model.keras"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError):
        LiveInversion.from_uri("http://127.0.0.1:9/api/v1", spool_directory=tmp_path / "spool", bundle=broken)
    assert not (tmp_path / "spool").exists()  # failed before touching anything else
