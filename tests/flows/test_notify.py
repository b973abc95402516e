"""Failure notification on the scheduled flows, and refinement triggered in batches (real Prefect
flow runs on the session's test server)."""

from __future__ import annotations

import json
import time

from prefect import flow

from xrd_strain_flows.notify import FAILURE_HOOKS, notify_failure


@flow(name="xrd-strain-test-failing", **FAILURE_HOOKS)
def failing(reason: str):
    raise RuntimeError(reason)


def test_a_failed_flow_run_is_reported_in_the_failures_log(tmp_path, monkeypatch):
    log = tmp_path / "failures.jsonl"
    monkeypatch.setenv("XRD_STRAIN_FAILURES_LOG", str(log))
    state = failing("the disk is full", return_state=True)
    assert state.is_failed()
    (line,) = log.read_text().splitlines()
    got = json.loads(line)
    assert got["flow"] == "xrd-strain-test-failing" and got["state"] == "Failed"
    assert "the disk is full" in got["message"] and got["flow_run_id"]


def test_a_notification_block_that_cannot_be_loaded_never_hides_the_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("XRD_STRAIN_FAILURES_LOG", str(tmp_path / "f.jsonl"))
    monkeypatch.setenv("XRD_STRAIN_NOTIFY_BLOCK", "no-such-block")
    state = failing("still reported", return_state=True)
    assert state.is_failed() and "still reported" in (tmp_path / "f.jsonl").read_text()


def test_the_scheduled_flows_carry_the_hook():
    from xrd_strain_flows.refine import refine_new_results
    from xrd_strain_flows.regenerate import regenerate_dataset
    from xrd_strain_flows.retrain import retrain

    for f in (regenerate_dataset, retrain, refine_new_results):
        assert notify_failure in f.on_failure_hooks and notify_failure in f.on_crashed_hooks, f.name


def _runs_of(deployment_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_a_burst_of_results_starts_one_refinement_run_per_interval():
    from xrd_strain_flows.refine import BatchedTrigger, refine_new_results

    name = f"batch-{time.time_ns()}"
    deployment_id = refine_new_results.to_deployment(
        name=name, parameters={"tiled_url": "http://127.0.0.1:9/api/v1"}
    ).apply()
    trigger = BatchedTrigger(deployment=f"refine_new_results/{name}", min_interval_s=3.0)
    started = [trigger.note() for _ in range(200)]  # a burst of 200 stored results
    assert started.count(True) == 1 and trigger.pending == 199
    assert len(_runs_of(deployment_id)) == 1
    time.sleep(3.2)
    assert trigger.note() is True and trigger.pending == 0  # the next run takes all 200 that waited
    assert trigger.note() is False and trigger.flush() is True  # flush: at the end, whatever the interval
    assert len(_runs_of(deployment_id)) == 3 == len(trigger.runs)


def test_a_prefect_server_that_is_away_leaves_the_results_pending():
    from xrd_strain_flows.refine import BatchedTrigger

    trigger = BatchedTrigger(deployment="refine_new_results/does-not-exist", min_interval_s=0.0)
    assert trigger.note(5) is False and trigger.pending == 5 and trigger.errors == 1
