"""Live-plugin latency and throughput, this code and an older revision side by side in one run.

Usage::

    .venv/bin/python benchmarks/bench_live.py [--runs 20] [--burst 1000] [--old-burst 200]
        [--compare REV] [--server deploy|simple|postgres] [--modes inproc,zmq,burst,outage,scan]

Set-up as in deployment: the Tiled server runs in its own process; the RunEngine scans the
simulated diffractometer (401-point ω-2θ scans of the demo's mid-dose sample). Each side runs
against a fresh server of its own configuration: the old revision against the server it was
measured with (``SimpleTiledServer``: SQLite catalog in rollback-journal mode, every commit
synced), this code against ``deploy/tiled/config.yml`` as shipped (``--server deploy``: SQLite in
WAL mode, ``synchronous=NORMAL``, scoped keys: the listener's is used), or ``simple``/``postgres`` for the catalog comparison. The old side runs
in a subprocess on ``git archive REV`` of the package, so both sides use the same bench code.

Modes:

- ``inproc``: ``LiveInversion`` subscribed to the RunEngine, one run at a time; latency from the
  stop document to the return of the Tiled write (the plugin's clock; the result is readable
  then, checked after each run, so no poller loads the server during the timing).
- ``zmq``: RunEngine -> ``Publisher`` -> ``bluesky-0MQ-proxy`` process -> ``xrd-strain listen``
  process -> Tiled; latency from ``stop['time']`` to the first read of the result with its
  arrays over HTTP (one poll request every 25 ms).
- ``burst``: ``--burst`` one-curve runs (131 points) pushed into the callback as fast as it
  accepts them; throughput until every result is written, peak RSS above the start, longest
  document call (how long the caller was held); then every result is read back and counted per
  raw uid (none lost, none twice).
- ``outage``: the same burst with the Tiled server stopped 1 s in, for 10 s, then restarted on
  the same data; every result must be in Tiled exactly once when the plugin is done.
- ``scan``: time of a 401-point scan with and without the plugin subscribed (3 each, interleaved).

Prints a markdown report (pasted into docs/bench_live.md) and, with ``--json``, the figures.
"""

import sqlite3  # noqa: F401  isort: skip  (before TensorFlow: see xrd_strain_plugin.cli.demo)

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("TILED_RETRY_ATTEMPTS", "1")
os.environ.setdefault("TILED_RETRY_TIMEOUT", "2")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
API_KEY = "benchsecret"  # the simple server's; the deployed config's scoped listener key replaces it
ADMIN_PASSWORD = "bench-admin"


def _use_listener_key(url):
    """Make the deployed server's scoped listener key the one every writer and reader here uses."""
    global API_KEY
    from xrd_strain_plugin.tiled.keys import create_scoped_keys

    API_KEY = create_scoped_keys(url, admin="admin", password=ADMIN_PASSWORD)["listener"]


