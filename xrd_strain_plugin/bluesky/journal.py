"""A durable document transport: a journal on the RunEngine side, replayed by position.

0MQ delivers a document only to whoever is subscribed at that instant, so a listener that is
down or restarting misses every scan made meanwhile. Here the RunEngine host keeps every
document in an append-only journal, and the listener reads it by position and acknowledges
what it has made durable, so a restarted listener resumes where it stopped::

    RunEngine --(JournalWriter: a queue append, a background thread writes)--> journal dir
    journal dir <--(JournalServer, `xrd-strain journal serve`)--> JournalClient (xrd-strain listen --journal)

Journal files
    ``<first seq, 12 digits>.jsonl`` segments; one line per document:
    ``<seq>\\t<name>\\t<JSON document>\\n``. ``seq`` counts documents from 0 and goes on across
    restarts of the writer. A line is complete only with its newline: a writer that died
    mid-line leaves bytes that readers ignore and the next writer cuts off.

Durability
    The RunEngine's thread only appends to an unbounded in-memory queue (it never waits on
    disk or network). The writer thread writes and flushes every batch (readers see it at once)
    and ``fsync``\\ s after each stop document and at least every ``fsync_interval_s``.

Protocol (0MQ DEALER -> ROUTER)
    request ``{"id": n, "from": seq, "max": k, "wait_s": t, "consumer": name, "ack": seq}``; reply
    ``[header JSON, lines]`` with header ``{"id": n, "from": seq, "next": seq, "head": seq}``.
    The server answers at once when it holds documents at ``from`` or beyond, else when some
    arrive or after ``wait_s`` (long poll). ``head`` is the next sequence number the journal
    will give: the client knows when it has caught up. ``ack`` is the consumer's durable
    position (everything before it is done and need never be served again); the server
    records it per consumer in ``consumers/<name>.json`` for :func:`prune`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import queue
import re
import threading
import time

import numpy as np

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^(\d{12})\.jsonl$")
_STOP = object()


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def encode(seq: int, name: str, doc: dict) -> bytes:
    """One journal line."""
    return f"{seq}\t{name}\t".encode() + json.dumps(doc, default=_plain, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> tuple[int, str, dict]:
    """``(seq, name, doc)`` of one journal line."""
    seq, name, doc = line.rstrip(b"\n").split(b"\t", 2)
    return int(seq), name.decode(), json.loads(doc)


def segments(directory) -> list[pathlib.Path]:
    """Segment files, oldest first."""
    directory = pathlib.Path(directory)
    if not directory.exists():
        return []
    return sorted(p for p in directory.iterdir() if _SEGMENT.match(p.name))


def _first_seq(path: pathlib.Path) -> int:
    return int(_SEGMENT.match(path.name).group(1))


def _last_complete(path: pathlib.Path) -> tuple[int | None, int]:
    """(seq of the last complete line or None, byte length of the complete lines)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end == 0:
        return None, 0
    start = data.rfind(b"\n", 0, end - 1) + 1
    return int(data[start : data.index(b"\t", start)]), end


