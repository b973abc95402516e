"""The live plugin: a RunEngine callback that inverts rocking curves off the RunEngine's thread.

Subscribe a :class:`LiveInversion` to a RunEngine (or to a 0MQ
``RemoteDispatcher``). Documents go through an :class:`event_model.RunRouter`
whose factory builds a :class:`~.collector.RunCollector` for each rocking-curve
run; completed curves go into a bounded queue; one worker thread takes every
curve waiting (up to ``max_batch``), inverts them together (one network call,
:meth:`~xrd_strain_plugin.inference.invert.Inverter.invert_many`; the one
``Inverter`` path) and builds the result records; a second thread publishes
all records waiting in one write (straight to Tiled, or to the spool while
Tiled is away), so that writing one batch overlaps inverting the next. Under
load batches grow by themselves; an idle plugin answers each curve alone.

Guarantees
----------
- Nothing raises into the RunEngine: document handling and the worker catch,
  log and record every exception (``error`` status).
- The RunEngine is never held: the memory queue is bounded (``queue_size``);
  beyond it curves wait on disk (``overflow``) in order, so memory stays
  bounded under any burst and no curve is dropped.
- :meth:`LiveInversion.close` drains everything before returning.
- The inverter is built (model loaded, warmed up) before the first run, so a
  bad model fails at start; so does a Tiled that refuses the API key.
- With a ``refiner`` (:class:`~.refiner.RefinementWorker`), each ``ok`` result is
  refined afterwards in a separate process and written beside the network's
  answer; the network's result never waits for it.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import pathlib
import queue
import tempfile
import threading
import time
from collections.abc import Callable

import event_model
import numpy as np

from xrd_strain_plugin.results import ResultRecord, base_metadata

from .collector import CurveJob, RunCollector
from .detection import RockingCurveConfig, plan_from_start
from .records import record_from_job, reflection_for

log = logging.getLogger(__name__)

_STOP = object()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    """What happened to one curve (kept for statistics and the benchmark).

    ``latency_s`` runs from the curve's completion (stop document) to the
    return of the Tiled write (or of the spool append).
    """

    path: tuple[str, ...]
    status: str
    written: bool
    latency_s: float | None
    batch_size: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Prepare:
    raw_uid: str
    curve_index: int | None


class LiveInversion:
    """Bluesky callback turning rocking curves into strain/DW profiles in Tiled.

    Parameters
    ----------
    inverter : object
        Has ``invert(two_theta_deg, intensity, reflection) -> InversionResult``
        and ``bundle``, and preferably ``invert_many`` (usually an
        ``Inverter``, or a registry-following ``CurrentModel``).
    publisher : SpoolingPublisher
        Writes records to Tiled, spooling while Tiled is away.
    config : RockingCurveConfig, optional
        Field/axis overrides and the default material, reflection, wavelength.
    queue_size : int, optional
        Curves kept in memory; more wait on disk in ``overflow_directory``.
    max_batch : int, optional
        Most curves inverted (and records written) together.
    overflow_directory : path, optional
        Where curves beyond ``queue_size`` wait (default: ``overflow/`` in the
        publisher's spool directory, else a temporary directory). Curves left
        there by a process that died are picked up by the next one.
    refiner : RefinementWorker, optional
        Refines ``ok`` results in the background, beside the network's answer.
    on_outcome : callable, optional
        ``on_outcome(Outcome)`` called from the publishing thread after each publish.

    Examples
    --------
    >>> live = LiveInversion(Inverter(load_bundle(path)), publisher)  # doctest: +SKIP
    >>> RE.subscribe(live)  # doctest: +SKIP
    >>> RE(scan([det], omega, 16.5, 18.5, 401))  # doctest: +SKIP
    >>> live.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        inverter,
        publisher,
        *,
        config: RockingCurveConfig = RockingCurveConfig(),
        queue_size: int = 64,
        max_batch: int = 32,
        overflow_directory=None,
        refiner=None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ):
        self.inverter = inverter
        self.publisher = publisher
        self.config = config
        self.max_batch = max(1, int(max_batch))
        self.refiner = refiner
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        if overflow_directory is None:
            spool = getattr(publisher, "spool", None)
            overflow_directory = (
                pathlib.Path(spool.directory) / "overflow"
                if spool is not None
                else pathlib.Path(tempfile.mkdtemp(prefix="xrd-strain-overflow-"))
            )
        self._overflow = _Overflow(overflow_directory)
        self._lock = threading.Lock()
        self._router = event_model.RunRouter([self.factory])
        self._on_outcome = on_outcome
        self._result_callbacks: list = []
        self.outcomes: collections.deque[Outcome] = collections.deque(maxlen=10_000)
        self.counts = collections.Counter()
        self.peak_queue_depth = 0
        self.peak_overflow = 0
        self._in_flight = len(self._overflow)
        self._orphans: set = set()
        self._closed = False
        self._out: queue.Queue = queue.Queue(maxsize=8)
        self._threads = [
            threading.Thread(target=self._invert_loop, name="xrd-strain-invert", daemon=True),
            threading.Thread(target=self._publish_loop, name="xrd-strain-publish", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @classmethod
    def from_uri(
        cls,
        uri: str,
        *,
        spool_directory,
        api_key: str | None = None,
        bundle=None,
        config: RockingCurveConfig = RockingCurveConfig(),
        retry_interval_s: float = 2.0,
        refine: bool = False,
        refine_global_budget_s: float = 30.0,
        **kwargs,
    ) -> "LiveInversion":
        """Load the model (and warm it up), open the spool, and prepare writing to ``uri``.

        Tiled need not be reachable now: results wait in the spool until it is.

        Parameters
        ----------
        uri : str
            Tiled server URL.
        spool_directory : path
            Durable spool for results while Tiled is away (locked to this process).
        api_key : str, optional
            Tiled API key allowed to write.
        bundle : path or str, optional
            Model bundle directory or registry reference ``model_id[@version]``; default: the
            registry's current model for the config's reflection, picked up again after each
            promotion (:class:`~xrd_strain_plugin.inference.registry.CurrentModel`).
        config : RockingCurveConfig
            Run recognition and default reflection.
        retry_interval_s : float
            Seconds between spool replay attempts while Tiled is away.
        refine : bool
            Refine each ``ok`` result in a background process (:class:`~.refiner.RefinementWorker`).
        refine_global_budget_s : float
            CPU seconds of the refiner's global stage for a fit that stays poor (0: local stages only).
        **kwargs
            Passed to the constructor (``queue_size``, ``max_batch``, ``on_outcome``...).

        Raises
        ------
        xrd_strain_plugin.inference.BundleError
            If the bundle is missing, corrupt or inconsistent (at start, not mid-run).
        xrd_strain_plugin.tiled.TiledAuthError
            If Tiled answers but refuses the API key (or its absence) for writing.
        """
        from xrd_strain_plugin.inference import Inverter
        from xrd_strain_plugin.inference.registry import CurrentModel, ModelKey, ModelRegistry
        from xrd_strain_plugin.tiled.spool import Spool, SpoolingPublisher
        from xrd_strain_plugin.tiled.writer import TiledResultsWriter, check_credentials

        from .records import reflection_for, warm_up

        # Credentials are checked now (a refused key is a configuration error, not an outage);
        # an unreachable Tiled is fine: results wait in the spool.
        first = {"writer": check_credentials(uri, api_key=api_key, tables="deferred")}

        def warm(inverter):
            card = inverter.bundle.card
            warm_up(inverter, reflection_for(card.material, tuple(card.hkl), card.wavelength_angstrom))

        if bundle is None:  # the registry's current model, followed between runs (no restart)
            inverter = CurrentModel(
                ModelRegistry(),
                ModelKey(material=config.material, hkl=config.hkl, wavelength_angstrom=config.wavelength_angstrom),
                warm_up=warm,
            )
        else:  # a bundle directory or model_id[@version]
            inverter = Inverter(ModelRegistry().resolve(bundle).path)
            warm(inverter)

        def connect():
            writer = first.pop("writer", None)
            # Per-result tables when idle: a burst is written at the rate of nodes + arrays rows.
            return (
                writer if writer is not None else TiledResultsWriter.from_uri(uri, api_key=api_key, tables="deferred")
            )

        publisher = SpoolingPublisher(connect, Spool(spool_directory), retry_interval_s=retry_interval_s)
        refiner = None
        if refine:
            from .refiner import RefinementWorker

            refiner = RefinementWorker(uri, api_key=api_key, global_budget_s=refine_global_budget_s)
        return cls(inverter, publisher, config=config, refiner=refiner, **kwargs)

    def _refined(self, outcome: dict) -> None:
        """A refinement finished: its derived run goes to the result subscribers."""
        if not self._result_callbacks or outcome.get("status") != "done" or not outcome.get("arrays"):
            return
        from .derived import refined_documents

        try:
            docs = refined_documents(outcome["path"], outcome, outcome.get("meta") or {})
        except Exception:
            log.exception("xrd-strain: could not compose the documents of refinement %s", outcome["path"])
            return
        self._send_documents(docs)

    # -- document side (RunEngine thread) -------------------------------------------------
    def __call__(self, name: str, doc: dict) -> None:
        """Route one document; never raises."""
        try:
            self._router(name, doc)
        except KeyError as exc:
            # Documents of a run whose start we never saw (a listener started mid-run): ignore them,
            # with one warning per run rather than one per event.
            self.counts["orphan_documents"] += 1
            run = doc.get("run_start") or doc.get("descriptor") or doc.get("uid")
            if run not in self._orphans:
                if len(self._orphans) > 1000:
                    self._orphans.clear()
                self._orphans.add(run)
                log.warning("xrd-strain: ignoring %s document of a run whose start was not seen (%s)", name, exc)
        except Exception:
            self.counts["document_errors"] += 1
            log.exception("xrd-strain: could not route %s document", name)

    def factory(self, name: str, start: dict):
        """RunRouter factory: a :class:`RunCollector` for rocking-curve runs, nothing otherwise."""
        try:
            plan = plan_from_start(start, self.config)
        except Exception as exc:
            log.exception("xrd-strain: unreadable start document %s", start.get("uid"))
            md = base_metadata(
                status="error",
                raw_uid=start["uid"],
                curve_index=None,
                reason=f"unreadable start document: {type(exc).__name__}: {exc}",
                scan_id=start.get("scan_id"),
            )
            self.submit(ResultRecord(raw_uid=start["uid"], curve_index=None, metadata=md))
            return [], []
        if plan is None:
            return [], []
        return [RunCollector(plan, self.submit)], []

    def submit(self, item: CurveJob | ResultRecord) -> None:
        """Queue a completed curve or a ready record; never blocks (beyond ``queue_size``, on disk)."""
        if self._closed:
            raise RuntimeError("LiveInversion is closed")
        with self._lock:
            self._in_flight += 1
            if len(self._overflow) == 0:
                try:
                    self._queue.put_nowait(item)
                    self.peak_queue_depth = max(self.peak_queue_depth, self._queue.qsize())
                    return
                except queue.Full:
                    self.counts["overflow_episodes"] += 1
                    log.warning(
                        "xrd-strain: %d curves waiting in memory; further curves wait on disk in %s",
                        self._queue.maxsize,
                        self._overflow.directory,
                    )
            # Behind the memory queue (or behind curves already on disk): keep the order.
            self._overflow.put(item)
            self.counts["overflow"] += 1
            self.peak_overflow = max(self.peak_overflow, len(self._overflow))

    def subscribe_results(self, callback) -> None:
        """Give ``callback(name, doc)`` each result as the documents of a derived run (linked to the
        raw run by uid; :mod:`.derived`), once the result is written or spooled. Called from the
        publishing thread; an exception in ``callback`` is logged and contained. With a refiner,
        each finished refinement follows as a derived run of its own (``xrd_strain.kind`` =
        ``refined``)."""
        self._result_callbacks.append(callback)
        if self.refiner is not None and getattr(self.refiner, "on_outcome", None) is None:
            self.refiner.on_outcome = self._refined

    # -- worker side: two stages, so that one batch is inverted while the last one is written --
    def _next_batch(self) -> list | None:
        """Every item waiting (oldest first, at most ``max_batch``); blocks for the first one."""
        batch: list = []
        while not batch:
            with self._lock:
                if self._queue.empty() and len(self._overflow):
                    return self._overflow.take(self.max_batch)
            try:
                batch.append(self._queue.get(timeout=0.2))
            except queue.Empty:
                continue
        while len(batch) < self.max_batch and batch[-1] is not _STOP:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _invert_loop(self):
        while True:
            batch = self._next_batch()
            stop = batch and batch[-1] is _STOP
            items = batch[:-1] if stop else batch
            try:
                for item in items:
                    if isinstance(item, CurveJob) and item.curve_index is not None:
                        # Let the publishing thread create the run's node while this one inverts.
                        self._out.put(_Prepare(raw_uid=item.raw_uid, curve_index=item.curve_index))
                if items:
                    self._out.put(self._to_records(items))
            except Exception:  # the stage must survive anything
                self.counts["worker_errors"] += 1
                log.exception("xrd-strain: inversion stage failed on a batch of %d", len(items))
                with self._lock:
                    self._in_flight -= len(items)
            if stop:
                self._out.put(_STOP)
                return

    def _to_records(self, items) -> list:
        """``[(record, completed_at, start_profile_or_None), ...]`` for a batch, in order."""
        jobs = [item for item in items if isinstance(item, CurveJob)]
        refresh = getattr(self.inverter, "refresh", None)  # a registry-following inverter
        if refresh is not None:
            # A newly promoted model answers from the next run on. Runs already waiting in this
            # batch when a promotion is noticed are answered by the new model too.
            for job in jobs:
                refresh(job.raw_uid)
        answers = self._invert_batch(jobs) if len(jobs) > 1 else {}
        out = []
        for item in items:
            if not isinstance(item, CurveJob):
                out.append((item, None, None))
                continue
            try:
                inverter = _Answered(self.inverter, answers.get(id(item)))
                record = record_from_job(item, inverter)
                if id(item) in answers and isinstance(record.metadata.get("timings"), dict):
                    record.metadata["timings"]["invert_batch_s"] = answers["batch_s"]
                    record.metadata["timings"]["batch_size"] = len(jobs)
                out.append((record, item.completed_at, inverter.last))
            except Exception as exc:  # record_from_job records its own failures; this is a last resort
                md = base_metadata(
                    status="error",
                    raw_uid=item.raw_uid,
                    curve_index=item.curve_index,
                    reason=f"plugin error: {type(exc).__name__}: {exc}",
                    scan_id=item.scan_id,
                    sample=item.sample,
                )
                out.append(
                    (
                        ResultRecord(raw_uid=item.raw_uid, curve_index=item.curve_index, metadata=md),
                        item.completed_at,
                        None,
                    )
                )
        return out

    def _invert_batch(self, jobs) -> dict:
        """One ``invert_many`` call per reflection among ``jobs``: ``{id(job): result or exception}``."""
        invert_many = getattr(self.inverter, "invert_many", None) or getattr(
            getattr(self.inverter, "inverter", None), "invert_many", None
        )
        if invert_many is None:
            return {}
        answers: dict = {}
        t0 = time.perf_counter()
        groups: dict = {}
        for job in jobs:
            groups.setdefault((job.material, tuple(job.hkl), float(job.wavelength_angstrom)), []).append(job)
        for (material, hkl, wavelength), members in groups.items():
            try:
                refl = reflection_for(material, hkl, wavelength)
                results = invert_many([(j.two_theta_deg, j.intensity) for j in members], refl)
            except Exception:  # e.g. a reflection the model does not know: each curve says why, alone
                continue
            answers.update({id(j): r for j, r in zip(members, results)})
        answers["batch_s"] = time.perf_counter() - t0
        return answers

    def _publish_loop(self):
        while True:
            try:
                item = self._out.get(timeout=max(0.1, min(1.0, getattr(self.publisher, "retry_interval_s", 1.0))))
            except queue.Empty:
                self._idle()
                continue
            entries, stop = [], False
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Prepare):
                    self._prepare(item)
                else:
                    entries.extend(item)
                if stop or len(entries) >= self.max_batch:
                    break
                try:
                    item = self._out.get_nowait()
                except queue.Empty:
                    break
            try:
                if entries:
                    self._publish(entries)
            except Exception:
                self.counts["worker_errors"] += 1
                log.exception("xrd-strain: publishing stage failed")
            finally:
                with self._lock:
                    self._in_flight -= len(entries)
            if stop:
                return
            if self._out.empty():
                self._idle()

    def _prepare(self, item: _Prepare) -> None:
        if hasattr(self.publisher, "prepare"):
            self.publisher.prepare(**dataclasses.asdict(item))

    def _idle(self):
        """Nothing to publish: replay the spool, create ahead what the next write will use, and
        collect finished refinements (their documents go to the result subscribers)."""
        if self.refiner is not None:
            try:
                self.refiner.poll()
            except Exception:
                log.exception("xrd-strain: could not read the refiner's outcomes")
        try:
            self.publisher.flush()
            if hasattr(self.publisher, "prepare"):
                self.publisher.prepare()
        except Exception:
            log.exception("xrd-strain: spool replay failed")

    def _publish(self, entries):
        records = [e[0] for e in entries]
        publish_many = getattr(self.publisher, "publish_many", None)
        if publish_many is not None:
            results = publish_many(records)
        else:
            results = []
            for record in records:
                try:
                    results.append(self.publisher.publish(record))
                except Exception as exc:
                    results.append(exc)
        if getattr(self.publisher, "auth_error", None):
            self.counts["auth_errors"] += 1
        now = time.perf_counter()
        for (record, t0, start), written in zip(entries, results):
            if isinstance(written, BaseException):
                # A permanent refusal by Tiled (an invalid record): record why, in place of the result.
                log.error("xrd-strain: Tiled refused result %s: %s", "/".join(record.path), written)
                md = dict(
                    record.metadata,
                    status="error",
                    reason=f"Tiled refused the result: {type(written).__name__}: {written}",
                )
                record = ResultRecord(raw_uid=record.raw_uid, curve_index=record.curve_index, metadata=md)
                written = self.publisher.publish(record)
            self.counts[record.status] += 1
            self.counts["written" if written else "spooled"] += 1
            outcome = Outcome(
                path=record.path,
                status=record.status,
                written=bool(written),
                latency_s=None if t0 is None else now - t0,
                batch_size=len(entries),
            )
            self.outcomes.append(outcome)
            if self.refiner is not None and written and record.status == "ok" and start is not None:
                self.refiner.submit(record, start)
            if self._on_outcome is not None:
                self._on_outcome(outcome)
            if self._result_callbacks:
                self._emit_documents(record)

    def _emit_documents(self, record) -> None:
        from .derived import result_documents

        try:
            docs = result_documents(record)
        except Exception:
            log.exception("xrd-strain: could not compose the documents of result %s", "/".join(record.path))
            return
        self._send_documents(docs)

    def _send_documents(self, docs) -> None:
        for callback in self._result_callbacks:
            for name, doc in docs:
                try:
                    callback(name, doc)
                except Exception:
                    self.counts["result_callback_errors"] += 1
                    log.exception("xrd-strain: a result subscriber failed on a %s document", name)
                    break

    # -- lifecycle ----------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted curve is handled (written or spooled); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._in_flight > 0:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float | None = None, *, refine_drain: bool = True, refine_grace_s: float = 20.0) -> None:
        """Drain everything (every curve inverted, and written or spooled), then stop the threads
        and the refiner: after its queue (``refine_drain``), or bounded (a service stopping: the
        refinement in progress gets ``refine_grace_s``, queued results are left for the flow;
        :meth:`~.refiner.RefinementWorker.close`)."""
        if self._closed:
            return
        self.wait(timeout)
        self._closed = True
        self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        if self.refiner is not None:
            self.refiner.close(timeout, drain=refine_drain, grace_s=refine_grace_s)


class _Answered:
    """The inverter as ``record_from_job`` sees it: the answer already computed for this curve in a
    batch (a result or the exception it raised), else the real inverter's; keeps the answer
    (``last``) for the refiner."""

    def __init__(self, inverter, answer=None):
        self._inverter = inverter
        self.bundle = inverter.bundle
        self._answer = answer
        self.last = None

    def invert(self, two_theta_deg, intensity, reflection):
        answer = self._answer
        if answer is None:
            answer = self._inverter.invert(two_theta_deg, intensity, reflection)
        if isinstance(answer, BaseException):
            raise answer
        self.last = answer
        return answer


class _Overflow:
    """Curves beyond the memory queue, waiting on disk in order (one ``.npz`` per item).

    Not fsync'd: this relieves memory, it is not the durability of results (that is the
    spool's). Items left by a process that died are taken by the next one on the directory.
    """

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".tmp-*"):
            stale.unlink()
        self._files = collections.deque(sorted(self.directory.glob("*.npz")))
        self._next = int(self._files[-1].stem) + 1 if self._files else 0

    def __len__(self) -> int:
        return len(self._files)

    def put(self, item) -> None:
        path = self.directory / f"{self._next:012d}.npz"
        self._next += 1
        tmp = self.directory / f".tmp-{path.name}"
        if isinstance(item, CurveJob):
            fields = dataclasses.asdict(item)
            arrays = {k: np.asarray(v) for k, v in fields.items() if isinstance(v, np.ndarray)}
            meta = {"kind": "job", "fields": {k: v for k, v in fields.items() if k not in arrays}}
        else:
            arrays = {f"a:{k}": np.asarray(v) for k, v in item.arrays.items()}
            meta = {
                "kind": "record",
                "raw_uid": item.raw_uid,
                "curve_index": item.curve_index,
                "metadata": item.metadata,
            }
        with open(tmp, "wb") as fh:
            np.savez(fh, __meta__=np.frombuffer(json.dumps(meta, default=_plain).encode(), dtype=np.uint8), **arrays)
        tmp.replace(path)
        self._files.append(path)

    def take(self, n: int) -> list:
        items = []
        while self._files and len(items) < n:
            path = self._files.popleft()
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(data["__meta__"].tobytes().decode())
                arrays = {k: data[k] for k in data.files if k != "__meta__"}
            path.unlink()
            if meta["kind"] == "job":
                fields = dict(meta["fields"], **arrays)
                fields["hkl"] = tuple(fields["hkl"])
                items.append(CurveJob(**fields))
            else:
                items.append(
                    ResultRecord(
                        raw_uid=meta["raw_uid"],
                        curve_index=meta["curve_index"],
                        metadata=meta["metadata"],
                        arrays={k[2:]: v for k, v in arrays.items()},
                    )
                )
        return items


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-able: {type(value).__name__}")
