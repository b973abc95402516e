"""Catch up from Tiled: raw runs stored by another writer that have no result yet.

When the RunEngine host stores its raw runs in Tiled itself (a ``TiledWriter`` subscribed on
the RunEngine side), a listener that was down or restarting can recover every scan it missed
from Tiled: :class:`CatchUp` looks for finished raw runs without a result, oldest first,
reads each as users read runs (bluesky-tiled-plugins' :class:`~bluesky_tiled_plugins.BlueskyRun` over Tiled:
``run.metadata["start"]``, ``run["primary"].descriptors``, the stream's columns), and feeds
its documents to the same :class:`~.service.LiveInversion`, through a router of its own, so
partial, aborted or rejected runs are recognised exactly as they are live.

Exactly once
    A run is inverted by catch-up only if: its stop document is in Tiled (and at least
    ``grace_s`` old, so the live path, which sees the same stop through 0MQ, has had it); the
    live path has not seen its start (:meth:`CatchUp.note` is subscribed beside the plugin);
    no result node for it exists in Tiled; no record of it waits in the spool; and catch-up has
    not submitted it already. Catch-up only submits while the plugin is idle (everything
    submitted so far written or spooled), one run at a time, so new scans never queue behind
    a backlog, and the spool check cannot race with the plugin's own writes.

Where to look
    Runs whose stop time is at or after a watermark (less ``margin_s``), kept in
    ``state_path``: the watermark advances to the oldest run not yet resolved, so each pass
    reads only recent runs, and a restarted listener starts where the last one left off (or
    ``since_s`` back on its first start).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import pathlib
import threading
import time

import event_model
import numpy as np

from .detection import fields_from_descriptor, plan_from_start

log = logging.getLogger(__name__)


def run_documents(run, config):
    """The documents of a raw run read back from Tiled, as the plugin needs them.

    ``start`` and ``stop`` from the run's metadata; for the plan's stream, its descriptors and
    one ``event_page`` built from the stream's columns (only the fields the curve needs).

    Parameters
    ----------
    run : bluesky_tiled_plugins.BlueskyRun
        A raw run (``client["raw"][uid]``).
    config : RockingCurveConfig
        How the plugin reads runs (the same as live).

    Raises
    ------
    TypeError
        If ``run`` is not a BlueskyRun (a node that is not a bluesky run, under ``raw/``).
    """
    from bluesky_tiled_plugins import BlueskyRun

    if not isinstance(run, BlueskyRun):
        raise TypeError(f"not a bluesky run: {type(run).__name__} (specs {[s.name for s in run.specs]})")
    start = dict(run.metadata["start"])
    stop = run.metadata.get("stop")
    yield "start", start
    plan = plan_from_start(start, config)
    if plan is not None and plan.problem is None and plan.stream_name in run:
        stream = run[plan.stream_name]
        descriptors = [dict(d) for d in stream.descriptors]
        for desc in descriptors:
            yield "descriptor", desc
        if descriptors:
            try:
                fields = fields_from_descriptor(descriptors[0], plan)
                names = [fields.motor, fields.detector, *fields.positions]
            except Exception:  # the collector will name the problem from the descriptor
                names = []
            if names:
                columns, seq, times = _columns(stream, names)
                n = len(columns[names[0]])
                if n:
                    yield (
                        "event_page",
                        {
                            "descriptor": descriptors[0]["uid"],
                            "uid": [f"{descriptors[0]['uid']}-catch-up-{i}" for i in range(n)],
                            "seq_num": [int(s) for s in seq],
                            "time": [float(t) for t in times],
                            "data": {k: v.tolist() for k, v in columns.items()},
                            "timestamps": {k: [float(t) for t in times] for k in columns},
                            "filled": {},
                        },
                    )
    if stop is not None:
        yield "stop", dict(stop)


def _columns(stream, names):
    """``({name: array}, seq_num, time)`` of an event stream: one table read where the stream keeps
    its scalar columns in one table (bluesky-tiled-plugins' layout), else one read per column."""
    wanted = list(dict.fromkeys([*names, "seq_num", "time"]))
    table = None
    try:
        base = getattr(stream, "base", None)
        if base is not None and "internal" in base:
            table = base["internal"].read(columns=[c for c in wanted if c in base["internal"].columns])
    except Exception:  # another layout: read column by column
        table = None
    if table is not None and all(name in table for name in names):
        columns = {name: np.asarray(table[name]) for name in names}
        n = len(columns[names[0]])
        seq = np.asarray(table["seq_num"]) if "seq_num" in table else np.arange(1, n + 1)
        times = np.asarray(table["time"]) if "time" in table else np.zeros(n)
        return columns, seq, times
    columns = {name: np.asarray(stream[name].read()) for name in names}
    n = len(columns[names[0]])
    seq = np.asarray(stream["seq_num"].read()) if "seq_num" in stream else np.arange(1, n + 1)
    times = np.asarray(stream["time"].read()) if "time" in stream else np.zeros(n)
    return columns, seq, times


class CatchUp:
    """Invert, once, every finished raw run in Tiled that has no result (see the module docstring).

    Parameters
    ----------
    client : tiled.client.container.Container or callable
        Server root (read access to ``raw`` and ``results`` is enough), or a function returning
        it (called at each pass until it succeeds: Tiled need not be up at start).
    live : LiveInversion
        The plugin; catch-up submits through ``live.factory`` and checks ``live.wait(0)``.
    state_path : path
        JSON file keeping the watermark across restarts (in the spool directory, say).
    since_s : float
        On the first start (no state file), look this far back.
    grace_s : float
        A run's stop must be this old before catch-up considers it (the live path goes first).
    interval_s : float
        Seconds between passes in the background thread.
    margin_s : float
        Passes look this much before the watermark too (late raw writes, clock skew).
    raw_key, results_key : str
        Containers of raw runs and results.
    """

    def __init__(
        self,
        client,
        live,
        *,
        state_path,
        since_s: float = 86400.0,
        grace_s: float = 10.0,
        interval_s: float = 5.0,
        margin_s: float = 120.0,
        raw_key: str = "raw",
        results_key: str = "results",
    ):
        self._client_or_factory = client
        self.client = None if callable(client) and not hasattr(client, "search") else client
        self.live = live
        self.state_path = pathlib.Path(state_path)
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.margin_s = margin_s
        self.raw_key = raw_key
        self.results_key = results_key
        self.watermark = self._load_state(time.time() - since_s)
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._submitted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts = collections.Counter()

    # -- the live path tells us what it has seen ----------------------------------------------
    def note(self, name: str, doc: dict) -> None:
        """Callback beside the plugin: remember runs whose start the live path saw."""
        if name == "start":
            with self._lock:
                self._remember(self._seen, doc["uid"])

    @staticmethod
    def _remember(store: collections.OrderedDict, uid: str) -> None:
        store[uid] = None
        while len(store) > 100_000:
            store.popitem(last=False)

    # -- state ------------------------------------------------------------------------------------
    def _load_state(self, default: float) -> float:
        try:
            return float(json.loads(self.state_path.read_text())["watermark"])
        except FileNotFoundError:
            return default
        except Exception as exc:
            log.warning("catch-up: unreadable state %s (%s); looking back from %s", self.state_path, exc, default)
            return default

    def _save_state(self) -> None:
        tmp = self.state_path.with_name(f".{self.state_path.name}.tmp")
        tmp.write_text(json.dumps({"watermark": self.watermark}))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    # -- one pass -----------------------------------------------------------------------------------
    def candidates(self) -> list[tuple[float, float, str, object]]:
        """Finished raw runs at or after the watermark: ``(start time, stop time, uid, run)``, oldest first."""
        from tiled.queries import Key

        if self.raw_key not in self.client:
            return []
        found = self.client[self.raw_key].search(Key("stop.time") >= self.watermark - self.margin_s)
        out = []
        for uid, run in found.items():
            md = run.metadata
            start, stop = md.get("start") or {}, md.get("stop") or {}
            out.append((float(start.get("time", 0.0)), float(stop.get("time", 0.0)), uid, run))
        out.sort(key=lambda c: (c[0], c[2]))
        return out

    def _spooled_uids(self) -> set[str]:
        spool = getattr(getattr(self.live, "publisher", None), "spool", None)
        if spool is None:
            return set()
        uids = set()
        for path in spool.pending():
            try:
                uids.update(r.raw_uid for r in spool.load_all(path))
            except FileNotFoundError:  # written to Tiled meanwhile: the Tiled check below sees it
                continue
        return uids

    def _with_results(self, uids: list[str], batch: int = 100) -> set[str]:
        """The uids among ``uids`` that have a node in ``results/`` (one query per ``batch`` uids)."""
        from tiled.queries import In

        if not uids or self.results_key not in self.client:
            return set()
        results = self.client[self.results_key]
        found: set[str] = set()
        for i in range(0, len(uids), batch):
            chunk = uids[i : i + batch]
            found.update(k for k in results.search(In("raw_uid", chunk)).keys() if k in chunk)
        return found

    def run_once(self) -> int:
        """One pass: submit every missing run (waiting for the plugin to be idle before each).

        Return the number of runs submitted.
        """
        if not self.live.wait(0):
            return 0  # new scans first; everything in flight must be written or spooled before we look
        if self.client is None:
            self.client = self._client_or_factory()
        now = time.time()
        pending = []  # (stop time, uid, run) not resolved by this pass
        candidates = self.candidates()
        spooled = self._spooled_uids()  # before the Tiled check: a record leaves the spool only once in Tiled
        with self._lock:
            seen, submitted = set(self._seen), set(self._submitted)
        todo = []
        for start_t, stop_t, uid, run in candidates:
            if uid in seen or uid in submitted or uid in spooled:
                pending.append((stop_t, uid))  # resolved once its result is in Tiled
            elif now - stop_t < self.grace_s:
                pending.append((stop_t, uid))
                self.counts["deferred"] += 1
            elif plan_from_start(run.metadata.get("start") or {}, self.live.config) is None:
                continue  # not a rocking curve: nothing to do, ever
            else:
                todo.append((start_t, stop_t, uid, run))
        done = self._with_results([uid for _, _, uid, _ in todo] + [uid for _, uid in pending])
        pending = [(t, uid) for t, uid in pending if uid not in done]
        submitted_now = 0
        for start_t, stop_t, uid, run in todo:
            if uid in done:
                continue
            if submitted_now:  # one run at a time: whatever the live path brought meanwhile goes first
                while not self.live.wait(0.5) and not self._stop.is_set():
                    pass
            if self._stop.is_set() or not self.live.wait(0):
                pending.append((stop_t, uid))
                continue
            self._submit(uid, run)
            pending.append((stop_t, uid))
            submitted_now += 1
        newest = max((stop_t for _, stop_t, _, _ in candidates), default=None)
        if pending:
            self.watermark = max(self.watermark, min(t for t, _ in pending))
        elif newest is not None:
            self.watermark = max(self.watermark, newest)
        self._save_state()
        return submitted_now

    def _submit(self, uid: str, run) -> None:
        log.info("catch-up: run %s has no result; inverting it", uid)
        router = event_model.RunRouter([self.live.factory])
        with self._lock:
            self._remember(self._submitted, uid)
        try:
            for name, doc in run_documents(run, self.live.config):
                router(name, doc)
            self.counts["submitted"] += 1
        except Exception:
            self.counts["errors"] += 1
            log.exception("catch-up: could not read raw run %s back from Tiled", uid)

    # -- background -----------------------------------------------------------------------------------
    def start(self) -> "CatchUp":
        """Run passes every ``interval_s`` in a daemon thread (the first one now)."""
        self._thread = threading.Thread(target=self._loop, name="xrd-strain-catch-up", daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # Tiled away: the next pass tries again
                self.counts["failed_passes"] += 1
                log.warning(
                    "catch-up pass failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""
                )
            self._stop.wait(self.interval_s)

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the background passes (the run being submitted finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
