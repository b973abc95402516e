"""The live plugin: a RunEngine callback that inverts rocking curves off the RunEngine's thread.

Subscribe a :class:`LiveInversion` to a RunEngine (or to a 0MQ
``RemoteDispatcher``). Documents go through an :class:`event_model.RunRouter`
whose factory builds a :class:`~.collector.RunCollector` for each rocking-curve
run; completed curves go into a bounded queue; one worker thread validates,
inverts (the one :class:`~xrd_strain_plugin.inference.invert.Inverter` path)
and builds the result record; a second thread publishes records in order
(straight to Tiled, or to the spool while Tiled is away), so that writing one
result overlaps inverting the next.

Guarantees
----------
- Nothing raises into the RunEngine: document handling and the worker catch,
  log and record every exception (``error`` status).
- The queue is bounded (``queue_size``): when the worker falls that far behind,
  ``submit`` blocks the caller until there is room (back-pressure, logged),
  so memory stays bounded and no curve is dropped.
- :meth:`LiveInversion.close` drains the queue before returning.
- The inverter is built (model loaded, warmed up) before the first run, so a
  bad model fails at start.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable

import event_model

from xrd_strain_plugin.tiled.layout import ResultRecord, base_metadata

from .collector import CurveJob, RunCollector
from .detection import RockingCurveConfig, plan_from_start
from .records import record_from_job

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Prepare:
    raw_uid: str
    curve_index: int | None
    scan_id: int | None
    sample: str | None


class LiveInversion:
    """Bluesky callback turning rocking curves into strain/DW profiles in Tiled.

    Parameters
    ----------
    inverter : object
        Has ``invert(two_theta_deg, intensity, reflection) -> InversionResult``
        and ``bundle`` (the loaded model bundle); usually
        ``Inverter(load_bundle(path))``.
    publisher : SpoolingPublisher
        Writes records to Tiled, spooling while Tiled is away.
    config : RockingCurveConfig, optional
        Field/axis overrides and the default material, reflection, wavelength.
    queue_size : int, optional
        Curves allowed to wait for the worker before ``submit`` blocks.
    on_outcome : callable, optional
        ``on_outcome(Outcome)`` called from the worker after each publish.

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
        on_outcome: Callable[[Outcome], None] | None = None,
    ):
        self.inverter = inverter
        self.publisher = publisher
        self.config = config
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._router = event_model.RunRouter([self.factory])
        self._on_outcome = on_outcome
        self.outcomes: collections.deque[Outcome] = collections.deque(maxlen=10_000)
        self.counts = collections.Counter()
        self.peak_queue_depth = 0
        self._orphans: set = set()
        self._closed = False
        self._out: queue.Queue = queue.Queue(maxsize=8)
        self._threads = [threading.Thread(target=self._invert_loop, name="xrd-strain-invert", daemon=True),
                         threading.Thread(target=self._publish_loop, name="xrd-strain-publish", daemon=True)]
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
        **kwargs
            Passed to the constructor (``queue_size``, ``on_outcome``).

        Raises
        ------
        xrd_strain_plugin.inference.BundleError
            If the bundle is missing, corrupt or inconsistent (at start, not mid-run).
        """
        from xrd_strain_plugin.inference import Inverter
        from xrd_strain_plugin.inference.registry import CurrentModel, ModelKey, ModelRegistry
        from xrd_strain_plugin.tiled.spool import Spool, SpoolingPublisher
        from xrd_strain_plugin.tiled.writer import TiledResultsWriter

        from .records import reflection_for, warm_up

        def warm(inverter):
            card = inverter.bundle.card
            warm_up(inverter, reflection_for(card.material, tuple(card.hkl), card.wavelength_angstrom))

        if bundle is None:  # the registry's current model, followed between runs (no restart)
            inverter = CurrentModel(ModelRegistry(), ModelKey(
                material=config.material, hkl=config.hkl, wavelength_angstrom=config.wavelength_angstrom),
                warm_up=warm)
        else:  # a bundle directory or model_id[@version]
            inverter = Inverter(ModelRegistry().resolve(bundle).path)
            warm(inverter)
        publisher = SpoolingPublisher(lambda: TiledResultsWriter.from_uri(uri, api_key=api_key),
                                      Spool(spool_directory), retry_interval_s=retry_interval_s)
        return cls(inverter, publisher, config=config, **kwargs)

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
            md = base_metadata(status="error", raw_uid=start["uid"], curve_index=None,
                               reason=f"unreadable start document: {type(exc).__name__}: {exc}",
                               scan_id=start.get("scan_id"))
            self.submit(ResultRecord(raw_uid=start["uid"], curve_index=None, metadata=md))
            return [], []
        if plan is None:
            return [], []
        return [RunCollector(plan, self.submit)], []

    def submit(self, item: CurveJob | ResultRecord) -> None:
        """Queue a completed curve or a ready record; blocks only when the queue is full."""
        if self._closed:
            raise RuntimeError("LiveInversion is closed")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.counts["backpressure"] += 1
            log.warning("xrd-strain: %d curves waiting; holding the caller until the worker catches up",
                        self._queue.maxsize)
            self._queue.put(item)
        self.peak_queue_depth = max(self.peak_queue_depth, self._queue.qsize())

    # -- worker side: two stages, so that one curve is inverted while the last one is written --
    def _invert_loop(self):
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    self._out.put(_STOP)
                    return
                if isinstance(item, CurveJob):
                    # Let the publishing thread create the node while this one inverts.
                    self._out.put(_Prepare(raw_uid=item.raw_uid, curve_index=item.curve_index,
                                           scan_id=item.scan_id, sample=item.sample))
                self._out.put(self._to_record(item))
            except Exception:  # the stage must survive anything
                self.counts["worker_errors"] += 1
                log.exception("xrd-strain: inversion stage failed on %r", getattr(item, "raw_uid", item))
            finally:
                self._queue.task_done()

    def _to_record(self, item):
        if not isinstance(item, CurveJob):
            return item, None
        try:
            refresh = getattr(self.inverter, "refresh", None)  # a registry-following inverter
            if refresh is not None:
                refresh(item.raw_uid)  # loads a newly promoted model when a new run begins
            return record_from_job(item, self.inverter), item.completed_at
        except Exception as exc:  # record_from_job records its own failures; this is a last resort
            md = base_metadata(status="error", raw_uid=item.raw_uid, curve_index=item.curve_index,
                               reason=f"plugin error: {type(exc).__name__}: {exc}", scan_id=item.scan_id,
                               sample=item.sample)
            return ResultRecord(raw_uid=item.raw_uid, curve_index=item.curve_index, metadata=md), item.completed_at

    def _publish_loop(self):
        while True:
            try:
                item = self._out.get(timeout=max(0.1, getattr(self.publisher, "retry_interval_s", 1.0)))
            except queue.Empty:
                self._retry_spool()
                continue
            try:
                if item is _STOP:
                    return
                if isinstance(item, _Prepare):
                    if hasattr(self.publisher, "prepare"):
                        self.publisher.prepare(**dataclasses.asdict(item))
                    continue
                self._publish(*item)
            except Exception:
                self.counts["worker_errors"] += 1
                log.exception("xrd-strain: publishing stage failed")
            finally:
                self._out.task_done()

    def _retry_spool(self):
        try:
            self.publisher.flush()
        except Exception:
            log.exception("xrd-strain: spool replay failed")

    def _publish(self, record: ResultRecord, t0: float | None):
        try:
            written = self.publisher.publish(record)
        except Exception as exc:
            # A permanent refusal by Tiled (an invalid record): record why, in place of the result.
            log.exception("xrd-strain: Tiled refused result %s", "/".join(record.path))
            md = dict(record.metadata, status="error", reason=f"Tiled refused the result: {type(exc).__name__}: {exc}")
            written = self.publisher.publish(ResultRecord(raw_uid=record.raw_uid, curve_index=record.curve_index, metadata=md))
        self.counts[record.status] += 1
        self.counts["written" if written else "spooled"] += 1
        outcome = Outcome(path=record.path, status=record.status, written=written,
                          latency_s=None if t0 is None else time.perf_counter() - t0)
        self.outcomes.append(outcome)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    # -- lifecycle ----------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued curve is handled; return False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks or self._out.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Drain the queues (every curve inverted, and written or spooled), then stop the threads."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