SIMPLE = """
import sys
from tiled.server import SimpleTiledServer
server = SimpleTiledServer(sys.argv[1], api_key=sys.argv[2], port=int(sys.argv[3]))
print("ready", flush=True)
sys.stdin.read()
server.close()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A Tiled server process that can be stopped and restarted on the same data and port."""

    def __init__(self, kind, directory, *, postgres_uri=None):
        self.kind, self.directory, self.postgres_uri = kind, Path(directory), postgres_uri
        self.port = free_port()
        self.proc = None
        self.url = f"http://127.0.0.1:{self.port}/api/v1"

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "server.log", "a")
        if self.kind == "simple":
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SIMPLE, str(self.directory), API_KEY, str(self.port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            assert self.proc.stdout.readline().strip() == "ready", "Tiled did not start"
            return self
        (self.directory / "data").mkdir(exist_ok=True)
        catalog = self.postgres_uri if self.kind == "postgres" else f"sqlite:///{self.directory}/catalog.db"
        env = dict(
            os.environ,
            XRD_STRAIN_TILED_DIR=str(self.directory),
            XRD_STRAIN_TILED_CATALOG=catalog,
            TILED_ADMIN_PASSWORD=ADMIN_PASSWORD,
            TILED_SECRET_KEY="0" * 64,
            XRD_STRAIN_TILED_AUTH_DB=f"sqlite:///{self.directory}/auth.db",
            PYTHONPATH=str(REPO),
        )
        config = REPO / "deploy" / "tiled" / "config.yml"  # as shipped: scoped keys (the listener's is used)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tiled", "serve", "config", str(config), "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                    if not getattr(self, "_keyed", False):
                        _use_listener_key(self.url)
                        self._keyed = True  # a restart (outage mode) keeps the auth database and its keys
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Tiled ({self.kind}) did not start; see {self.directory}/server.log")

    def stop(self):
        if self.proc is None:
            return
        if self.kind == "simple":
            self.proc.stdin.close()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def rss_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PeakRSS:
    """Highest resident set size of this process while in the block (sampled every 20 ms)."""

    def __enter__(self):
        self.start = self.peak = rss_kb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_kb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def diffractometer():
    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.cli.demo import SAMPLES
    from xrd_strain_plugin.physics.materials import make_reflection

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    return SimulatedDiffractometer(
        reflection=refl, sample=SAMPLES[1].simulated(), rng=np.random.default_rng(0), window_deg=(-5.0, 1.0)
    )


def make_live(url, bundle, spool, **kwargs):
    from xrd_strain_plugin.bluesky import LiveInversion

    return LiveInversion.from_uri(url, api_key=API_KEY, spool_directory=spool, bundle=str(bundle), **kwargs)


def result_readable(http, url, uid):
    """True when the result of ``uid`` reads back with its arrays (either layout version)."""
    r = http.get(f"{url}/metadata/results/{uid}")
    if r.status_code != 200:
        return False
    md = r.json()["data"]["attributes"]["metadata"]
    if md.get("pending"):
        return False
    pointer = md.get("arrays")
    if pointer:  # layout 2
        path = pointer["node"]
    else:  # layout 1: the curve table (the profile table was written with it)
        path = f"results/{uid}/curve"
    return (
        http.get(f"{url}/table/full/{path}", params={"format": "application/vnd.apache.arrow.file"}).status_code == 200
    )


def wait_readable(http, url, uid, t_stop_unix, timeout=60.0, interval=0.025):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result_readable(http, url, uid):
                return time.time() - t_stop_unix
        except httpx.TransportError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"result {uid} not readable after {timeout} s")


def stops_recorder():
    stops = {}

    def cb(name, doc):
        if name == "stop":
            stops[doc["run_start"]] = doc["time"]

    return stops, cb


def bench_in_process(url, bundle, tmp, runs, points):
    from bluesky import RunEngine
    from bluesky.plans import scan

    live = make_live(url, bundle, tmp / "spool-inproc")
    d = diffractometer()
    lo, hi = d.scan_range(low_deg=-1.9, high_deg=0.6)
    stops, rec = stops_recorder()
    RE = RunEngine({})
    RE.subscribe(rec)
    RE.subscribe(live)
    http = httpx.Client(headers={"Authorization": f"Apikey {API_KEY}"})
    latency, parts = [], []
    for i in range(runs + 1):
        (uid,) = RE(scan([d.detector], d.motor, lo, hi, points))
        live.wait(60)  # no polling: the server only serves the plugin while it is timed
        wait_readable(http, url, uid, stops[uid])
        if i == 0:
            continue  # first run: connections and containers are made
        latency.append(live.outcomes[-1].latency_s)
        t = http.get(f"{url}/metadata/results/{uid}").json()["data"]["attributes"]["metadata"]["timings"]
        parts.append((t["queue_s"], t["invert_s"]))
    live.close()
    live.publisher.spool.close()
    latency, parts = np.array(latency), np.array(parts)
    return {
        "p50_ms": pct(latency, 50),
        "p95_ms": pct(latency, 95),
        "n": len(latency),
        "queue_p50_ms": pct(parts[:, 0], 50),
        "invert_p50_ms": pct(parts[:, 1], 50),
        "write_p50_ms": pct(latency - parts[:, 0] - parts[:, 1], 50),
    }