class JournalWriter:
    """RunEngine callback keeping every document in an append-only journal directory.

    Subscribe it to the RunEngine (``RE.subscribe(JournalWriter(path))``); serve the directory
    with :class:`JournalServer` (``xrd-strain journal serve``). ``__call__`` only appends to an
    in-memory queue: the RunEngine never waits on disk.

    Parameters
    ----------
    directory : path
        Journal directory (created; its segments are continued after a restart).
    fsync_interval_s : float
        Longest time a written document waits for its ``fsync`` (stop documents are synced at once).
    segment_bytes : int
        A new segment starts once the current one is this large.

    Attributes
    ----------
    errors : int
        Failed writes (logged; the documents stay queued and are retried).
    """

    def __init__(self, directory, *, fsync_interval_s: float = 0.2, segment_bytes: int = 64 * 2**20):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync_interval_s = float(fsync_interval_s)
        self.segment_bytes = int(segment_bytes)
        self.errors = 0
        self.written = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._next_seq, self._file = self._open()
        self._thread = threading.Thread(target=self._work, name="xrd-strain-journal", daemon=True)
        self._thread.start()

    @property
    def next_seq(self) -> int:
        """Sequence number the next written document gets."""
        return self._next_seq

    def _open(self):
        existing = segments(self.directory)
        if not existing:
            fh = open(self.directory / f"{0:012d}.jsonl", "ab")
            self._fsync_dir()
            return 0, fh
        path = existing[-1]
        last, end = _last_complete(path)
        size = path.stat().st_size
        if size != end:
            log.warning("journal %s: cutting off %d bytes of an unfinished line", path, size - end)
            with open(path, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        return (_first_seq(path) if last is None else last + 1), open(path, "ab")

    def __call__(self, name: str, doc: dict) -> None:
        """Queue one document (never blocks, never raises into the RunEngine)."""
        with self._pending_lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((name, doc))

    def _work(self):
        last_sync = time.monotonic()
        dirty = False
        batch: list = []
        while True:
            timeout = None if not dirty else max(0.0, self.fsync_interval_s - (time.monotonic() - last_sync))
            if not batch:
                try:
                    batch.append(self._queue.get(timeout=timeout))
                except queue.Empty:
                    pass
                while len(batch) < 10_000:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            stop = bool(batch) and batch[-1] is _STOP
            items = batch[:-1] if stop else batch
            try:
                if items:
                    sync_now = self._write(items)
                    dirty = True
                else:
                    sync_now = False
                if dirty and (sync_now or stop or time.monotonic() - last_sync >= self.fsync_interval_s):
                    self._file.flush()
                    os.fsync(self._file.fileno())
                    last_sync, dirty = time.monotonic(), False
            except Exception:
                self.errors += 1
                log.exception("journal: could not write %d documents to %s; retrying", len(items), self.directory)
                time.sleep(1.0)
                continue  # the batch stays and is written again (its seq numbers were not taken)
            with self._pending_lock:
                self._pending -= len(items)
                if self._pending == 0:
                    self._idle.set()
            batch = []
            if stop:
                return

    def _write(self, items) -> bool:
        seq = self._next_seq
        chunk = bytearray()
        sync = False
        for name, doc in items:
            chunk += encode(seq, name, doc)
            seq += 1
            sync = sync or name == "stop"
        if self._file.tell() > self.segment_bytes:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = open(self.directory / f"{self._next_seq:012d}.jsonl", "ab")
            self._fsync_dir()
        before = self._file.tell()
        try:
            self._file.write(chunk)
            self._file.flush()  # visible to the server process now; durable at the next fsync
        except Exception:
            try:  # no torn line left behind: the batch is written again in full
                self._file.truncate(before)
                self._file.seek(before)
            except Exception:
                log.exception("journal: could not cut a failed write back")
            raise
        self._next_seq = seq
        self.written += len(items)
        return sync

    def _fsync_dir(self):
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued document is written (not necessarily synced)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write and sync what is queued, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if not self._file.closed:
            self._file.close()


class JournalReader:
    """Read a journal directory by sequence number (used by the server; readable by hand too).

    Keeps a sparse index (every ``stride``-th line) of where each sequence number starts,
    extended as the journal grows, so a read at any position costs a seek and a short scan.
    """

    def __init__(self, directory, *, stride: int = 256):
        self.directory = pathlib.Path(directory)
        self.stride = stride
        self._index: list[tuple[int, pathlib.Path, int]] = []  # (seq, segment, offset), increasing
        self._scanned: dict[pathlib.Path, tuple[int, int]] = {}  # segment -> (bytes indexed, next seq)
        self._sealed: set[pathlib.Path] = set()  # older segments read to their end: they no longer grow
        self.head = 0  # next sequence number not yet in the journal

    def refresh(self) -> int:
        """Index what was appended since the last call; return :attr:`head`."""
        existing = segments(self.directory)
        for i, path in enumerate(existing):
            if path in self._sealed:
                continue
            if i < len(existing) - 1:
                self._sealed.add(path)  # read once more now, to its end
            done, seq = self._scanned.get(path, (0, _first_seq(path)))
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # pruned meanwhile
                continue
            if size == done:
                continue
            with open(path, "rb") as fh:
                fh.seek(done)
                data = fh.read(size - done)
            pos = 0
            while True:
                end = data.find(b"\n", pos)
                if end < 0:
                    break
                line_seq = int(data[pos : data.index(b"\t", pos)])
                if line_seq % self.stride == 0 or not self._index or self._index[-1][1] != path:
                    self._index.append((line_seq, path, done + pos))
                seq = line_seq + 1
                pos = end + 1
            self._scanned[path] = (done + pos, seq)
            self.head = max(self.head, seq)
        return self.head

    def first(self) -> int:
        """Oldest sequence number still in the journal (after pruning)."""
        existing = segments(self.directory)
        return _first_seq(existing[0]) if existing else self.head

    def read(self, start: int, *, max_docs: int = 1000, max_bytes: int = 8 * 2**20) -> tuple[bytes, int]:
        """Lines from ``start`` on (at most ``max_docs``/``max_bytes``); return ``(lines, next seq)``."""
        if start >= self.head or not self._index:
            return b"", start
        # The last index entry at or before start.
        lo, hi = 0, len(self._index) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._index[mid][0] <= start:
                lo = mid
            else:
                hi = mid - 1
        seq0, path, offset = self._index[lo]
        if seq0 > start:
            raise KeyError(f"documents before {seq0} were pruned from the journal (asked for {start})")
        out = bytearray()
        n = 0
        nxt = start
        paths = [p for p in segments(self.directory) if _first_seq(p) >= _first_seq(path)]
        for p in paths:
            limit = self._scanned.get(p, (0, 0))[0]
            with open(p, "rb") as fh:
                fh.seek(offset if p == path else 0)
                pos = fh.tell()
                for line in fh:
                    if pos + len(line) > limit or not line.endswith(b"\n"):
                        break
                    pos += len(line)
                    seq = int(line[: line.index(b"\t")])
                    if seq < start:
                        continue
                    out += line
                    n += 1
                    nxt = seq + 1
                    if n >= max_docs or len(out) >= max_bytes:
                        return bytes(out), nxt
        return bytes(out), nxt


def make_keys(directory, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """Make a CURVE key pair ``DIRECTORY/NAME.key`` (public) and ``NAME.key_secret`` (mode 600).

    Raises
    ------
    FileExistsError
        If either file exists (keys are never overwritten).
    ValueError
        If ``name`` is not a plain file name.
    """
    import zmq.auth

    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,100}", name) or name.startswith("."):
        raise ValueError(f"key name {name!r}: letters, digits and _.@- only")
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise FileExistsError(f"{path} exists; keys are not overwritten")
    old = os.umask(0o077)
    try:
        zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old)
    return public, secret


