"""Live refinement: each network result refined in a separate process, written beside it in Tiled.

Refinement costs ~1-3 s of CPU per curve and holds the GIL much of that time, so it runs in
its own process (started with ``spawn``: no copy of the parent's TensorFlow or threads),
at a lower scheduling priority. The live callback hands it a result once the network's answer
is written; the process claims the result node (:func:`~xrd_strain_plugin.tiled.refinement.
claim_refinement`: exactly once even with other refiners, e.g. the Prefect flow), refines
from the network's profile and writes the refined profile into the same node. Nothing waits
for it: when its queue is full a result is simply left ``refinement.status = "none"`` for the
flow ``refine_new_results`` to pick up.
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
    """A process refining results in the background.

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
    """

    def __init__(self, uri: str, *, api_key: str | None = None, budget_s: float = 3.0, global_budget_s: float = 12.0,
                 max_pending: int = 256,
                 niceness: int = 10, results_key: str = "results"):
        ctx = multiprocessing.get_context("spawn")
        self._todo = ctx.Queue(maxsize=max_pending)
        self._done = ctx.Queue()
        self.results_key = results_key
        self.counts = collections.Counter()
        self.finished: collections.deque = collections.deque(maxlen=10_000)
        self._process = ctx.Process(target=_main, name="xrd-strain-refiner", daemon=True,
                                    args=(uri, api_key, {"budget_s": budget_s, "global_budget_s": global_budget_s},
                                          niceness, self._todo, self._done))
        self._process.start()

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
            "material": md.get("material"), "hkl": tuple(md.get("reflection", {}).get("hkl", ())),
            "wavelength_angstrom": md.get("wavelength_angstrom"),
            "start": StartProfile.from_inversion(start),
            "queued_at": time.time(),
        }
        try:
            self._todo.put_nowait(item)
        except queue.Full:
            self.counts["skipped"] += 1
            log.info("xrd-strain: refinement queue full; %s left for refine_new_results", item["path"])
            return False
        self.counts["submitted"] += 1
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
            self.counts[outcome["status"]] += 1
            self.finished.append(outcome)
        return got

    def wait(self, n: int, timeout: float) -> bool:
        """Block until ``n`` refinements have finished in total (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while len(self.finished) < n:
            self.poll()
            if time.monotonic() > deadline or not self._process.is_alive():
                return len(self.finished) >= n
            time.sleep(0.05)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued refinements, then stop the process."""
        if self._process.is_alive():
            self._todo.put(None)
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
        self.poll()
        for q in (self._todo, self._done):  # release the queues' semaphores and feeder threads
            q.close()
            q.join_thread()


def _main(uri, api_key, options, niceness, todo, done):  # pragma: no cover - runs in the child process
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s refiner: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request is noise
    try:
        os.nice(niceness)
    except OSError:
        pass
    from tiled.client import from_uri

    from xrd_strain_plugin.physics.materials import reflection as make_reflection
    from xrd_strain_plugin.refinement import RefineOptions, refine_curve
    from xrd_strain_plugin.tiled.refinement import claim_refinement, fail_refinement, write_refinement

    client = None
    options = RefineOptions(**options)
    worker = f"live-refiner:{os.getpid()}"
    while True:
        item = todo.get()
        if item is None:
            return
        t0 = time.perf_counter()
        outcome = {"path": item["path"], "queued_s": time.time() - item["queued_at"]}
        try:
            if client is None:
                client = from_uri(uri, api_key=api_key)
            node = client[item["path"]]
            if not claim_refinement(node, worker=worker):
                outcome["status"] = "claimed_elsewhere"
                done.put(outcome)
                continue
        except Exception as exc:  # Tiled away: leave it "none" for the flow
            client = None
            outcome.update(status="not_claimed", reason=f"{type(exc).__name__}: {exc}")
            done.put(outcome)
            continue
        try:
            refl = make_reflection(item["material"], tuple(item["hkl"]), float(item["wavelength_angstrom"]))
            result = refine_curve(item["two_theta_deg"], item["counts"], refl, start=item["start"], options=options)
            write_refinement(node, result)
            outcome.update(status="done", sigma_i=result.sigma_i, sigma_i_start=result.sigma_i_start)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            try:
                fail_refinement(node, reason=reason)
            except Exception:
                pass
            outcome.update(status="failed", reason=reason)
        outcome["elapsed_s"] = time.perf_counter() - t0
        done.put(outcome)
