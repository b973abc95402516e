"""Live refinement: each network result refined in a separate process, written beside it in Tiled.

Refinement costs ~1-3 s of CPU per curve and holds the GIL much of that time, so it runs in
its own process (started with ``spawn``: no copy of the parent's TensorFlow or threads),
at a lower scheduling priority. The live callback hands it a result once the network's answer
is written; the process claims the result node, refines from the network's profile and writes
the refined profile into the same node (or marks it failed), through
:func:`~xrd_strain_plugin.tiled.refinement.claim_and_refine`, the step the Prefect flow takes too
(the claim holds exactly once among all refiners). Nothing waits
for it: when its queue is full a result is simply left ``refinement.status = "none"`` for the
flow ``refine_new_results`` to pick up, and so are the queued results when a service stops it
(:meth:`RefinementWorker.close` with ``drain=False``: bounded, the claim in progress released).
How far behind it is (:attr:`RefinementWorker.backlog`) is logged every ``report_interval_s``.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import queue
import time

import numpy as np

log = logging.getLogger(__name__)


class RefinementWorker:
    """Processes refining results in the background.

    Parameters
    ----------
    uri : str
        Tiled server URL.
    api_key : str, optional
        Key allowed to write.
    budget_s, global_budget_s : float
        CPU budgets of one refinement and of its global stage (``RefineOptions``; 0 disables the
        global stage).
    max_pending : int
        Results waiting for the process; beyond, results are left for the flow.
    niceness : int
        Added to the process's nice value, so the live path keeps the CPU it needs.
    results_key : str
        Container of the result nodes.
    report_interval_s : float
        How often the backlog is logged.
    on_outcome : callable, optional
        ``on_outcome(outcome)`` for each finished refinement, from :meth:`poll` (in the caller's
        thread); a ``done`` outcome then carries the refined ``arrays`` and the network result's
        ``meta`` (sample, raw uid, wavelength...), which are not kept afterwards.
    library : str, optional
        A proposal library file (the model bundle's ``library.npz``) whose nearest profiles the
        search screens (``RefineOptions.library``).
    processes : int
        Refining processes sharing the queue (each refines one result at a time, on one core). 1
        keeps a core for the live path on a small beamline PC; more clear a burst sooner.
    options : dict, optional
        Further ``RefineOptions`` fields (e.g. ``{"n_rescan": 0}`` or a smaller ``search``); they
        override ``budget_s``, ``global_budget_s`` and ``library`` where they name them too.
    """

    def __init__(
        self,
        uri: str,
        *,
        api_key: str | None = None,
        budget_s: float = 60.0,
        global_budget_s: float = 30.0,
        max_pending: int = 256,
        niceness: int = 10,
        results_key: str = "results",
        report_interval_s: float = 60.0,
        on_outcome=None,
        library: str | None = None,
        processes: int = 1,
        options: dict | None = None,
    ):
        if int(processes) < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        from xrd_strain_plugin.refinement import RefineOptions

        options = {"budget_s": budget_s, "global_budget_s": global_budget_s, "library": library, **(options or {})}
        RefineOptions(**options)  # a bad field fails here, not in the process
        ctx = multiprocessing.get_context("spawn")
        self.on_outcome = on_outcome
        self._todo = ctx.Queue(maxsize=max_pending)
        self._done = ctx.Queue()
        self._stop = ctx.Event()
        self.uri, self.api_key = uri, api_key
        self.results_key = results_key
        self.report_interval_s = float(report_interval_s)
        self.counts = collections.Counter()
        self.finished: collections.deque = collections.deque(maxlen=10_000)
        self._working: dict[str, float] = {}  # path -> when the process claimed it (not finished yet)
        self._last_report = time.monotonic()
        self._processes = [
            ctx.Process(
                target=_main,
                name=f"xrd-strain-refiner-{k}",
                daemon=True,
                args=(
                    uri,
                    api_key,
                    options,
                    niceness,
                    self._todo,
                    self._done,
                    self._stop,
                ),
            )
            for k in range(int(processes))
        ]
        for process in self._processes:
            process.start()

    def _alive(self) -> list:
        return [p for p in self._processes if p.is_alive()]

    @property
    def backlog(self) -> int:
        """Results handed over and not finished yet (queued or being refined): how far behind it is."""
        return max(0, self.counts["submitted"] - len(self.finished))

    def submit(self, record, start) -> bool:
        """Queue the refinement of a written ``ok`` record (``start``: its InversionResult). Never blocks.

        Return False when the queue is full (the result stays ``none`` for the flow).
        """
        from xrd_strain_plugin.refinement import StartProfile

        md = record.metadata
        item = {
            "path": "/".join((self.results_key, *record.path)),
            "two_theta_deg": np.asarray(start.two_theta_deg, dtype=float),
            "counts": np.asarray(start.intensity_measured, dtype=float),
            "material": md.get("material"),
            "hkl": tuple(md.get("reflection", {}).get("hkl", ())),
            "wavelength_angstrom": md.get("wavelength_angstrom"),
            "start": StartProfile.from_inversion(start),
            "meta": {
                k: md.get(k) for k in ("raw_uid", "curve_index", "sample", "scan_id", "wavelength_angstrom", "model")
            },
            "arrays_back": self.on_outcome is not None,
            "queued_at": time.time(),
        }
        try:
            self._todo.put_nowait(item)
        except queue.Full:
            self.counts["skipped"] += 1
            log.info("xrd-strain: refinement queue full; %s left for refine_new_results", item["path"])
            return False
        self.counts["submitted"] += 1
        self.poll()
        if time.monotonic() - self._last_report >= self.report_interval_s:
            self._last_report = time.monotonic()
            log.info(
                "xrd-strain: refiner backlog %d (submitted %d, done %d, failed %d, left for the flow %d)",
                self.backlog,
                self.counts["submitted"],
                self.counts["done"],
                self.counts["failed"],
                self.counts["skipped"],
            )
        return True

    def poll(self) -> list[dict]:
        """Outcomes reported by the process since the last call (``{"path", "status", ...}``)."""
        got = []
        while True:
            try:
                got.append(self._done.get_nowait())
            except queue.Empty:
                break
        for outcome in got:
            if outcome["status"] == "started":  # claimed; refining now
                self._working[outcome["path"]] = time.time()
                continue
            self._working.pop(outcome["path"], None)
            self.counts[outcome["status"]] += 1
            if self.on_outcome is not None:
                try:
                    self.on_outcome(outcome)
                except Exception:
                    log.exception("xrd-strain: the refinement outcome callback failed on %s", outcome["path"])
            outcome.pop("arrays", None)  # kept: the figures only (10 000 outcomes stay small)
            self.finished.append(outcome)
        return [o for o in got if o["status"] != "started"]

    def wait(self, n: int, timeout: float) -> bool:
        """Block until ``n`` refinements have finished in total (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while len(self.finished) < n:
            self.poll()
            if time.monotonic() > deadline or not self._alive():
                return len(self.finished) >= n
            time.sleep(0.05)
        return True

    def close(self, timeout: float | None = None, *, drain: bool = True, grace_s: float = 20.0) -> None:
        """Stop the processes.

        Parameters
        ----------
        timeout : float, optional
            With ``drain``: longest wait for the queued refinements (None: no limit).
        drain : bool
            True: finish every queued refinement first (tests, the demo). False: a bounded stop
            (a service's SIGTERM): the refinement in progress may finish within ``grace_s``;
            queued results, never claimed, stay ``refinement.status = "none"`` for the flow
            ``refine_new_results``; a claim cut short is released (the result is offered again).
        grace_s : float
            Without ``drain``: seconds the refinement in progress gets before the process is
            terminated.
        """
        if self._alive():
            if drain:
                for _ in self._processes:  # one end marker per process
                    self._todo.put(None)
                deadline = None if timeout is None else time.monotonic() + timeout
                for p in self._processes:
                    p.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            else:
                self._stop.set()
                for _ in self._processes:
                    try:
                        self._todo.put_nowait(None)  # wakes a process waiting for work
                    except queue.Full:
                        break
                deadline = time.monotonic() + grace_s
                for p in self._processes:
                    p.join(max(0.0, deadline - time.monotonic()))
            for p in self._alive():
                p.terminate()
                p.join(5)
        self.poll()
        left = self.backlog - len(self._working)
        if self._working:
            self._release(list(self._working))
        if left > 0 or self.counts["released"]:
            log.info(
                "xrd-strain: refiner stopped; %d queued result(s) left for refine_new_results, %d claim(s) released",
                max(0, left),
                self.counts["released"],
            )
        self.counts["left_for_flow"] += max(0, left)
        self._todo.cancel_join_thread()  # what is still queued has no reader any more: do not wait to flush it
        for q in (self._todo, self._done):  # release the queues' semaphores and feeder threads
            q.close()
            q.join_thread()

    def _release(self, paths) -> None:
        from tiled.client import from_uri

        from xrd_strain_plugin.tiled.refinement import release_refinement

        try:
            client = from_uri(self.uri, api_key=self.api_key)
            for path in paths:
                release_refinement(client[path])
                self._working.pop(path, None)
                self.counts["released"] += 1
        except Exception:  # Tiled away: the claim stays pending (find_results(refinement_status="pending"))
            log.exception("xrd-strain: could not release the refinement claims of %s", paths)


def _main(uri, api_key, options, niceness, todo, done, stop):  # pragma: no cover - runs in the child process
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s refiner: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise
    try:
        os.nice(niceness)
    except OSError:
        pass
    from tiled.client import from_uri

    from xrd_strain_plugin.refinement import RefineOptions
    from xrd_strain_plugin.reflection_cache import cached_reflection as make_reflection
    from xrd_strain_plugin.tiled.refinement import claim_and_refine

    client = None
    options = RefineOptions(**options)
    worker = f"live-refiner:{os.getpid()}"
    while not stop.is_set():
        item = todo.get()
        if item is None or stop.is_set():
            return
        t0 = time.perf_counter()
        outcome = {"path": item["path"], "queued_s": time.time() - item["queued_at"], "meta": item.get("meta")}

        def inputs(item=item):
            refl = make_reflection(item["material"], tuple(item["hkl"]), float(item["wavelength_angstrom"]))
            return item["two_theta_deg"], item["counts"], refl, item["start"]

        try:
            if client is None:
                client = from_uri(uri, api_key=api_key)
            got = claim_and_refine(
                client[item["path"]],
                worker=worker,
                options=options,
                inputs=inputs,
                on_claimed=lambda path=item["path"]: done.put({"path": path, "status": "started"}),
            )
        except Exception as exc:  # Tiled away before the claim: leave it "none" for the flow
            client = None
            outcome.update(status="not_claimed", reason=f"{type(exc).__name__}: {exc}")
            done.put(outcome)
            continue
        outcome["status"] = got.status
        if got.status == "claimed_elsewhere":
            done.put(outcome)
            continue
        if got.status == "done":
            outcome.update(sigma_i=got.result.sigma_i, sigma_i_start=got.result.sigma_i_start)
            if item.get("arrays_back"):
                outcome["arrays"] = {k: np.asarray(v, dtype=float) for k, v in got.result.arrays().items()}
        else:
            outcome["reason"] = got.reason
        outcome["elapsed_s"] = time.perf_counter() - t0
        done.put(outcome)