def bench_zmq(url, bundle, tmp, runs, points, pythonpath):
    from bluesky import RunEngine
    from bluesky.callbacks.zmq import Publisher
    from bluesky.plans import scan

    in_port, out_port = free_port(), free_port()
    venv_bin = Path(sys.executable).parent
    proxy = subprocess.Popen(
        [str(venv_bin / "bluesky-0MQ-proxy"), str(in_port), str(out_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = dict(os.environ, TILED_API_KEY=API_KEY, PYTHONPATH=pythonpath)
    cmd = [
        sys.executable,
        "-m",
        "xrd_strain_plugin.cli",
        "listen",
        "--zmq",
        f"127.0.0.1:{out_port}",
        "--tiled",
        url,
        "--spool",
        str(tmp / "spool-zmq"),
        "--model",
        str(bundle),
    ]
    log_path = tmp / "listen.log"
    log = open(log_path, "w")
    listener = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C to stop" not in log_path.read_text():
            if time.monotonic() > deadline or listener.poll() is not None:
                raise RuntimeError("listener did not start:\n" + log_path.read_text()[-2000:])
            time.sleep(0.2)
        time.sleep(1.0)
        d = diffractometer()
        lo, hi = d.scan_range(low_deg=-1.9, high_deg=0.6)
        stops, rec = stops_recorder()
        RE = RunEngine({})
        RE.subscribe(rec)
        publisher = Publisher(f"127.0.0.1:{in_port}")
        RE.subscribe(publisher)
        http = httpx.Client(headers={"Authorization": f"Apikey {API_KEY}"})
        for _ in range(10):  # 0MQ drops what is published before the subscription reaches the proxy
            (uid,) = RE(scan([d.detector], d.motor, lo, hi, points))
            try:
                wait_readable(http, url, uid, stops[uid], timeout=30)
                break
            except TimeoutError:
                continue
        readable = []
        for _ in range(runs):
            (uid,) = RE(scan([d.detector], d.motor, lo, hi, points))
            readable.append(wait_readable(http, url, uid, stops[uid]))
        publisher._socket.close(linger=0)
        publisher._context.destroy(linger=0)
        readable = np.array(readable)
        return {"p50_ms": pct(readable, 50), "p95_ms": pct(readable, 95), "n": len(readable)}
    finally:
        listener.terminate()
        listener.wait(60)
        proxy.terminate()
        proxy.wait(10)
        log.close()


def burst_documents(n, tag):
    from event_model import compose_run

    d = diffractometer()
    two_theta = np.linspace(71.6, 74.2, 131)
    counts = d.counts(two_theta)
    for i in range(n):
        run = compose_run(metadata={"hints": {"dimensions": [[["tth"], "primary"]]}, "sample": f"{tag}{i}"})
        desc = run.compose_descriptor(
            name="primary",
            data_keys={
                "tth": {"dtype": "number", "shape": [], "source": "sim"},
                "det": {"dtype": "number", "shape": [], "source": "sim"},
            },
            hints={"det": {"fields": ["det"]}},
        )
        yield "start", run.start_doc
        yield "descriptor", desc.descriptor_doc
        yield (
            "event_page",
            desc.compose_event_page(
                data={"tth": two_theta, "det": counts},
                timestamps={"tth": two_theta * 0, "det": counts * 0},
                seq_num=list(range(1, 132)),
                time=list(two_theta * 0),
            ),
        )
        yield "stop", run.compose_stop()


def bench_burst(server, bundle, tmp, n, *, outage_s=0.0):
    live = make_live(server.url, bundle, tmp / f"spool-burst-{uuid.uuid4().hex[:6]}", queue_size=16)
    uids, longest = [], 0.0
    docs = list(burst_documents(n, "burst"))
    outage = None
    if outage_s:

        def cut():
            time.sleep(1.0)
            server.stop()
            time.sleep(outage_s)
            server.start()

        outage = threading.Thread(target=cut, daemon=True)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if outage is not None:
            outage.start()
        for name, doc in docs:
            t = time.perf_counter()
            live(name, doc)
            longest = max(longest, time.perf_counter() - t)
            if name == "start":
                uids.append(doc["uid"])
        accepted = time.perf_counter() - t0
        if outage is not None:
            outage.join()
        live.wait()
        if outage_s:  # the plugin is done with its queues; its own replays must empty the spool too
            deadline = time.monotonic() + 600
            while len(live.publisher.spool) and time.monotonic() < deadline:
                time.sleep(0.1)
        total = time.perf_counter() - t0
    counts = dict(live.counts)
    batches = [o.batch_size for o in live.outcomes if getattr(o, "batch_size", None)]
    live.close()
    live.publisher.spool.close()
    return {
        "n": n,
        "total_s": total,
        "rate": n / total,
        "accepted_s": accepted,
        "longest_call_ms": 1e3 * longest,
        "peak_rss_mb": (mem.peak - mem.start) / 1024,
        "counts": counts,
        "mean_batch": float(np.mean(batches)) if batches else 1.0,
        "uids": uids,
    }


def count_per_uid(url, uids):
    """Read every result back (metadata and arrays) and count results per raw uid (each side with
    its own code: the old revision reads its own layout)."""
    from tiled.client import from_uri

    from xrd_strain_plugin.tiled import find_results, read_result

    client = from_uri(url, api_key=API_KEY)
    wanted = set(uids)
    counts = dict.fromkeys(uids, 0)
    unreadable = 0
    for path, node in find_results(client).items():
        got = read_result(node)
        raw = got["metadata"]["raw_uid"]
        if raw in wanted:
            counts[raw] += 1
            arrays = got["arrays"]  # layout v3 names the strain strain_percent; an old side reads "strain"
            if got["metadata"]["status"] == "ok" and arrays.get("strain_percent", arrays.get("strain")) is None:
                unreadable += 1  # listed but its arrays do not read back
    values = np.array(list(counts.values()))
    return {"missing": int((values == 0).sum()), "duplicated": int((values > 1).sum()), "unreadable": unreadable}


def bench_scan(url, bundle, tmp, points=401, repeats=3):
    from bluesky import RunEngine
    from bluesky.plans import scan

    d = diffractometer()
    lo, hi = d.scan_range(low_deg=-1.9, high_deg=0.6)
    live = make_live(url, bundle, tmp / "spool-scan")
    bare, plugged = RunEngine({}), RunEngine({})
    plugged.subscribe(live)
    bare(scan([d.detector], d.motor, lo, hi, 21))
    plugged(scan([d.detector], d.motor, lo, hi, 21))
    live.wait(60)
    t_bare, t_plugged = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        bare(scan([d.detector], d.motor, lo, hi, points))
        t_bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        plugged(scan([d.detector], d.motor, lo, hi, points))
        t_plugged.append(time.perf_counter() - t)
        live.wait(60)
    live.close()
    live.publisher.spool.close()
    return {
        "bare_s": float(np.median(t_bare)),
        "plugged_s": float(np.median(t_plugged)),
        "ratio": float(np.median(t_plugged) / np.median(t_bare)),
    }


def pct(a, q):
    return 1e3 * float(np.percentile(a, q))


def run_side(args, bundle, tmp):
    """Every mode against a fresh server; returns the figures."""
    out = {"load_start": os.getloadavg()[0], "server": args.server}
    modes = args.modes.split(",")
    server = Server(args.server, tmp / "tiled", postgres_uri=args.postgres_uri).start()
    try:
        if "inproc" in modes:
            out["inproc"] = bench_in_process(server.url, bundle, tmp, args.runs, args.points)
            print("inproc", out["inproc"], file=sys.stderr, flush=True)
        if "zmq" in modes:
            out["zmq"] = bench_zmq(
                server.url, bundle, tmp, args.runs, args.points, os.environ.get("PYTHONPATH", str(REPO))
            )
            print("zmq", out["zmq"], file=sys.stderr, flush=True)
        if "scan" in modes:
            out["scan"] = bench_scan(server.url, bundle, tmp)
            print("scan", out["scan"], file=sys.stderr, flush=True)
        for mode, outage_s in (("burst", 0.0), ("outage", 10.0)):
            if mode in modes:
                figures = bench_burst(server, bundle, tmp, args.burst, outage_s=outage_s)
                figures.update(count_per_uid(server.url, figures.pop("uids")))
                out[mode] = figures
                print(mode, figures, file=sys.stderr, flush=True)
    finally:
        out["load_end"] = os.getloadavg()[0]
        server.stop()
    return out


def old_tree(rev, tmp):
    """``git archive`` of the package at ``rev`` (its own model and code) into ``tmp``."""
    target = tmp / f"old-{rev}"
    target.mkdir(parents=True)
    archive = tmp / "old.tar"
    subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), rev, "xrd_strain_plugin", "training"],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(target)
    return target


def fmt(side, key, field, unit=" ms", digits=0):
    value = side.get(key, {}).get(field)
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs per latency mode (default: %(default)s)")
    parser.add_argument("--points", type=int, default=401, help="points per latency scan (default: %(default)s)")
    parser.add_argument("--burst", type=int, default=1000, help="one-curve runs per burst (default: %(default)s)")
    parser.add_argument(
        "--old-burst", type=int, default=200, help="burst size for the old revision, slower (default: %(default)s)"
    )
    parser.add_argument("--model", default=None, help="bundle (default: the shipped one)")
    parser.add_argument(
        "--modes",
        default="inproc,zmq,scan,burst,outage",
        help="comma-separated: inproc, zmq, scan, burst, outage (default: %(default)s)",
    )
    parser.add_argument(
        "--server",
        default="deploy",
        choices=("deploy", "simple", "postgres"),
        help="Tiled configuration for this code (default: %(default)s)",
    )
    parser.add_argument("--postgres-uri", default=None, help="catalog URI for --server postgres")
    parser.add_argument(
        "--compare",
        metavar="REV",
        default=None,
        help="also run git revision REV (its package) against its own server (simple)",
    )
    parser.add_argument("--side", default="new", choices=("new", "old"), help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="FILE", default=None, help="write the figures as JSON")
    args = parser.parse_args()
    from xrd_strain_plugin.inference import default_bundle_path

    bundle = Path(args.model) if args.model else default_bundle_path()
    tmp = Path(tempfile.mkdtemp(prefix="bench_live_"))
    sides = {}
    try:
        if args.side == "old":  # child process: print the figures as JSON and leave
            out = run_side(args, bundle, tmp)
            print("BENCH-JSON " + json.dumps(out, default=float), flush=True)
            return
        if args.compare:
            tree = old_tree(args.compare, tmp)
            old_bundle = tree / "xrd_strain_plugin" / "models" / bundle.name
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--side",
                "old",
                "--server",
                "simple",
                "--runs",
                str(args.runs),
                "--points",
                str(args.points),
                "--burst",
                str(args.old_burst),
                "--modes",
                args.modes,
                "--model",
                str(old_bundle if old_bundle.exists() else bundle),
            ]
            env = dict(os.environ, PYTHONPATH=str(tree))
            done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=str(tmp))
            line = [x for x in done.stdout.splitlines() if x.startswith("BENCH-JSON ")]
            if not line:
                raise RuntimeError(f"old side failed ({done.returncode}):\n{done.stdout[-3000:]}")
            sides["old"] = json.loads(line[0][len("BENCH-JSON ") :])
            sides["old"]["rev"] = args.compare
        sides["new"] = run_side(args, bundle, tmp)
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
    report(args, bundle, sides)
    if args.json:
        Path(args.json).write_text(json.dumps(sides, indent=1, default=float))


