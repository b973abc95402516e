"""``refine_new_results``: least-squares refinement of every stored result that has none yet.

A thin wrapper over :mod:`xrd_strain_plugin.tiled.refinement`: ``find_unrefined``, then for each
result (one task) ``claim_and_refine``, the claim -> refine -> write/fail step the live refiner
takes too. The claim is
Tiled's: creating the result's child ``refinement`` succeeds once and answers 409 afterwards, so
two overlapping flow runs (or the flow and the live plugin's own refiner) refine each result exactly
once; the refined profile is written beside the network's answer, which is never changed.

The flow runs on a schedule (every few minutes, :mod:`xrd_strain_flows.deployments`) and can be triggered
soon after live results are stored, without waiting for it, in batches: :class:`BatchedTrigger`
(one :func:`trigger_refinement`, ``run_deployment(..., timeout=0)``, per interval while results
are pending; ``xrd-strain listen --refine-flow-every-s``).

The Tiled API key never travels as a flow parameter (parameters are stored in Prefect's
database): name an environment variable (``api_key_env``, default ``TILED_API_KEY``) or a Prefect
``Secret`` block (``api_key_block``).
"""

from __future__ import annotations

import functools
import os

from prefect import flow, get_run_logger, task
from prefect.task_runners import ThreadPoolTaskRunner

from xrd_strain_flows.notify import FAILURE_HOOKS
from xrd_strain_plugin.tiled.keys import API_KEY_ENV

__all__ = ["refine_new_results", "refine_result", "refine_options", "trigger_refinement", "DEPLOYMENT"]

#: ``flow name/deployment name`` of the served refinement (see :mod:`xrd_strain_flows.deployments`).
DEPLOYMENT = "refine_new_results/refine-new-results"


def api_key(api_key_env: str | None = API_KEY_ENV, api_key_block: str | None = None):
    """The Tiled API key from a Prefect ``Secret`` block (if named) or the environment."""
    if api_key_block:
        from prefect.blocks.system import Secret

        return Secret.load(api_key_block).get()
    return os.environ.get(api_key_env) if api_key_env else None


@functools.lru_cache(maxsize=8)
def _client(tiled_url: str, api_key_env: str | None, api_key_block: str | None):
    # One connection per server for every task of this process (tasks run in threads).
    from tiled.client import from_uri

    return from_uri(tiled_url, api_key=api_key(api_key_env, api_key_block))


def _node(client, path, results_key: str):
    node = client[results_key]
    for key in path:
        node = node[key]
    return node


def refine_options(options: dict | None = None):
    """``RefineOptions`` from a JSON-able dict of its fields (:meth:`RefineOptions.from_dict`)."""
    from xrd_strain_plugin.refinement import RefineOptions

    return RefineOptions.from_dict(options)


@task(task_run_name="refine-{name}")
def refine_result(
    tiled_url: str,
    path: list[str],
    *,
    name: str,
    worker: str,
    options: dict,
    api_key_env: str | None = API_KEY_ENV,
    api_key_block: str | None = None,
    results_key: str = "results",
) -> dict:
    """Claim, refine and store one result; ``outcome`` is ``refined`` or ``claimed elsewhere``.

    Raises
    ------
    Exception
        What the refinement (or its write) raised, after the result was marked ``failed`` with the
        reason.
    """
    from xrd_strain_plugin.tiled.refinement import claim_and_refine

    node = _node(_client(tiled_url, api_key_env, api_key_block), path, results_key)
    got = claim_and_refine(node, worker=worker, options=refine_options(options))
    if got.status == "claimed_elsewhere":
        return {"path": "/".join(path), "outcome": "claimed elsewhere"}
    if got.status == "failed":
        raise got.error
    refined = got.result
    return {
        "path": "/".join(path),
        "outcome": "refined",
        "sigma_i_start": refined.sigma_i_start,
        "sigma_i": refined.sigma_i,
        "fit_path": refined.path,
        "elapsed_s": refined.elapsed_s,
    }


