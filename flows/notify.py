"""Failure notification for the scheduled flows (a Prefect ``on_failure`` / ``on_crashed`` hook).

A nightly regeneration or weekly retraining that fails at 3 a.m. must not wait for someone to open
the Prefect UI. :func:`notify_failure` runs in the failed run's process and

- logs one ERROR line (the flow, the run, the state's message), always;
- appends one JSON line to ``$XRD_STRAIN_FAILURES_LOG`` when set (a file a monitoring agent or a
  cron mail can watch; no network needed);
- sends the same text through the Prefect notification block named by
  ``$XRD_STRAIN_NOTIFY_BLOCK`` when set (Slack, e-mail, Teams, Apprise URL...: any block with
  ``notify(body, subject)``), so the channel is configured in Prefect, not in code.

A failing notification is logged and never hides the flow's own failure.
"""

from __future__ import annotations

import datetime
import json
import logging
import os

log = logging.getLogger("xrd_strain.flows")

FAILURES_LOG_ENV = "XRD_STRAIN_FAILURES_LOG"
NOTIFY_BLOCK_ENV = "XRD_STRAIN_NOTIFY_BLOCK"


def failure_message(flow, flow_run, state) -> dict:
    """What is reported: flow, run, state and its message, when."""
    return {
        "flow": getattr(flow, "name", str(flow)),
        "flow_run": getattr(flow_run, "name", None),
        "flow_run_id": str(getattr(flow_run, "id", "")),
        "state": getattr(state, "name", str(state)),
        "message": getattr(state, "message", None) or "",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }


def notify_failure(flow, flow_run, state) -> None:
    """Prefect state hook: report a failed or crashed flow run (see the module docstring)."""
    info = failure_message(flow, flow_run, state)
    text = f"xrd-strain flow {info['flow']} run {info['flow_run']} {info['state']}: {info['message']}"
    log.error(text)
    path = os.environ.get(FAILURES_LOG_ENV)
    if path:
        try:
            with open(path, "a") as fh:  # one write: lines from concurrent runs do not interleave
                fh.write(json.dumps(info) + "\n")
        except OSError:
            log.exception("could not append the failure to %s", path)
    block = os.environ.get(NOTIFY_BLOCK_ENV)
    if block:
        try:
            from prefect.blocks.core import Block

            Block.load(block).notify(text, subject=f"xrd-strain: {info['flow']} {info['state']}")
        except Exception:
            log.exception("could not send the failure through the Prefect block %r", block)


#: The hooks every scheduled flow carries (``@flow(**FAILURE_HOOKS)``).
FAILURE_HOOKS = {"on_failure": [notify_failure], "on_crashed": [notify_failure]}