def _load_key(path, *, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"no key file {path}")
    try:
        public, private = zmq.auth.load_certificate(str(path))
    except Exception as exc:
        raise ValueError(f"{path} is not a CURVE key file: {exc}") from exc
    if secret and private is None:
        raise ValueError(f"{path} holds no secret key (use NAME.key_secret, not NAME.key)")
    return public, private


@dataclasses.dataclass(frozen=True)
class ClientKeys:
    """What a listener needs to read a journal server that requires CURVE keys.

    Build with :meth:`from_files`: the server's public key file and this client's secret key file.
    """

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_files(cls, server_key, client_key) -> "ClientKeys":
        server_public, _ = _load_key(server_key, secret=False)
        public, secret = _load_key(client_key, secret=True)
        return cls(server_public=server_public, public=public, secret=secret)


def is_loopback(address: str) -> bool:
    """Whether a 0MQ ``tcp://HOST:PORT`` bind address reaches this host only."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


class JournalServer:
    """Serve a journal directory to listeners over 0MQ (ROUTER), long-polling for new documents.

    Parameters
    ----------
    directory : path
        The journal a :class:`JournalWriter` fills.
    address : str
        0MQ bind address, e.g. ``tcp://127.0.0.1:5579``.
    secret_key : path, optional
        The server's ``NAME.key_secret``: clients must authenticate (CURVE) and traffic is
        encrypted. Required, with ``client_keys``, to bind anything but a loopback address.
    client_keys : path, optional
        Directory of the allowed clients' public ``*.key`` files (read at start).
    poll_s : float
        How often the journal is checked for growth while a listener waits.

    Raises
    ------
    ValueError
        A non-loopback address without keys, only one of the two keys, or unreadable keys.
    """

    def __init__(self, directory, address: str, *, secret_key=None, client_keys=None, poll_s: float = 0.005):
        import zmq

        if (secret_key is None) != (client_keys is None):
            raise ValueError("give both the server's secret key and the directory of allowed client keys, or neither")
        if secret_key is None and not is_loopback(address):
            raise ValueError(
                f"{address} is reachable from other hosts: serving them needs CURVE keys "
                "(secret_key and client_keys; `xrd-strain journal keys`)"
            )
        self.reader = JournalReader(directory)
        self.directory = pathlib.Path(directory)
        self.poll_s = poll_s
        self._ctx = zmq.Context()
        self._auth = None
        self.authenticated = secret_key is not None
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if self.authenticated:
            self._secure(secret_key, client_keys)
        self._sock.bind(address)
        self.endpoint = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._stop = threading.Event()
        self._acked: dict[str, tuple[int, float]] = {}
        self.requests = 0

    def _secure(self, secret_key, client_keys) -> None:
        from zmq.auth.thread import ThreadAuthenticator
        from zmq.utils import z85

        public, secret = _load_key(secret_key, secret=True)
        names = {}
        for path in sorted(pathlib.Path(client_keys).glob("*.key")):
            names[_load_key(path, secret=False)[0]] = path.stem  # z85 text, as the authenticator sees it
        if not names:
            raise ValueError(f"no client keys (*.key) in {client_keys}: no listener could connect")
        self._auth = ThreadAuthenticator(self._ctx)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(client_keys))
        # The ZAP User-Id of a connection is the name of its key file: acknowledgements go under it.
        self._auth.curve_user_id = lambda key: names.get(z85.encode(key), "unknown")
        self._sock.curve_secretkey, self._sock.curve_publickey = secret, public
        self._sock.curve_server = True
        self.client_names = sorted(names.values())

    def serve_forever(self) -> None:
        """Answer requests until :meth:`stop`."""
        import zmq

        waiting: list[tuple[float, bytes, dict]] = []
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(int(self.poll_s * 1000) if waiting else 200))
                if self._sock in events:
                    while True:
                        try:
                            frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        user = frames[-1].get("User-Id") if self.authenticated else None
                        frames = [f.bytes for f in frames]
                        try:
                            request = json.loads(frames[-1])
                            if user is not None:  # authenticated: the key says who acknowledges
                                request["consumer"] = user
                            self._record_consumer(request)
                        except Exception as exc:  # a bad request gets an error, the server goes on
                            self._send(frames[0], {"error": f"bad request: {exc}"}, b"")
                            continue
                        waiting.append((time.monotonic() + float(request.get("wait_s", 0.0)), frames[0], request))
                        self.requests += 1
                if waiting:
                    self.reader.refresh()
                    now = time.monotonic()
                    still = []
                    for deadline, ident, request in waiting:
                        if self.reader.head > int(request["from"]) or now >= deadline:
                            self._answer(ident, request)
                        else:
                            still.append((deadline, ident, request))
                    waiting = still
        finally:
            self._sock.close(0)
            if self._auth is not None:
                self._auth.stop()
            self._ctx.term()

    def _answer(self, ident: bytes, request: dict) -> None:
        start = int(request["from"])
        try:
            lines, nxt = self.reader.read(start, max_docs=int(request.get("max", 1000)))
            header = {"id": request.get("id"), "from": start, "next": nxt, "head": self.reader.head}
        except KeyError as exc:
            lines, header = b"", {"id": request.get("id"), "error": str(exc.args[0])}
        self._send(ident, header, lines)

    def _send(self, ident: bytes, header: dict, lines: bytes) -> None:
        self._sock.send_multipart([ident, json.dumps(header).encode(), lines])

    def _record_consumer(self, request: dict) -> None:
        name = str(request.get("consumer") or "")
        if not name or request.get("ack") is None or not re.fullmatch(r"[A-Za-z0-9_.@-]{1,100}", name):
            return
        position, now = int(request["ack"]), time.monotonic()
        last = self._acked.get(name)
        if last is not None and (last[0] == position or now - last[1] < 1.0):
            return  # recorded at most once a second: it only guides pruning
        self._acked[name] = (position, now)
        cdir = self.directory / "consumers"
        cdir.mkdir(exist_ok=True)
        path = cdir / f"{name}.json"
        tmp = cdir / f".{name}.tmp"
        tmp.write_text(json.dumps({"acknowledged": position, "time": time.time()}))
        os.replace(tmp, path)

    def stop(self) -> None:
        """Make :meth:`serve_forever` return (from another thread or a signal handler)."""
        self._stop.set()


def serve_in_thread(directory, address: str = "tcp://127.0.0.1:0", **kwargs) -> tuple[JournalServer, threading.Thread]:
    """A :class:`JournalServer` in a daemon thread (tests, the demo); ``server.endpoint`` is where it listens."""
    server = JournalServer(directory, address, **kwargs)
    thread = threading.Thread(target=server.serve_forever, name="xrd-strain-journal-server", daemon=True)
    thread.start()
    return server, thread


class JournalUnavailable(ConnectionError):
    """The journal server did not answer in time."""


class JournalClient:
    """Fetch documents by position from a :class:`JournalServer` (listener side).

    Parameters
    ----------
    address : str
        ``host:port`` (or a full 0MQ endpoint) of the journal server.
    consumer : str
        Name under which the server records this listener's acknowledged position.
    timeout_s : float
        How long to wait for an answer beyond the long-poll time before reconnecting.
    keys : ClientKeys, optional
        For a server that requires CURVE keys (one serving other hosts).
    """

    def __init__(
        self,
        address: str,
        *,
        consumer: str = "xrd-strain-listen",
        timeout_s: float = 5.0,
        keys: ClientKeys | None = None,
    ):
        import zmq

        self.keys = keys
        self.endpoint = address if "://" in address else f"tcp://{address}"
        self.consumer = consumer
        self.timeout_s = timeout_s
        self._ctx = zmq.Context()
        self._sock = None
        self._id = 0
        self.head: int | None = None

    def _socket(self):
        import zmq

        if self._sock is None:
            self._sock = self._ctx.socket(zmq.DEALER)
            self._sock.setsockopt(zmq.LINGER, 0)
            if self.keys is not None:
                self._sock.curve_serverkey = self.keys.server_public
                self._sock.curve_publickey, self._sock.curve_secretkey = self.keys.public, self.keys.secret
            self._sock.connect(self.endpoint)
        return self._sock

    def fetch(
        self, start: int, *, max_docs: int = 1000, wait_s: float = 0.5, ack: int | None = None
    ) -> list[tuple[int, str, dict]]:
        """Documents from ``start`` on (empty after ``wait_s`` when there are none yet).

        ``ack`` tells the server the caller's durable position (for pruning).

        Raises
        ------
        JournalUnavailable
            When the server does not answer within ``wait_s + timeout_s`` (the socket is then
            rebuilt, so the next call tries afresh).
        RuntimeError
            When the server cannot serve ``start`` (pruned).
        """
        import zmq

        self._id += 1
        sock = self._socket()
        sock.send(
            json.dumps(
                {
                    "id": self._id,
                    "from": int(start),
                    "max": int(max_docs),
                    "wait_s": float(wait_s),
                    "consumer": self.consumer,
                    "ack": ack,
                }
            ).encode()
        )
        deadline = time.monotonic() + wait_s + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(int(remaining * 1000), zmq.POLLIN):
                self._sock.close(0)
                self._sock = None  # a fresh socket: no stale replies, a fresh connection
                hint = (
                    ""
                    if self.keys is not None or is_loopback(self.endpoint)
                    else ("; a journal server on another host answers only clients with CURVE keys")
                )
                raise JournalUnavailable(
                    f"journal server {self.endpoint} did not answer in {wait_s + self.timeout_s:.0f} s{hint}"
                )
            header, lines = sock.recv_multipart()
            header = json.loads(header)
            if header.get("id") != self._id:
                continue  # the answer to an earlier request we gave up on
            if "error" in header:
                raise RuntimeError(f"journal server {self.endpoint}: {header['error']}")
            self.head = int(header["head"])
            return [decode(line) for line in lines.splitlines(keepends=True) if line]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
        self._ctx.term()


def prune(directory, *, keep_s: float = 7 * 86400.0) -> list[pathlib.Path]:
    """Delete segments every recorded consumer has acknowledged and that are older than ``keep_s``.

    The newest segment is never deleted. Return the deleted files.
    """
    directory = pathlib.Path(directory)
    consumers = (
        [json.loads(p.read_text())["acknowledged"] for p in (directory / "consumers").glob("*.json")]
        if (directory / "consumers").exists()
        else []
    )
    if not consumers:
        return []
    acked = min(consumers)
    existing = segments(directory)
    deleted = []
    for path, nxt in zip(existing, existing[1:]):
        if _first_seq(nxt) <= acked and time.time() - path.stat().st_mtime > keep_s:
            path.unlink()
            deleted.append(path)
    return deleted