@flow(name="refine_new_results", task_runner=ThreadPoolTaskRunner(max_workers=2), **FAILURE_HOOKS)
def refine_new_results(
    tiled_url: str,
    limit: int = 50,
    budget_s: float | None = None,
    global_budget_s: float | None = None,
    api_key_env: str | None = API_KEY_ENV,
    api_key_block: str | None = None,
    results_key: str = "results",
    options: dict | None = None,
) -> dict:
    """Refine the oldest results that have no refinement yet.

    Parameters
    ----------
    tiled_url : str
        Tiled server, e.g. ``http://tiled-host:8000/api/v1``.
    limit : int
        At most this many results per run (the next run takes the rest).
    budget_s, global_budget_s : float, optional
        Refinement budgets per curve, CPU seconds (``RefineOptions``; default: the engine's).
        ``global_budget_s=0`` skips the global stage of poor fits.
    api_key_env, api_key_block : str, optional
        Environment variable, or Prefect ``Secret`` block, holding a Tiled key that may write.
    results_key : str
        Container of the results.
    options : dict, optional
        Further ``RefineOptions`` fields, JSON-able (``search``: a dict of ``SearchOptions``
        fields), e.g. ``{"n_rescan": 0, "search": {"n_thicknesses": 8}}``; ``budget_s`` and
        ``global_budget_s``, when given, override theirs.

    Returns
    -------
    dict
        ``refined`` (list of task summaries), ``claimed_elsewhere`` (paths), ``found``.

    Raises
    ------
    RuntimeError
        If any refinement failed (those results are marked ``failed`` in Tiled with the reason;
        the others are stored).
    """
    from prefect.runtime import flow_run

    from xrd_strain_plugin.tiled.refinement import find_unrefined

    logger = get_run_logger()
    client = _client(tiled_url, api_key_env, api_key_block)
    found = find_unrefined(client, limit=limit, results_key=results_key)
    worker = f"refine_new_results:{flow_run.id or os.getpid()}"
    budgets = {k: v for k, v in (("budget_s", budget_s), ("global_budget_s", global_budget_s)) if v is not None}
    options = {**(options or {}), **budgets}
    refine_options(options)  # a bad field fails the run here, before any result is claimed
    logger.info("%d results without a refinement", len(found))
    futures = [
        refine_result.submit(
            tiled_url,
            list(path),
            name="/".join(path)[:40],
            worker=worker,
            options=options,
            api_key_env=api_key_env,
            api_key_block=api_key_block,
            results_key=results_key,
        )
        for path in found
    ]
    refined, elsewhere, failed = [], [], []
    for path, future in zip(found, futures):
        future.wait()
        if future.state.is_completed():
            out = future.result()
            (refined if out["outcome"] == "refined" else elsewhere).append(
                out if out["outcome"] == "refined" else out["path"]
            )
        else:
            failed.append(f"{'/'.join(path)}: {future.state.message}")
    logger.info("refined %d, claimed by another refiner %d, failed %d", len(refined), len(elsewhere), len(failed))
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(found)} refinements failed (marked 'failed' in "
            f"Tiled; the network's answers stand): " + "; ".join(failed[:3])
        )
    return {"found": len(found), "refined": refined, "claimed_elsewhere": elsewhere}


def trigger_refinement(*, deployment: str = DEPLOYMENT, parameters: dict | None = None):
    """Start a run of the refinement deployment now and return at once (``timeout=0``): what the
    live side calls right after it stored a result, so the refined answer appears within seconds.

    Needs a Prefect API (``PREFECT_API_URL``) where the deployment is served.
    """
    from prefect.deployments import run_deployment

    return run_deployment(deployment, parameters=parameters or {}, timeout=0)


class BatchedTrigger:
    """One run of the refinement deployment per batch of stored results, not one per result.

    Call :meth:`note` for each result that needs refining (from the live side: a result the live
    refiner could not take). A run starts when results are pending and ``min_interval_s`` has
    passed since the last one; results noted meanwhile wait for the next run, started by a later
    :meth:`note` or by :meth:`flush`. Each run refines everything unrefined it finds (oldest first,
    up to its ``limit``), so a burst of 1 000 results costs a handful of runs, not 1 000; the
    schedule (every few minutes) picks up whatever a last batch left. Never raises: a Prefect
    server that is away is logged and retried at the next note.

    Parameters
    ----------
    min_interval_s : float
        Shortest time between two runs.
    start : callable, optional
        ``start(deployment=..., parameters=...)``; default :func:`trigger_refinement`.
    """

    def __init__(
        self, *, deployment: str = DEPLOYMENT, parameters: dict | None = None, min_interval_s: float = 60.0, start=None
    ):
        import threading

        self.deployment = deployment
        self.parameters = dict(parameters or {})
        self.min_interval_s = float(min_interval_s)
        self._start = start or trigger_refinement
        self._lock = threading.Lock()
        self._last: float | None = None
        self.pending = 0
        self.runs: list = []
        self.errors = 0

    def note(self, n: int = 1) -> bool:
        """``n`` more results need refining; return True if a run was started now."""
        with self._lock:
            self.pending += int(n)
        return self.flush(force=False)

    def flush(self, *, force: bool = True) -> bool:
        """Start a run now if results are pending (``force``: whatever the interval)."""
        import logging
        import time

        with self._lock:
            now = time.monotonic()
            due = self._last is None or now - self._last >= self.min_interval_s
            if not self.pending or not (due or force):
                return False
            try:
                run = self._start(deployment=self.deployment, parameters=self.parameters)
            except Exception as exc:  # Prefect away: the results stay pending (and the schedule remains)
                self.errors += 1
                logging.getLogger(__name__).warning("could not start %s: %s", self.deployment, exc)
                return False
            self.runs.append(run)
            self._last, self.pending = now, 0
            return True
