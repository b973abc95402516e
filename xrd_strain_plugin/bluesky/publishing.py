"""The publishing stage of the live service: records to Tiled (or to the spool while it is away).

Every record waiting goes out in one write (:meth:`ResultPublisher.publish_many`); a record Tiled
refuses for good is replaced by an ``error`` record saying why, so every curve leaves a result.
Each published record becomes an :class:`Outcome`, handed on (statistics, the refiner, the
derived documents) by the service.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from xrd_strain_plugin.results import ResultRecord

from .inverting import Entry

log = logging.getLogger(__name__)


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


@runtime_checkable
class ResultPublisher(Protocol):
    """Where records go: a :class:`~xrd_strain_plugin.tiled.spool.SpoolingPublisher`."""

    spool: Any  #: the durable spool (``directory``); the work queue's overflow goes beside it
    retry_interval_s: float
    auth_error: str | None  #: set while Tiled refuses the credentials

    def publish(self, record: ResultRecord) -> bool: ...

    def publish_many(self, records) -> list: ...

    def prepare(self, **node) -> None: ...

    def flush(self) -> bool: ...


class Publication:
    """Publishes entries and reports each one as an :class:`Outcome`.

    Parameters
    ----------
    publisher : ResultPublisher
        Writes records to Tiled, spooling while Tiled is away.
    counts : collections.Counter
        The service's counters (per status, ``written``, ``spooled``, ``auth_errors``).
    on_published : callable
        ``on_published(record, outcome, start)`` after each record (in the publishing thread).

    Raises
    ------
    TypeError
        If ``publisher`` does not have the :class:`ResultPublisher` interface.
    """

    def __init__(self, publisher: ResultPublisher, counts, *, on_published: Callable[..., None]):
        if not isinstance(publisher, ResultPublisher):
            raise TypeError(f"{type(publisher).__name__} is not a result publisher (see ResultPublisher)")
        self.publisher = publisher
        self.counts = counts
        self._on_published = on_published
        #: How long the publishing thread waits for work before it turns to :meth:`idle`.
        self.poll_interval_s = max(0.1, min(1.0, publisher.retry_interval_s))

    def prepare(self, *, raw_uid: str | None = None, curve_index: int | None = None) -> None:
        """Let the writer create ahead what the next write uses (the run's node)."""
        self.publisher.prepare(raw_uid=raw_uid, curve_index=curve_index)

    def idle(self) -> None:
        """Nothing to publish: replay the spool and create ahead what the next write will use."""
        try:
            self.publisher.flush()
            self.publisher.prepare()
        except Exception:
            log.exception("xrd-strain: spool replay failed")

    def publish(self, entries: list[Entry]) -> None:
        """Write (or spool) the records of ``entries`` together, in order."""
        results = self.publisher.publish_many([e.record for e in entries])
        if self.publisher.auth_error:
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
            self._on_published(record, outcome, start)
