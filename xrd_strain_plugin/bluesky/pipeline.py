"""The lifecycle of the live service: two stage threads between the work queue and the publisher.

One thread takes every item waiting (up to ``max_batch``) and inverts them together
(:class:`~.inverting.BatchInverter`); the other publishes every record waiting in one write
(:class:`~.publishing.Publication`), so that writing one batch overlaps inverting the next. Under
load batches grow by themselves; an idle service answers each curve alone. Items in flight
(submitted, not yet written or spooled) are counted, so :meth:`Pipeline.wait` and
:meth:`Pipeline.close` drain everything; neither stage dies on an exception.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable

from xrd_strain_plugin.results import ResultRecord

from .collector import CurveJob
from .inverting import BatchInverter
from .publishing import Publication
from .workqueue import STOP, WorkQueue

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Prepare:
    """From the inversion stage: let the publisher create this run's node while the curve inverts."""

    raw_uid: str
    curve_index: int | None


class Pipeline:
    """The two stages and their threads, started at construction.

    Parameters
    ----------
    work : WorkQueue
        The items to invert (items left on disk by a process that died count as in flight).
    inverter : BatchInverter
    publication : Publication
    max_batch : int
        Most items inverted (and records written) together.
    counts : collections.Counter
        The service's counters (``worker_errors``).
    on_idle : callable
        Called by the publishing thread when it has nothing to publish.
    """

    def __init__(
        self,
        work: WorkQueue,
        inverter: BatchInverter,
        publication: Publication,
        *,
        max_batch: int,
        counts,
        on_idle: Callable[[], None],
    ):
        self.work, self.inverter, self.publication = work, inverter, publication
        self.max_batch = max(1, int(max_batch))
        self.counts = counts
        self._on_idle = on_idle
        self._lock = threading.Lock()
        self._in_flight = len(work.overflow)
        self.closed = False
        self._out: queue.Queue = queue.Queue(maxsize=8)
        self._threads = [
            threading.Thread(target=self._invert_loop, name="xrd-strain-invert", daemon=True),
            threading.Thread(target=self._publish_loop, name="xrd-strain-publish", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: CurveJob | ResultRecord) -> None:
        """Queue an item; never blocks. Raises RuntimeError once closed."""
        if self.closed:
            raise RuntimeError("LiveInversion is closed")
        with self._lock:
            self._in_flight += 1
        self.work.put(item)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted item is handled (written or spooled); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._in_flight > 0:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Drain (see :meth:`wait`), then stop both threads."""
        self.wait(timeout)
        self.closed = True
        self.work.stop()
        for thread in self._threads:
            thread.join(timeout)

    def _done(self, n: int) -> None:
        with self._lock:
            self._in_flight -= n

    def _invert_loop(self):
        while True:
            batch = self.work.next_batch(self.max_batch)
            stop = batch and batch[-1] is STOP
            items = batch[:-1] if stop else batch
            try:
                for item in items:
                    if isinstance(item, CurveJob) and item.curve_index is not None:
                        # Let the publishing thread create the run's node while this one inverts.
                        self._out.put(_Prepare(raw_uid=item.raw_uid, curve_index=item.curve_index))
                if items:
                    self._out.put(self.inverter.entries(items))
            except Exception:  # the stage must survive anything
                self.counts["worker_errors"] += 1
                log.exception("xrd-strain: inversion stage failed on a batch of %d", len(items))
                self._done(len(items))
            if stop:
                self._out.put(STOP)
                return

    def _publish_loop(self):
        while True:
            try:
                item = self._out.get(timeout=self.publication.poll_interval_s)
            except queue.Empty:
                self._on_idle()
                continue
            entries, stop = self._gather(item)
            try:
                if entries:
                    self.publication.publish(entries)
            except Exception:
                self.counts["worker_errors"] += 1
                log.exception("xrd-strain: publishing stage failed")
            finally:
                self._done(len(entries))
            if stop:
                return
            if self._out.empty():
                self._on_idle()

    def _gather(self, item) -> tuple[list, bool]:
        """Entries waiting (from ``item`` on, about ``max_batch``), preparing nodes on the way."""
        entries, stop = [], False
        while True:
            if item is STOP:
                stop = True
            elif isinstance(item, _Prepare):
                self.publication.prepare(raw_uid=item.raw_uid, curve_index=item.curve_index)
            else:
                entries.extend(item)
            if stop or len(entries) >= self.max_batch:
                return entries, stop
            try:
                item = self._out.get_nowait()
            except queue.Empty:
                return entries, stop
