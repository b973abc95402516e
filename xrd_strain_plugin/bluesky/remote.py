"""Out of process: documents from a bluesky 0MQ proxy into the live plugin.

The RunEngine host publishes with ``bluesky.callbacks.zmq.Publisher`` to a
``bluesky-0MQ-proxy``; :func:`listen` subscribes with bluesky's own
``RemoteDispatcher`` and feeds the documents to a callback (a
:class:`~.service.LiveInversion`, plus the raw-run writer when wanted), so
inference can run on a GPU host while the RunEngine runs elsewhere.

0MQ delivers only to whoever listens at that instant; :func:`listen_journal` reads a
durable journal kept on the RunEngine side instead (:mod:`.journal`), by position, and
resumes after a restart from the last position it made durable.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)


def listen(
    address: str,
    callbacks,
    *,
    prefix: bytes = b"",
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Dispatch documents from the proxy at ``address`` until SIGINT/SIGTERM or ``stop``.

    Parameters
    ----------
    address : str
        ``host:port`` of the proxy's *outbound* (subscriber) side.
    callbacks : list of callable
        Each gets ``(name, doc)`` for every document, in order.
    prefix : bytes
        Only documents published with this prefix (all when empty).
    ready : threading.Event, optional
        Set once subscribed (tests and services wait on it).
    stop : threading.Event, optional
        Set it (from another thread) to stop listening.
    """
    from bluesky.callbacks.zmq import RemoteDispatcher

    dispatcher = RemoteDispatcher(address, prefix=prefix)
    for cb in callbacks:
        dispatcher.subscribe(cb)

    def request_stop(*_):
        dispatcher.loop.call_soon_threadsafe(_cancel, dispatcher)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_stop)
    if ready is not None:
        dispatcher.loop.call_soon(ready.set)
    if stop is not None:

        def watch():
            stop.wait()
            request_stop()

        threading.Thread(target=watch, daemon=True).start()
    try:
        dispatcher.start()
    except asyncio.CancelledError:
        pass
    log.info("listener on %s stopped", address)


def _cancel(dispatcher):
    if dispatcher._task is not None:
        dispatcher._task.cancel()


def start_proxy(in_port: int, out_port: int) -> threading.Thread:
    """Run a bluesky 0MQ proxy in a daemon thread (for tests and the demo).

    In deployment run ``bluesky-0MQ-proxy IN_PORT OUT_PORT`` as a service instead.
    """
    from bluesky.callbacks.zmq import Proxy

    proxy = Proxy(in_port, out_port)
    thread = threading.Thread(target=proxy.start, name="bluesky-0mq-proxy", daemon=True)
    thread.start()
    return thread


