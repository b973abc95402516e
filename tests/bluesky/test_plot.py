"""Results as derived runs over 0MQ (with hints), drawn by LiveProfilePlot in another thread, and
refinements following as their own derived runs (real RunEngine, proxy, refiner, Tiled)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import scan

from tests.live_support import API_KEY, cheap_refinement, free_port
from xrd_strain_plugin.bluesky import LiveInversion
from xrd_strain_plugin.bluesky.plot import LiveProfilePlot
from xrd_strain_plugin.bluesky.remote import ListenerThread, start_proxy
from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
from xrd_strain_plugin.cli.demo import SAMPLES
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.tiled import Spool, SpoolingPublisher, TiledResultsWriter


@pytest.fixture(scope="module")
def diff():
    return SimulatedDiffractometer(
        reflection=make_reflection("YSZ", (4, 0, 0), 1.5406),
        sample=SAMPLES[1].simulated(),
        rng=np.random.default_rng(5),
    )


def _wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_results_reach_a_remote_live_plot_as_derived_runs_with_hints(tmp_path, inverter, tiled_server, diff):
    from bluesky.callbacks.zmq import Publisher

    in_port, out_port = free_port(), free_port()
    start_proxy(in_port, out_port)
    plot = LiveProfilePlot(keep=3)  # its own Agg figure: no display needed
    received = []
    remote = ListenerThread(in_port, out_port, [plot, lambda name, doc: received.append((name, doc))])
    assert remote.subscribed and remote.connected
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key=API_KEY), Spool(tmp_path / "spool")
    )
    live = LiveInversion(inverter, publisher)
    results_out = Publisher(f"127.0.0.1:{in_port}", prefix=b"xrd-strain")  # as listen --results-zmq
    live.subscribe_results(results_out)
    RE = RunEngine({})
    RE.subscribe(live)
    try:
        uids = [RE(scan([diff.detector], diff.motor, *diff.scan_range(), 121), sample=f"plot-{i}")[0] for i in range(2)]
        assert live.wait(60)
        assert _wait(lambda: len(plot.shown) == 2, 30), received[-3:]
    finally:
        live.close()
        results_out.close()  # else its 0MQ context, collected later, blocks the interpreter in term()
        remote.close()
        publisher.spool.close()
    starts = [d for n, d in received if n == "start" and "xrd_strain" in d]
    assert [s["xrd_strain"]["raw_uid"] for s in starts] == uids
    assert starts[0]["hints"] == {"dimensions": [[["depth_nm"], "result"]]}
    assert starts[0]["xrd_strain"]["kind"] == "network" and starts[0]["sample"] == "plot-0"
    (desc,) = [d for n, d in received if n == "descriptor" and d["run_start"] == starts[0]["uid"]]
    assert desc["hints"] == {"xrd_strain": {"fields": ["strain_percent", "debye_waller"]}}
    assert desc["data_keys"]["strain_percent"]["units"] == "percent"
    label, kind, arrays = plot.shown[-1]
    assert label.startswith("plot-1") and kind == "network"
    line = plot.ax_strain.get_lines()[-1]
    np.testing.assert_allclose(line.get_ydata(), arrays["strain_percent"])
    plot.savefig(tmp_path / "live.png")
    assert (tmp_path / "live.png").stat().st_size > 10_000


def test_a_finished_refinement_follows_as_a_derived_run_of_its_own(tmp_path, inverter, tiled_server, diff):
    from xrd_strain_plugin.bluesky.refiner import RefinementWorker

    refiner = RefinementWorker(tiled_server.url, api_key=API_KEY, options=cheap_refinement(), niceness=0)
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key=API_KEY), Spool(tmp_path / "spool")
    )
    live = LiveInversion(inverter, publisher, refiner=refiner)
    docs = []
    plot = LiveProfilePlot()
    live.subscribe_results(lambda name, doc: docs.append((name, doc)))
    live.subscribe_results(plot)
    RE = RunEngine({})
    RE.subscribe(live)
    try:
        (uid,) = RE(scan([diff.detector], diff.motor, *diff.scan_range(), 121), sample="refined-plot")
        assert live.wait(60)
        assert refiner.wait(1, 240), refiner.counts
        assert _wait(
            lambda: any(d.get("xrd_strain", {}).get("kind") == "refined" for n, d in docs if n == "start"), 30
        ), refiner.counts
    finally:
        live.close(refine_drain=False)
        publisher.spool.close()
    (refined,) = [d for n, d in docs if n == "start" and d["xrd_strain"]["kind"] == "refined"]
    assert refined["xrd_strain"]["raw_uid"] == uid and refined["sample"] == "refined-plot"
    (event,) = [
        d
        for n, d in docs
        if n == "event"
        and d["descriptor"]
        in {dd["uid"] for nn, dd in docs if nn == "descriptor" and dd["run_start"] == refined["uid"]}
    ]
    assert {"depth_nm", "strain_percent", "q_inv_angstrom", "intensity_model"} <= set(event["data"])
    assert [kind for _, kind, _ in plot.shown] == ["network", "refined"]
    assert refiner.finished[-1].get("arrays") is None  # arrays are handed on, not kept
