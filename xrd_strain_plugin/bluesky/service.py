"""The live plugin: a RunEngine callback that inverts rocking curves off the RunEngine's thread.

:class:`LiveInversion` is a facade over declared parts, each in its own module:
:class:`~.routing.DocumentRouting` (a :class:`~.collector.RunCollector` per rocking-curve run),
:class:`~.workqueue.WorkQueue` (bounded in memory, then on disk), :class:`~.inverting.BatchInverter`
(every curve waiting in one ``Inverter.invert_many`` call), :class:`~.publishing.Publication`
(every record waiting in one write, to Tiled or to the spool), :class:`~.handoff.RefinerHandoff`,
:class:`~.emitter.DerivedEmitter` (results as derived runs) and :class:`~.pipeline.Pipeline` (the
two stage threads, draining, closing).

Guarantees
----------
- Nothing raises into the RunEngine: documents and both stages catch, log and record every
  exception (``error`` status).
- The RunEngine is never held: beyond ``queue_size`` curves wait on disk, in order; none is dropped.
- :meth:`LiveInversion.close` drains everything before returning.
- A bad model, or a Tiled refusing the API key, fails at start (:meth:`LiveInversion.from_uri`).
- With a ``refiner``, each ``ok`` result is refined afterwards in a separate process, beside the
  network's answer; the network's result never waits for it.
"""

from __future__ import annotations

import collections
import pathlib
import tempfile
from collections.abc import Callable

from xrd_strain_plugin.results import ResultRecord

from .collector import CurveJob
from .detection import RockingCurveConfig
from .emitter import DerivedEmitter
from .handoff import Refiner, RefinerHandoff
from .inverting import BatchInverter, CurveInverter
from .pipeline import Pipeline
from .publishing import Outcome, Publication, ResultPublisher
from .routing import DocumentRouting
from .workqueue import WorkQueue

__all__ = ["LiveInversion", "Outcome"]


class LiveInversion:
    """Bluesky callback turning rocking curves into strain/DW profiles in Tiled.

    Parameters
    ----------
    inverter : CurveInverter
        An ``Inverter``, or a registry-following ``CurrentModel``.
    publisher : ResultPublisher
        A ``SpoolingPublisher``: writes records to Tiled, spooling while Tiled is away.
    config : RockingCurveConfig, optional
        Field/axis overrides and the default material, reflection, wavelength.
    queue_size : int, optional
        Curves kept in memory; more wait on disk in ``overflow_directory``.
    max_batch : int, optional
        Most curves inverted (and records written) together.
    overflow_directory : path, optional
        Default: ``overflow/`` in the publisher's spool directory. Curves left there by a process
        that died are picked up by the next one.
    refiner : Refiner, optional
        A ``RefinementWorker``: refines ``ok`` results in the background.
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
        inverter: CurveInverter,
        publisher: ResultPublisher,
        *,
        config: RockingCurveConfig = RockingCurveConfig(),
        queue_size: int = 64,
        max_batch: int = 32,
        overflow_directory=None,
        refiner: Refiner | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ):
        self.inverter, self.publisher, self.config, self.refiner = inverter, publisher, config, refiner
        self.counts = collections.Counter()
        self.outcomes: collections.deque[Outcome] = collections.deque(maxlen=10_000)
        self._on_outcome = on_outcome
        if overflow_directory is None:
            overflow_directory = _overflow_beside(publisher)
        self.queue = WorkQueue(queue_size=queue_size, overflow_directory=overflow_directory, counts=self.counts)
        self.handoff = RefinerHandoff(refiner)
        self.documents = DerivedEmitter(self.counts)
        self.routing = DocumentRouting(config, self.submit, self.counts)
        publication = Publication(publisher, self.counts, on_published=self._published)
        self.pipeline = Pipeline(
            self.queue,
            BatchInverter(inverter),
            publication,
            max_batch=max_batch,
            counts=self.counts,
            on_idle=self._idle,
        )
        self.max_batch = self.pipeline.max_batch

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
        refine_processes: int = 1,
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
        refine_processes : int
            Refining processes (each on one core; 1 leaves the other cores to the live path).
        **kwargs
            Passed to the constructor (``queue_size``, ``max_batch``, ``on_outcome``...).

        Raises
        ------
        xrd_strain_plugin.inference.BundleError
            If the bundle is missing, corrupt or inconsistent (at start, not mid-run).
        xrd_strain_plugin.tiled.TiledAuthError
            If Tiled answers but refuses the API key (or its absence) for writing.
        """
        from .assembly import collaborators_from_uri

        inverter, publisher, refiner = collaborators_from_uri(
            uri,
            spool_directory=spool_directory,
            api_key=api_key,
            bundle=bundle,
            config=config,
            retry_interval_s=retry_interval_s,
            refine=refine,
            refine_global_budget_s=refine_global_budget_s,
            refine_processes=refine_processes,
        )
        return cls(inverter, publisher, config=config, refiner=refiner, **kwargs)

    # -- document side (RunEngine thread) ------------------------------------------------------
    def __call__(self, name: str, doc: dict) -> None:
        """Route one document; never raises."""
        self.routing(name, doc)

    def factory(self, name: str, start: dict):
        """RunRouter factory: a :class:`RunCollector` for rocking-curve runs, nothing otherwise."""
        return self.routing.factory(name, start)

    def submit(self, item: CurveJob | ResultRecord) -> None:
        """Queue a completed curve or a ready record; never blocks (beyond ``queue_size``, on disk)."""
        self.pipeline.submit(item)

    def subscribe_results(self, callback) -> None:
        """Give ``callback(name, doc)`` each result as the documents of a derived run (linked to the
        raw run by uid; :mod:`.derived`), once the result is written or spooled. Called from the
        publishing thread; an exception in ``callback`` is logged and contained. With a refiner,
        each finished refinement follows as a derived run of its own (``xrd_strain.kind`` =
        ``refined``)."""
        self.documents.subscribe(callback)
        self.handoff.follow(self.documents.refined)

    # -- publishing thread ---------------------------------------------------------------------
    def _published(self, record: ResultRecord, outcome: Outcome, start) -> None:
        self.outcomes.append(outcome)
        self.handoff.offer(record, outcome, start)
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        self.documents.result(record)

    def _idle(self) -> None:
        """Nothing to publish: collect finished refinements, replay the spool, prepare ahead."""
        self.handoff.poll()
        self.pipeline.publication.idle()

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def peak_queue_depth(self) -> int:
        return self.queue.peak_queue_depth

    @property
    def peak_overflow(self) -> int:
        return self.queue.peak_overflow

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted curve is handled (written or spooled); False on timeout."""
        return self.pipeline.wait(timeout)

    def close(self, timeout: float | None = None, *, refine_drain: bool = True, refine_grace_s: float = 20.0) -> None:
        """Drain everything (every curve inverted, and written or spooled), then stop the threads
        and the refiner: after its queue (``refine_drain``), or bounded (a service stopping: the
        refinement in progress gets ``refine_grace_s``, queued results are left for the flow;
        :meth:`~.refiner.RefinementWorker.close`)."""
        if self.pipeline.closed:
            return
        self.pipeline.close(timeout)
        self.handoff.close(timeout, drain=refine_drain, grace_s=refine_grace_s)


def _overflow_beside(publisher: ResultPublisher) -> pathlib.Path:
    """``overflow/`` in the publisher's spool directory (a temporary directory without a spool)."""
    if publisher.spool is None:
        return pathlib.Path(tempfile.mkdtemp(prefix="xrd-strain-overflow-"))
    return pathlib.Path(publisher.spool.directory) / "overflow"