def report(args, bundle, sides):
    from xrd_strain_plugin.inference import read_card

    card = read_card(bundle)
    names = [k for k in ("old", "new") if k in sides]
    head = {"old": f"old ({sides.get('old', {}).get('rev')}, simple server)", "new": f"new ({args.server} server)"}
    lines = [
        f"model {card.model_id} {card.version}; {args.points}-point scans; {os.cpu_count()} cores; load average "
        + ", ".join(f"{head[n]}: {sides[n]['load_start']:.1f} -> {sides[n]['load_end']:.1f}" for n in names),
        "",
        "| figure | " + " | ".join(head[n] for n in names) + " |",
        "| --- |" + " --- |" * len(names),
    ]

    def row(label, cells):
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row(
        "in process, stop -> written and readable, p50 / p95",
        [f"{fmt(sides[n], 'inproc', 'p50_ms')} / {fmt(sides[n], 'inproc', 'p95_ms')}" for n in names],
    )
    row(
        "  of which queue / inversion / write (p50)",
        [
            f"{fmt(sides[n], 'inproc', 'queue_p50_ms')} / {fmt(sides[n], 'inproc', 'invert_p50_ms')} / "
            f"{fmt(sides[n], 'inproc', 'write_p50_ms')}"
            for n in names
        ],
    )
    row(
        "0MQ (proxy + `xrd-strain listen`), stop -> readable, p50 / p95",
        [f"{fmt(sides[n], 'zmq', 'p50_ms')} / {fmt(sides[n], 'zmq', 'p95_ms')}" for n in names],
    )
    row(
        "401-point scan, plugin subscribed / not",
        [
            f"{fmt(sides[n], 'scan', 'ratio', 'x', 2)} ({fmt(sides[n], 'scan', 'plugged_s', ' s', 2)} / "
            f"{fmt(sides[n], 'scan', 'bare_s', ' s', 2)})"
            for n in names
        ],
    )
    for mode, label in (("burst", "burst"), ("outage", "burst with a 10 s Tiled outage")):
        row(
            f"{label}: runs, curves/s to written",
            [f"{sides[n].get(mode, {}).get('n', '-')}, {fmt(sides[n], mode, 'rate', '', 1)}" for n in names],
        )
        row(
            f"  {label}: peak RSS above start, longest document call, mean batch",
            [
                f"{fmt(sides[n], mode, 'peak_rss_mb', ' MB')}, {fmt(sides[n], mode, 'longest_call_ms')}, "
                f"{fmt(sides[n], mode, 'mean_batch', '', 1)}"
                for n in names
            ],
        )
        row(
            f"  {label}: results read back: missing / duplicated",
            [
                f"{sides[n].get(mode, {}).get('missing', '-')} / {sides[n].get(mode, {}).get('duplicated', '-')}"
                for n in names
            ],
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