class ListenerThread:
    """A :func:`listen` thread behind a local 0MQ proxy, with a connected :class:`Publisher` (tests, demo).

    0MQ drops what is published before the subscription has reached the proxy, so the constructor
    publishes empty runs (not rocking curves, hence ignored) until the listener hears one.

    Attributes
    ----------
    publisher : bluesky.callbacks.zmq.Publisher
        Subscribe it to a RunEngine.
    subscribed, connected : bool
        Whether the listener subscribed within ``timeout`` and heard a probe run.
    """

    def __init__(self, in_port: int, out_port: int, callbacks, *, timeout: float = 10.0, tries: int = 200):
        from bluesky.callbacks.zmq import Publisher
        from event_model import compose_run

        heard = threading.Event()
        self._ready, self._stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(
            target=listen,
            args=(f"127.0.0.1:{out_port}", [*callbacks, lambda *_: heard.set()]),
            kwargs={"ready": self._ready, "stop": self._stop},
            daemon=True,
        )
        self.thread.start()
        self.subscribed = self._ready.wait(timeout)
        self.publisher = Publisher(f"127.0.0.1:{in_port}")
        for _ in range(tries):
            probe = compose_run()
            self.publisher("start", probe.start_doc)
            self.publisher("stop", probe.compose_stop())
            if heard.wait(0.1):
                break
        self.connected = heard.is_set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the listener, wait for its thread and close the publisher."""
        self._stop.set()
        self.thread.join(timeout)
        self.publisher.close()


class Cursor:
    """The listener's durable position in a journal: the next sequence number to process.

    Stored as JSON in ``path`` (written to a temporary file, fsync'd, renamed), so a restarted
    listener resumes where the last acknowledged position was.
    """

    def __init__(self, path):
        import pathlib

        self.path = pathlib.Path(path)
        try:
            self.position = int(json.loads(self.path.read_text())["next"])
        except FileNotFoundError:
            self.position = 0

    def save(self, position: int) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as fh:
            json.dump({"next": int(position), "time": time.time()}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.position = int(position)


def _run_of(name: str, doc: dict, descriptors: dict) -> str | None:
    """uid of the run a document belongs to (``descriptors`` maps descriptor uid -> run uid)."""
    if name == "start":
        return doc["uid"]
    if name in ("descriptor", "stop", "resource", "stream_resource"):
        return doc.get("run_start")
    if name in ("event", "event_page"):
        return descriptors.get(doc.get("descriptor"))
    return None


class ReplayGuard:
    """What a restarted listener must not do twice, decided per run from Tiled.

    Runs between the acknowledged position and the journal's head at restart may have been
    handled already by the listener that died. For each of them (only those: ``check`` is
    called for replayed starts), the raw writer is skipped when ``raw/<uid>`` is complete (has
    its stop), and a partial one is deleted so that the raw writer rewrites it whole; the plugin
    is skipped when ``results/<uid>`` already holds a result or its record waits in the spool.
    """

    def __init__(self, client, *, spooled=frozenset(), raw_key: str = "raw", results_key: str = "results"):
        self.client = client
        self.spooled = set(spooled)
        self.raw_key = raw_key
        self.results_key = results_key
        self.skip_raw: set[str] = set()
        self.skip_live: set[str] = set()

    def check(self, uid: str) -> None:
        from tiled.queries import Key

        raw = self.client[self.raw_key] if self.raw_key in self.client else None
        # An exact query: a catalog of bluesky runs answers ``uid in raw`` for a missing uid with a
        # partial-uid (full-text) lookup that can match other runs.
        found = list(raw.search(Key("start.uid") == uid).values()) if raw is not None else []
        if found:
            if (found[0].metadata or {}).get("stop") is not None:
                self.skip_raw.add(uid)
            else:
                log.info("replay: raw run %s was written in part; rewriting it", uid)
                found[0].delete(recursive=True, external_only=False)
        results = self.client[self.results_key] if self.results_key in self.client else None
        if uid in self.spooled:
            self.skip_live.add(uid)
        elif results is not None and uid in results and (results[uid].metadata or {}).get("layout"):
            self.skip_live.add(uid)  # a one-curve result; a multi-curve run is redone (idempotent writes)


class _CountedLive:
    """Feed documents to the plugin through a router of our own that counts what it submits.

    The plugin publishes in submission order, so ``published >= n`` (written or spooled) means
    that everything submitted before the n-th item is durable: that is how the listener knows a
    run boundary may be acknowledged without waiting for the plugin to be idle.
    """

    def __init__(self, live):
        import event_model

        self.live = live
        # Start level with what is published already (curves a previous process left on disk
        # are published by the plugin first; the caller waits for them): count ours from there.
        self.submitted = self.published
        self._router = event_model.RunRouter([self._factory])

    def _submit(self, item) -> None:
        self.submitted += 1
        self.live.submit(item)

    def _factory(self, name, start):
        from .collector import RunCollector
        from .detection import plan_from_start

        try:
            plan_from_start(start, self.live.config)
        except Exception:
            self.submitted += 1  # the plugin records an unreadable start as an error, itself
        callbacks, subfactories = self.live.factory(name, start)
        for cb in callbacks:
            if isinstance(cb, RunCollector):
                cb._submit = self._submit
        return callbacks, subfactories

    @property
    def published(self) -> int:
        return self.live.counts["written"] + self.live.counts["spooled"]

    def __call__(self, name, doc) -> None:
        try:
            self._router(name, doc)
        except Exception:  # never stop the listener: the plugin's own router would log and go on too
            self.live.counts["document_errors"] += 1
            log.exception("xrd-strain: could not route %s document", name)


class _Boundaries:
    """Run boundaries waiting to be acknowledged: ``(position, raw documents, plugin items)``.

    The cursor advances to a boundary once everything before it is durable: the raw writer has
    handled every document up to it and the plugin has written or spooled every curve submitted
    up to it (both process in order, so this is a comparison of counters; the plugin being idle
    also counts).
    """

    def __init__(self, cursor: Cursor, raw, live, counted: _CountedLive):
        self.cursor, self.raw, self.live, self.counted = cursor, raw, live, counted
        self._pending: collections.deque = collections.deque()

    def add(self, position: int) -> None:
        self._pending.append((position, 0 if self.raw is None else self.raw.submitted, self.counted.submitted))
        while len(self._pending) > 10_000:  # bounded: keep the newest
            self._pending.popleft()

    def acknowledge(self) -> None:
        idle = None
        last = None
        while self._pending:
            at, raw_n, live_n = self._pending[0]
            raw_done = self.raw is None or self.raw.handled >= raw_n
            if raw_done and self.counted.published < live_n and idle is None:
                idle = self.live.wait(0)
            if not (raw_done and (self.counted.published >= live_n or idle)):
                break
            last = self._pending.popleft()[0]
        if last is not None and last > self.cursor.position:
            self.cursor.save(last)


class _Dispatch:
    """Hands each journal document to the raw writer, the extra callbacks and the plugin, in order,
    skipping in the replayed part what the previous listener had finished (``guard``)."""

    def __init__(self, *, live, raw, guard, extra, counted: _CountedLive, counts: collections.Counter):
        self.live, self.raw, self.guard, self.extra = live, raw, guard, tuple(extra)
        self.counted, self.counts = counted, counts
        self.descriptors: dict[str, str] = {}
        self.open_runs: set[str] = set()

    def __call__(self, seq: int, name: str, doc: dict, *, replayed: bool) -> None:
        run = _run_of(name, doc, self.descriptors)
        if name == "start":
            self.open_runs.add(run)
            self.counts["runs"] += 1
            if self.guard is not None and replayed:
                self.counts["replayed_runs"] += 1
                try:
                    self.guard.check(run)
                except Exception:
                    log.exception("replay: could not check run %s in Tiled; handling it again", run)
        elif name == "descriptor":
            self.descriptors[doc["uid"]] = run
        guard = self.guard
        if self.raw is not None and not (guard is not None and run in guard.skip_raw):
            self.raw(name, doc)
        for cb in self.extra:
            cb(name, doc)
        if guard is not None and run in guard.skip_live:
            self.counts["skipped_documents"] += 1
        else:
            self.counted(name, doc)
        if name == "stop":
            self.open_runs.discard(run)
            self.descriptors = {d: r for d, r in self.descriptors.items() if r != run}
        self.counts["documents"] += 1


def listen_journal(
    address: str,
    *,
    live,
    raw=None,
    cursor: Cursor,
    guard: ReplayGuard | None = None,
    extra=(),
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    consumer: str = "xrd-strain-listen",
    wait_s: float = 0.5,
    max_docs: int = 2000,
    keys=None,
) -> dict:
    """Process documents from a journal server from ``cursor`` on, until SIGINT/SIGTERM or ``stop``.

    Every document goes to ``raw`` (the raw-run writer, optional), the ``extra`` callbacks and
    ``live``, in order. The cursor advances to a run boundary (after a stop, with no run open)
    once everything before it is durable (:class:`_Boundaries`). On the way out, both are drained
    and the cursor saved. Return counts (documents, runs, replayed, skipped).

    Parameters
    ----------
    address : str
        ``host:port`` of the journal server (``xrd-strain journal serve``).
    live : LiveInversion
        The plugin.
    raw : BackgroundCallback, optional
        Raw-run writer (``--raw``).
    cursor : Cursor
        Durable position, in the spool directory.
    guard : ReplayGuard, optional
        Skips, in the replayed part of the journal, what the previous listener had finished.
    keys : ClientKeys, optional
        CURVE keys, for a journal server that requires them (:mod:`.journal`).
    """
    from .journal import JournalClient, JournalUnavailable

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    client = JournalClient(address, consumer=consumer, keys=keys)
    live.wait()  # curves a previous process left in the plugin's overflow are published first
    counted = _CountedLive(live)
    counts = collections.Counter()
    boundaries = _Boundaries(cursor, raw, live, counted)
    dispatch = _Dispatch(live=live, raw=raw, guard=guard, extra=extra, counted=counted, counts=counts)
    position = cursor.position
    replay_until: int | None = None  # the head when we (re)started: documents before it are replays
    warned = False
    if ready is not None:
        ready.set()
    try:
        while not stop.is_set():
            try:
                batch = client.fetch(position, max_docs=max_docs, wait_s=wait_s, ack=cursor.position)
            except JournalUnavailable as exc:
                if not warned:
                    log.warning("%s; retrying (documents wait in the journal)", exc)
                    warned = True
                boundaries.acknowledge()
                continue
            if warned:
                log.info("journal server %s answers again", address)
                warned = False
            if replay_until is None:
                replay_until = client.head
                if replay_until > position:
                    log.info("replaying journal documents %d..%d", position, replay_until - 1)
            for seq, name, doc in batch:
                dispatch(seq, name, doc, replayed=seq < replay_until)
                position = seq + 1
                if not dispatch.open_runs:
                    boundaries.add(position)
            boundaries.acknowledge()
    finally:
        if raw is not None:
            raw.wait()
        live.wait()
        boundaries.acknowledge()
        client.close()
        log.info("journal listener stopped at %d (%s)", cursor.position, dict(counts))
    return dict(counts)
