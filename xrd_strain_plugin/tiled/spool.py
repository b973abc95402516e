"""A durable on-disk spool for results that could not be written to Tiled.

Each spool file is one ``<sequence>.npz`` holding one record or the records of one write
batch (the arrays plus the metadata as JSON), made durable before :meth:`Spool.append_many`
returns: written to a temporary name, fsync'd, renamed into place, and the directory
fsync'd. A batch costs one fsync, not one per record. The sequence number grows
monotonically across restarts (it continues from the largest file present), so replay
order is append order. A lock file keeps two processes from sharing one spool. Files of
the one-record format written before batches existed are read as they are.

:class:`SpoolingPublisher` is the writer the plugin uses: it writes straight
to Tiled while Tiled answers and the spool is empty, and otherwise appends to
the spool; :meth:`SpoolingPublisher.flush` replays the spool oldest first,
stops at the first failure (so order is kept) and removes each file only
after its write succeeded. Writes are idempotent
(:class:`~xrd_strain_plugin.tiled.writer.TiledResultsWriter`), so a crash
between a write and the removal replays records onto the nodes they already
made: exactly once. A record Tiled refuses as invalid is set aside in
``quarantine/`` with the reason; the others of its batch are written.

Refused credentials (401/403) are not an outage: the records are kept in the spool (nothing
is lost) but every attempt is logged as an error, :attr:`SpoolingPublisher.auth_error` holds
the message, and replays are retried only every ``auth_retry_interval_s``.
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
from .writer import TiledAuthError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{12})\.npz$")
_META = "__metadata_json__"


class SpoolLockedError(RuntimeError):
    """Another live process holds this spool directory."""


class Spool:
    """Ordered, durable queue of :class:`ResultRecord` batches in a directory.

    Parameters
    ----------
    directory : str or pathlib.Path
        Created if absent. Holds ``*.npz`` files, ``spool.lock`` and a
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
        self._sizes = {p.name: len(_read_meta(p)) for p in existing}

    def pending(self) -> list[pathlib.Path]:
        """Spool files, oldest first."""
        return sorted(p for p in self.directory.iterdir() if _NAME.match(p.name))

    def __len__(self) -> int:
        """Records waiting (not files)."""
        return sum(list(self._sizes.values()))  # a copy: another thread may be replaying

    def append(self, record: ResultRecord) -> pathlib.Path:
        """Store ``record`` durably; return its file."""
        return self.append_many([record])

    def append_many(self, records) -> pathlib.Path:
        """Store ``records`` durably in one file (one fsync); return the file."""
        records = list(records)
        if not records:
            raise ValueError("nothing to spool")
        path = self.directory / f"{self._next:012d}.npz"
        self._next += 1
        tmp = self.directory / f".tmp-{path.name}"
        metas, payload = [], {}
        for i, record in enumerate(records):
            metas.append(
                {
                    "raw_uid": record.raw_uid,
                    "curve_index": record.curve_index,
                    "metadata": record.metadata,
                    "arrays": sorted(record.arrays),
                }
            )
            payload.update({f"r{i}:{name}": np.asarray(a) for name, a in record.arrays.items()})
        payload[_META] = np.frombuffer(json.dumps({"records": metas}).encode(), dtype=np.uint8)
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._fsync_dir()
        self._sizes[path.name] = len(records)
        return path

    @staticmethod
    def load_all(path) -> list[ResultRecord]:
        """The records of one spool file, in order."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data[_META].tobytes().decode())
            if "records" not in meta:  # the one-record format
                arrays = {k: data[k] for k in data.files if k != _META}
                return [
                    ResultRecord(
                        raw_uid=meta["raw_uid"],
                        curve_index=meta["curve_index"],
                        metadata=meta["metadata"],
                        arrays=arrays,
                    )
                ]
            return [
                ResultRecord(
                    raw_uid=m["raw_uid"],
                    curve_index=m["curve_index"],
                    metadata=m["metadata"],
                    arrays={name: data[f"r{i}:{name}"] for name in m["arrays"]},
                )
                for i, m in enumerate(meta["records"])
            ]

    @classmethod
    def load(cls, path) -> ResultRecord:
        """The record of a one-record spool file."""
        records = cls.load_all(path)
        if len(records) != 1:
            raise ValueError(f"{path} holds {len(records)} records; use load_all")
        return records[0]

    def remove(self, path) -> None:
        """Forget a file whose records were all written."""
        path = pathlib.Path(path)
        path.unlink()
        self._fsync_dir()
        self._sizes.pop(path.name, None)

    def quarantine(self, path, reason: str) -> pathlib.Path:
        """Move a whole file Tiled refuses permanently out of the replay order."""
        qdir = self.directory / "quarantine"
        qdir.mkdir(exist_ok=True)
        target = qdir / pathlib.Path(path).name
        os.replace(path, target)
        target.with_suffix(".reason.txt").write_text(reason + "\n")
        self._fsync_dir()
        self._sizes.pop(pathlib.Path(path).name, None)
        return target

    def quarantine_record(self, record: ResultRecord, reason: str) -> pathlib.Path:
        """Set one refused record aside in ``quarantine/`` (as a one-record file) with the reason."""
        qdir = self.directory / "quarantine"
        qdir.mkdir(exist_ok=True)
        name = f"{self._next:012d}.npz"
        self._next += 1
        target = qdir / name
        meta = {"raw_uid": record.raw_uid, "curve_index": record.curve_index, "metadata": record.metadata}
        payload = {k: np.asarray(v) for k, v in record.arrays.items()}
        payload[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with open(target, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        target.with_suffix(".reason.txt").write_text(reason + "\n")
        self._fsync_dir()
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


def _read_meta(path) -> list:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(data[_META].tobytes().decode())
    return meta.get("records", [meta])


def _is_permanent(exc: BaseException) -> bool:
    """A refusal that retrying cannot fix (bad record), as opposed to an outage or bad credentials."""
    if isinstance(exc, TiledAuthError):
        return False
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return 400 <= code < 500 and code not in (401, 403, 404, 408, 409, 425, 429)
    return isinstance(exc, (ValueError, TypeError))


class SpoolingPublisher:
    """Write results to Tiled, spooling them durably while Tiled is away.

    Not thread-safe: one thread (the plugin's publishing stage) publishes.

    Parameters
    ----------
    connect : callable
        ``connect() -> TiledResultsWriter``; called lazily and again after a
        failure, so Tiled need not be up when the plugin starts.
    spool : Spool
        Where records wait while Tiled is unreachable or failing.
    retry_interval_s : float, optional
        Minimum seconds between replay attempts while the spool is not empty.
    auth_retry_interval_s : float, optional
        The same after Tiled refused the credentials (they will not fix themselves quickly).
    """

    def __init__(
        self, connect: Callable, spool: Spool, *, retry_interval_s: float = 2.0, auth_retry_interval_s: float = 30.0
    ):
        self._connect = connect
        self.spool = spool
        self.retry_interval_s = retry_interval_s
        self.auth_retry_interval_s = auth_retry_interval_s
        self._writer = None
        self._next_try = 0.0
        self.written = 0
        self.spooled = 0
        self.auth_error: str | None = None
        self._away = False  # in an outage (warned once)

    def publish(self, record: ResultRecord) -> bool:
        """Write ``record`` now if possible, else spool it. Return True if written now.

        Raises
        ------
        Exception
            Tiled's permanent refusal of this record (an invalid record); it is neither
            written nor spooled.
        """
        (outcome,) = self.publish_many([record])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def publish_many(self, records) -> list:
        """Write ``records`` together if possible, else spool them (one file).

        Returns
        -------
        list
            Per record: True (written now), False (spooled), or the exception with which
            Tiled permanently refused that record (neither written nor spooled).
        """
        records = list(records)
        if not records:
            return []
        if len(self.spool) and not self.flush():
            # Behind older records: keep the order.
            self._spool(records)
            return [False] * len(records)
        try:
            self._write(records)
            return [True] * len(records)
        except Exception as exc:
            if not _is_permanent(exc):
                self._pause(exc)
                self._spool(records)
                return [False] * len(records)
        # A permanent refusal of the batch: find the refused record(s) one by one.
        outcomes: list = []
        for i, record in enumerate(records):
            try:
                self._write([record])
                outcomes.append(True)
            except Exception as exc:
                if not _is_permanent(exc):
                    self._pause(exc)
                    self._spool(records[i:])
                    return outcomes + [False] * (len(records) - i)
                outcomes.append(exc)
        return outcomes

    def prepare(self, **node) -> None:
        """Ask the writer to create ahead of need what the next write uses (see
        :meth:`TiledResultsWriter.prepare`); skipped while spooling, never raises."""
        if len(self.spool) or time.monotonic() < self._next_try:
            return
        try:
            if self._writer is None:
                self._writer = self._connect()
            self._writer.prepare(**node)
        except Exception as exc:  # the write that follows creates what it needs, or spools
            if isinstance(exc, TiledAuthError):
                self._pause(exc)
            log.debug("could not prepare %s: %s", node, _short(exc))

    def flush(self, *, force: bool = False) -> bool:
        """Replay the spool in order; return True when it is empty afterwards.

        Without ``force``, does nothing until the retry interval has passed
        since the last failure.
        """
        if not force and time.monotonic() < self._next_try:
            return False
        for path in self.spool.pending():
            try:
                records = self.spool.load_all(path)
            except Exception as exc:  # unreadable file: set it aside, never block the rest on it
                log.error("spool file %s is unreadable (%s); quarantined", path.name, _short(exc))
                self.spool.quarantine(path, repr(exc))
                continue
            try:
                self._write(records)
            except Exception as exc:
                if not _is_permanent(exc):
                    self._pause(exc)
                    log.info("spool replay paused (%s); %d result(s) waiting", _short(exc), len(self.spool))
                    return False
                if not self._replay_one_by_one(path, records):
                    return False
            self.spool.remove(path)
        return True

    def _replay_one_by_one(self, path, records) -> bool:
        for record in records:
            try:
                self._write([record])
            except Exception as exc:
                if not _is_permanent(exc):
                    self._pause(exc)
                    return False  # the file stays; written records are rewritten idempotently later
                log.error(
                    "Tiled refused spooled result %s: %s; set aside in quarantine/", "/".join(record.path), _short(exc)
                )
                self.spool.quarantine_record(record, repr(exc))
        return True

    def _spool(self, records) -> None:
        self.spool.append_many(records)
        self.spooled += len(records)

    def _pause(self, exc: BaseException) -> None:
        self._writer = None
        if isinstance(exc, TiledAuthError):
            self.auth_error = str(exc)
            self._next_try = time.monotonic() + self.auth_retry_interval_s
            log.error(
                "%s. Results are kept in the spool %s (%d waiting) until Tiled accepts the key; "
                "fix the key and restart.",
                exc,
                self.spool.directory,
                len(self.spool),
            )
        else:
            self._next_try = time.monotonic() + self.retry_interval_s
            if not self._away:
                log.warning(
                    "Tiled unavailable (%s); results are spooled in %s until it answers",
                    _short(exc),
                    self.spool.directory,
                )
            self._away = True

    def _write(self, records):
        if self._writer is None:
            self._writer = self._connect()
        write_many = getattr(self._writer, "write_many", None)
        if write_many is not None:
            write_many(records)
        else:
            for record in records:
                self._writer.write(record)
        self.written += len(records)
        self.auth_error = None
        if self._away:
            log.warning("Tiled answers again; %d spooled result(s) to replay", len(self.spool))
            self._away = False


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
