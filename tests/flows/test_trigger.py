"""The served deployments, end to end: ``serve`` in its own process, and a refinement started with
``run_deployment(..., timeout=0)`` right after a result is stored (slow: two interpreters import
Prefect, and the runner polls for work every few seconds)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.live_support import API_KEY

SERVE = """
import sys
from xrd_strain_flows.deployments import FlowSettings, Schedules, serve
serve(FlowSettings(data_root=sys.argv[1], tiled_url=sys.argv[2]),
      Schedules(refine_interval_s=86400, regenerate_cron="0 0 1 1 *", retrain_cron="0 0 1 1 *"))
"""


@pytest.mark.slow
def test_a_triggered_refinement_runs_in_the_served_deployment(tiled_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from xrd_strain_flows.refine import DEPLOYMENT, trigger_refinement
    from xrd_strain_plugin.tiled import find_results

    env = dict(
        os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), TILED_API_KEY=API_KEY, PREFECT_RUNNER_POLL_FREQUENCY="2"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(tmp_path), tiled_server.url], env=env, start_new_session=True
    )
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    client.read_deployment_by_name(DEPLOYMENT)
                    break
                except Exception:
                    assert time.monotonic() < deadline, "the deployments were not served"
                    assert server.poll() is None, "serve exited"
                    time.sleep(1)
        uids = _store_one(tiled_server)
        t0 = time.perf_counter()
        run = trigger_refinement(parameters={"budget_s": 1.0, "global_budget_s": 0.0})
        assert time.perf_counter() - t0 < 10  # timeout=0: returns once the run is created
        client = tiled_server.client()
        deadline = time.monotonic() + 240
        while True:
            (node,) = find_results(client, raw_uid=uids[0]).values()
            if (node.metadata.get("refinement") or {}).get("status") == "done":
                break
            assert time.monotonic() < deadline, f"flow run {run.id} did not refine the result"
            time.sleep(1)
        assert node.metadata["refinement"]["worker"] == f"refine_new_results:{run.id}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _store_one(tiled_server):
    import uuid

    import numpy as np

    from xrd_strain_plugin.inference import Inverter
    from xrd_strain_plugin.inference.registry import shipped_bundle_path
    from xrd_strain_plugin.physics import instrument, profiles
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.tiled import TiledResultsWriter, record_from_result

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    tb = refl.two_theta_bragg_deg
    two_theta = np.arange(tb - 2.0, tb + 0.4, 0.005)
    strain = profiles.strain_from_weights(np.exp(-0.5 * ((np.arange(10) - 3) / 2.0) ** 2), 0.012, 60)
    r = instrument.simulate_scan(
        two_theta, strain, profiles.dw_coupled(strain, 0.012, 0.6), 300.0, refl, resolution_fwhm_deg=0.01
    )
    counts = np.asarray(instrument.apply_counts(r, scale=1e6, background=3.0, rng=np.random.default_rng(9)))[0]
    uid = str(uuid.uuid4())
    TiledResultsWriter(tiled_server.client()).write(
        record_from_result(Inverter(shipped_bundle_path()).invert(two_theta, counts, refl), raw_uid=uid)
    )
    return [uid]
