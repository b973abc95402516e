"""The work queue of the live service: completed curves waiting for the inversion stage.

Bounded in memory (``queue_size``); beyond it, items wait on disk in order (:class:`DiskOverflow`),
so memory stays bounded under any burst, the RunEngine is never held and no curve is dropped.
Items are :class:`~.collector.CurveJob` (a curve to invert) or
:class:`~xrd_strain_plugin.results.ResultRecord` (a record already made, e.g. an unreadable start).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import pathlib
import queue
import threading

import numpy as np

from xrd_strain_plugin.results import ResultRecord

from .collector import CurveJob

log = logging.getLogger(__name__)

#: Put by :meth:`WorkQueue.stop`: the last item a batch can hold.
STOP = object()


class WorkQueue:
    """Curves (and ready records) in order, in memory up to ``queue_size``, then on disk.

    Parameters
    ----------
    queue_size : int
        Items kept in memory.
    overflow_directory : path
        Where items beyond ``queue_size`` wait (items left there by a process that died are
        taken first).
    counts : collections.Counter
        The service's counters (``overflow``, ``overflow_episodes`` are counted here).
    """

    def __init__(self, *, queue_size: int, overflow_directory, counts: collections.Counter):
        self._memory: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self.overflow = DiskOverflow(overflow_directory)
        self.counts = counts
        self.peak_queue_depth = 0
        self.peak_overflow = 0
        self._lock = threading.Lock()

    def put(self, item: CurveJob | ResultRecord) -> None:
        """Queue ``item``; never blocks (beyond ``queue_size``, on disk, behind what is there)."""
        with self._lock:
            if len(self.overflow) == 0:
                try:
                    self._memory.put_nowait(item)
                    self.peak_queue_depth = max(self.peak_queue_depth, self._memory.qsize())
                    return
                except queue.Full:
                    self.counts["overflow_episodes"] += 1
                    log.warning(
                        "xrd-strain: %d curves waiting in memory; further curves wait on disk in %s",
                        self._memory.maxsize,
                        self.overflow.directory,
                    )
            # Behind the memory queue (or behind curves already on disk): keep the order.
            self.overflow.put(item)
            self.counts["overflow"] += 1
            self.peak_overflow = max(self.peak_overflow, len(self.overflow))

    def stop(self) -> None:
        """Queue :data:`STOP` (after everything in memory) for the consumer."""
        self._memory.put(STOP)

    def next_batch(self, max_batch: int) -> list:
        """Every item waiting (oldest first, at most ``max_batch``); blocks for the first one.

        A batch ends at :data:`STOP`, which it then holds last.
        """
        batch: list = []
        while not batch:
            with self._lock:
                if self._memory.empty() and len(self.overflow):
                    return self.overflow.take(max_batch)
            try:
                batch.append(self._memory.get(timeout=0.2))
            except queue.Empty:
                continue
        while len(batch) < max_batch and batch[-1] is not STOP:
            try:
                batch.append(self._memory.get_nowait())
            except queue.Empty:
                break
        return batch


class DiskOverflow:
    """Items beyond the memory queue, waiting on disk in order (one ``.npz`` per item).

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

    def put(self, item: CurveJob | ResultRecord) -> None:
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
