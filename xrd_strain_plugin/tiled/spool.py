"""A durable on-disk spool for results that could not be written to Tiled.

Each record is one ``<sequence>.npz`` file (the arrays plus the metadata as
JSON), made durable before :meth:`Spool.append` returns: written to a
temporary name, fsync'd, renamed into place, and the directory fsync'd. The
sequence number grows monotonically across restarts (it continues from the
largest file present), so replay order is append order. A lock file keeps two
processes from sharing one spool.

:class:`SpoolingPublisher` is the writer the plugin uses: it writes straight
to Tiled while Tiled answers and the spool is empty, and otherwise appends to
the spool; :meth:`SpoolingPublisher.flush` replays the spool oldest first,
stops at the first failure (so order is kept) and removes each file only
after its write succeeded. Writes are idempotent
(:class:`~xrd_strain_plugin.tiled.writer.TiledResultsWriter`), so a crash
between a write and the removal replays one record onto the node it already
made: exactly once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pathlib
import re
import time
from collections.abc import Callable

import httpx
import numpy as np

from .layout import ResultRecord

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{12})\.npz$")
_META = "__metadata_json__"


class SpoolLockedError(RuntimeError):
    """Another live process holds this spool directory."""


class Spool:
    """Ordered, durable queue of :class:`ResultRecord` files in a directory.

    Parameters
    ----------
    directory : str or pathlib.Path
        Created if absent. Holds ``*.npz`` records, ``spool.lock`` and a
        ``quarantine/`` folder for records Tiled refused as invalid.

    Raises
    ------
    SpoolLockedError
        When another process holds the directory.
    """

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.directory / "spool.lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_file.close()
            raise SpoolLockedError(f"spool {self.directory} is in use by another process") from exc
        for stale in self.directory.glob(".tmp-*"):
            stale.unlink()  # never renamed into place, so never acknowledged: not a record
        existing = self.pending()
        self._next = int(_NAME.match(existing[-1].name).group(1)) + 1 if existing else 0
        self._count = len(existing)

    def pending(self) -> list[pathlib.Path]:
        """Spooled record files, oldest first."""
        return sorted(p for p in self.directory.iterdir() if _NAME.match(p.name))

    def __len__(self) -> int:
        return self._count

    def append(self, record: ResultRecord) -> pathlib.Path:
        """Store ``record`` durably; return its file."""
        path = self.directory / f"{self._next:012d}.npz"
        self._next += 1
        tmp = self.directory / f".tmp-{path.name}"
        meta = {"raw_uid": record.raw_uid, "curve_index": record.curve_index, "metadata": record.metadata}
        payload = {name: np.asarray(a) for name, a in record.arrays.items()}
        payload[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._fsync_dir()
        self._count += 1
        return path

    @staticmethod
    def load(path) -> ResultRecord:
        """Read a spooled record back."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data[_META].tobytes().decode())
            arrays = {k: data[k] for k in data.files if k != _META}
        return ResultRecord(raw_uid=meta["raw_uid"], curve_index=meta["curve_index"], metadata=meta["metadata"], arrays=arrays)

    def remove(self, path) -> None:
        """Forget a record whose write was acknowledged."""
        pathlib.Path(path).unlink()
        self._fsync_dir()
        self._count -= 1

    def quarantine(self, path, reason: str) -> pathlib.Path:
        """Move a record Tiled refuses permanently out of the replay order."""
        qdir = self.directory / "quarantine"
        qdir.mkdir(exist_ok=True)
        target = qdir / pathlib.Path(path).name
        os.replace(path, target)
        target.with_suffix(".reason.txt").write_text(reason + "\n")
        self._fsync_dir()
        self._count -= 1
        return target

    def close(self) -> None:
        """Release the directory lock."""
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def _fsync_dir(self):
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is_permanent(exc: BaseException) -> bool:
    """A refusal that retrying cannot fix (bad record), as opposed to an outage or bad credentials."""
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return 400 <= code < 500 and code not in (401, 403, 404, 408, 409, 425, 429)
    return isinstance(exc, (ValueError, TypeError))


class SpoolingPublisher:
    """Write results to Tiled, spooling them durably while Tiled is away.

    Not thread-safe: one thread (the plugin's worker) publishes.

    Parameters
    ----------
    connect : callable
        ``connect() -> TiledResultsWriter``; called lazily and again after a
        failure, so Tiled need not be up when the plugin starts.
    spool : Spool
        Where records wait while Tiled is unreachable or failing.
    retry_interval_s : float, optional
        Minimum seconds between replay attempts while the spool is not empty.
    """

    def __init__(self, connect: Callable, spool: Spool, *, retry_interval_s: float = 2.0):
        self._connect = connect
        self.spool = spool
        self.retry_interval_s = retry_interval_s
        self._writer = None
        self._next_try = 0.0
        self.written = 0
        self.spooled = 0

    def publish(self, record: ResultRecord) -> bool:
        """Write ``record`` now if possible, else spool it. Return True if written now."""
        if len(self.spool) and not self.flush():
            # Behind older records: keep the order.
            self.spool.append(record)
            self.spooled += 1
            return False
        try:
            self._write(record)
        except Exception as exc:
            if _is_permanent(exc):
                raise
            log.warning("Tiled unavailable (%s); result %s spooled", _short(exc), "/".join(record.path))
            self._writer = None
            self._next_try = time.monotonic() + self.retry_interval_s
            self.spool.append(record)
            self.spooled += 1
            return False
        return True

    def prepare(self, **node) -> None:
        """Ask the writer to create a result's node ahead of its write (see
        :meth:`TiledResultsWriter.prepare`); skipped while spooling, never raises."""
        if len(self.spool) or time.monotonic() < self._next_try:
            return
        try:
            if self._writer is None:
                self._writer = self._connect()
            self._writer.prepare(**node)
        except Exception as exc:  # the write that follows will create the node, or spool
            log.debug("could not prepare result node %s: %s", node, _short(exc))

    def flush(self, *, force: bool = False) -> bool:
        """Replay the spool in order; return True when it is empty afterwards.

        Without ``force``, does nothing until ``retry_interval_s`` has passed
        since the last failure.
        """
        if not force and time.monotonic() < self._next_try:
            return False
        for path in self.spool.pending():
            try:
                record = self.spool.load(path)
                self._write(record)
            except Exception as exc:
                if _is_permanent(exc):
                    log.error("Tiled refused spooled result %s: %s; quarantined", path.name, exc)
                    self.spool.quarantine(path, repr(exc))
                    continue
                self._writer = None
                self._next_try = time.monotonic() + self.retry_interval_s
                log.info("spool replay paused (%s); %d result(s) waiting", _short(exc), len(self.spool))
                return False
            self.spool.remove(path)
        return True

    def _write(self, record):
        if self._writer is None:
            self._writer = self._connect()
        self._writer.write(record)
        self.written += 1


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
