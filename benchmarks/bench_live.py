"""Live-plugin latency and throughput: stop document -> result readable from Tiled.

Usage::

    .venv/bin/python benchmarks/bench_live.py [--runs 20] [--points 401] [--burst 200] [--model BUNDLE]

Set-up as in deployment: the Tiled server (SQLite catalog, files) runs in its own process;
the RunEngine scans the simulated diffractometer. Modes:

- ``in-process``: the LiveInversion callback is subscribed to the RunEngine.
- ``0mq``: the RunEngine publishes to a ``bluesky-0MQ-proxy`` process and an
  ``xrd-strain listen`` process inverts and writes (the out-of-process deployment).

Latency, one run at a time (the next scan starts once the result is readable):
in process, from the stop document to the return of the Tiled write (the plugin's own
clock; readability is checked afterwards, so no poller loads the server during the timing),
with its breakdown; through 0MQ, from the stop document's time (``stop['time']``) to the
first successful read of both result tables over HTTP (one poll request every 25 ms).
Burst: ``--burst`` one-curve runs (131 points) fed as fast as the callback accepts them;
throughput until every result is written to Tiled.

Prints a markdown report (pasted into docs/bench_live.md).
"""

import sqlite3  # noqa: F401  isort: skip  (before TensorFlow: see xrd_strain_plugin.demo)

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TILED_RETRY_ATTEMPTS", "2")
os.environ.setdefault("TILED_RETRY_TIMEOUT", "5")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
API_KEY = "benchsecret"
SERVE = """
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


def start_tiled(directory):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(directory), API_KEY, str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", "Tiled did not start"
    return proc, f"http://127.0.0.1:{port}/api/v1"


def wait_readable(http, url, uid, t_stop_unix, timeout=60.0, interval=0.025):
    """Poll until both result tables of ``uid`` read back; return seconds since the stop.

    One request per ``interval`` (on the curve table; the profile table is checked once the
    curve reads back), so that the poller does not load the server it is timing.
    """
    deadline = time.monotonic() + timeout
    paths = [f"{url}/table/full/results/{uid}/{t}" for t in ("curve", "profile")]
    done = 0
    while time.monotonic() < deadline:
        try:
            # 404 before the table exists, 500 between its creation and its data
            if http.get(paths[done], params={"format": "application/json"}).status_code == 200:
                done += 1
                if done == len(paths):
                    return time.time() - t_stop_unix
                continue
        except httpx.TransportError:  # uvicorn drops the connection after a 500
            pass
        time.sleep(interval)
    raise TimeoutError(f"result {uid} not readable after {timeout} s")


def diffractometer():
    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.demo import SAMPLES
    from xrd_strain_plugin.physics.materials import reflection

    refl = reflection("YSZ", (4, 0, 0), 1.5406)
    return SimulatedDiffractometer(reflection=refl, sample=SAMPLES[1].simulated(), rng=np.random.default_rng(0),
                                   window_deg=(-5.0, 1.0))


def stops_recorder():
    stops = {}

    def cb(name, doc):
        if name == "stop":
            stops[doc["run_start"]] = doc["time"]

    return stops, cb


def bench_in_process(url, bundle, tmp, runs, points):
    from bluesky import RunEngine
    from bluesky.plans import scan

    from xrd_strain_plugin.bluesky import LiveInversion

    live = LiveInversion.from_uri(url, api_key=API_KEY, spool_directory=tmp / "spool-inproc", bundle=bundle)
    d = diffractometer()
    lo, hi = d.scan_range(low_deg=-1.9, high_deg=0.6)
    stops, rec = stops_recorder()
    RE = RunEngine({})
    RE.subscribe(rec)
    RE.subscribe(live)
    http = httpx.Client(headers={"Authorization": f"Apikey {API_KEY}"})
    readable, plugin, parts = [], [], []
    for i in range(runs + 1):
        (uid,) = RE(scan([d.detector], d.motor, lo, hi, points))
        live.wait(60)  # no polling: the server only serves the plugin while it is timed
        wait_readable(http, url, uid, stops[uid])  # readable once the write returned
        if i == 0:
            continue  # first run: the results container and connections are created
        outcome = live.outcomes[-1]
        plugin.append(outcome.latency_s)
        readable.append(outcome.latency_s)
    from tiled.client import from_uri

    client = from_uri(url, api_key=API_KEY)
    for uid in list(stops)[1:]:
        t = client["results"][uid].metadata["timings"]
        parts.append((t["queue_s"], t["invert_s"], t.get("inverter_simulate", np.nan), t.get("inverter_network", np.nan)))
    live.close()
    live.publisher.spool.close()
    return np.array(readable), np.array(plugin), np.array(parts)


def bench_zmq(url, bundle, tmp, runs, points):
    from bluesky import RunEngine
    from bluesky.callbacks.zmq import Publisher
    from bluesky.plans import scan

    in_port, out_port = free_port(), free_port()
    venv_bin = Path(sys.executable).parent
    proxy = subprocess.Popen([str(venv_bin / "bluesky-0MQ-proxy"), str(in_port), str(out_port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, TILED_API_KEY=API_KEY)
    cmd = [sys.executable, "-m", "xrd_strain_plugin.cli", "listen", "--zmq", f"127.0.0.1:{out_port}",
           "--tiled", url, "--spool", str(tmp / "spool-zmq")]
    if bundle:
        cmd += ["--model", str(bundle)]
    log = open(tmp / "listen.log", "w")
    listener = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # wait until the listener has loaded and warmed up its model
        deadline = time.monotonic() + 180
        while "Ctrl-C to stop" not in (tmp / "listen.log").read_text():
            if time.monotonic() > deadline or listener.poll() is not None:
                raise RuntimeError("listener did not start:\n" + (tmp / "listen.log").read_text()[-2000:])
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
        # Warm-up: 0MQ drops what is published before the listener's subscription reaches the
        # proxy, so repeat a first run until one comes through.
        for _ in range(10):
            (uid,) = RE(scan([d.detector], d.motor, lo, hi, points))
            try:
                wait_readable(http, url, uid, stops[uid], timeout=20)
                break
            except TimeoutError:
                continue
        readable = []
        for _ in range(runs):
            (uid,) = RE(scan([d.detector], d.motor, lo, hi, points))
            readable.append(wait_readable(http, url, uid, stops[uid]))
        # Close with no linger: a context left to the garbage collector blocks in term() on
        # messages it cannot deliver once the proxy is gone (it hung a later TensorFlow import).
        publisher._socket.close(linger=0)
        publisher._context.destroy(linger=0)
        return np.array(readable)
    finally:
        listener.terminate()
        listener.wait(60)
        proxy.terminate()
        proxy.wait(10)
        log.close()


def bench_burst(url, bundle, tmp, n):
    from event_model import compose_run

    from xrd_strain_plugin.bluesky import LiveInversion

    live = LiveInversion.from_uri(url, api_key=API_KEY, spool_directory=tmp / "spool-burst", bundle=bundle,
                                  queue_size=16)
    d = diffractometer()
    two_theta = np.linspace(71.6, 74.2, 131)
    counts = d.counts(two_theta)
    t0 = time.perf_counter()
    for i in range(n):
        run = compose_run(metadata={"hints": {"dimensions": [[["tth"], "primary"]]}, "sample": f"burst{i}"})
        desc = run.compose_descriptor(
            name="primary", data_keys={"tth": {"dtype": "number", "shape": [], "source": "sim"},
                                       "det": {"dtype": "number", "shape": [], "source": "sim"}},
            hints={"det": {"fields": ["det"]}})
        live("start", run.start_doc)
        live("descriptor", desc.descriptor_doc)
        live("event_page", desc.compose_event_page(data={"tth": two_theta, "det": counts},
                                                   timestamps={"tth": two_theta * 0, "det": counts * 0},
                                                   seq_num=list(range(1, 132)), time=list(two_theta * 0)))
        live("stop", run.compose_stop())
    accepted = time.perf_counter() - t0
    live.wait()
    total = time.perf_counter() - t0
    live.close()
    live.publisher.spool.close()
    parts = [o for o in live.outcomes]
    assert live.counts["ok"] == n and live.counts["written"] == n, dict(live.counts)
    return total, accepted, len(parts), live.peak_queue_depth


def pct(a, q):
    return 1e3 * float(np.percentile(a, q))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points", type=int, default=401)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--model", default=None, help="bundle (default: the shipped one)")
    parser.add_argument("--modes", default="inproc,zmq,burst")
    args = parser.parse_args()
    from xrd_strain_plugin.inference import default_bundle_path, read_card

    bundle = Path(args.model) if args.model else default_bundle_path()
    card = read_card(bundle)
    tmp = Path(tempfile.mkdtemp(prefix="bench_live_"))
    proc, url = start_tiled(tmp / "tiled")
    modes = args.modes.split(",")
    lines = [f"model {card.model_id} {card.version}; {args.points}-point scans; Tiled (SQLite) in its own process; "
             f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", ""]
    try:
        if "inproc" in modes:
            readable, plugin, parts = bench_in_process(url, bundle, tmp, args.runs, args.points)
            lines += [
                f"in-process, {len(readable)} runs: stop -> result written and readable p50 {pct(plugin, 50):.0f} ms, "
                f"p95 {pct(plugin, 95):.0f} ms",
                f"  breakdown p50: queue {pct(parts[:, 0], 50):.0f} ms, invert {pct(parts[:, 1], 50):.0f} ms "
                f"(of which simulate {pct(parts[:, 2], 50):.0f} ms, network {pct(parts[:, 3], 50):.0f} ms), "
                f"write {pct(plugin - parts[:, 0] - parts[:, 1], 50):.0f} ms",
            ]
            print("\n".join(lines[-2:]), flush=True)
        if "zmq" in modes:
            readable = bench_zmq(url, bundle, tmp, args.runs, args.points)
            lines.append(f"0MQ (proxy + `xrd-strain listen` processes), {len(readable)} runs: stop -> readable "
                         f"p50 {pct(readable, 50):.0f} ms, p95 {pct(readable, 95):.0f} ms")
            print(lines[-1], flush=True)
        if "burst" in modes:
            total, accepted, n, peak = bench_burst(url, bundle, tmp, args.burst)
            lines.append(f"burst of {args.burst} curves (131 points, queue 16): all written in {total:.1f} s = "
                         f"{args.burst / total:.1f} curves/s ({1e3 * total / args.burst:.0f} ms per curve); "
                         f"peak queue depth {peak}")
            print(lines[-1], flush=True)
    finally:
        proc.stdin.close()
        proc.wait(30)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
