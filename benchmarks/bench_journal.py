"""The durable transport's cost on the RunEngine side and its replay speed.

1. Scan time of a 401-point scan of the simulated diffractometer with nothing subscribed, with
   the :class:`~xrd_strain_plugin.bluesky.journal.JournalWriter` subscribed, and with bluesky's
   0MQ ``Publisher`` subscribed (to a local proxy) for comparison; runs interleaved (the order
   rotates), medians of the wall time and of the process's CPU time (all its threads, the
   journal's included: on a loaded machine the wall time says more about the scheduler).
2. Replay: documents/s a listener reads back from a journal server from position 0 (the restart
   after an outage), for a journal of ``--replay-runs`` one-curve runs.
3. Transport latency: from the RunEngine's call to the document in a long-polling listener.
4. Catch-up from Tiled: runs/s read back as databroker BlueskyRuns into documents (the cost per
   missed run when another writer stores the raw runs), ``--catch-up-runs`` runs written by a
   TiledWriter into a Tiled server in its own process.

    python benchmarks/bench_journal.py --repeats 7 --replay-runs 500 --catch-up-runs 30
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scan_cost(repeats: int, n_points: int) -> dict:
    import numpy as np
    from bluesky import RunEngine
    from bluesky.callbacks.zmq import Publisher
    from bluesky.plans import scan

    from xrd_strain_plugin.bluesky.journal import JournalWriter
    from xrd_strain_plugin.bluesky.remote import start_proxy
    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.cli.demo import SAMPLES
    from xrd_strain_plugin.physics.materials import make_reflection

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    diff = SimulatedDiffractometer(reflection=refl, sample=SAMPLES[1].simulated(), rng=np.random.default_rng(0))
    lo, hi = diff.scan_range()
    journal = JournalWriter(tempfile.mkdtemp(prefix="bench-journal-"))
    in_port, out_port = _free_port(), _free_port()
    start_proxy(in_port, out_port)
    publisher = Publisher(f"127.0.0.1:{in_port}")
    variants = {"nothing": None, "journal": journal, "0mq publisher": publisher}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    RE = RunEngine({})
    RE(scan([diff.detector], diff.motor, lo, hi, 21))  # warm-up
    names = list(variants)
    for r in range(repeats):
        for name in names[r % 3 :] + names[: r % 3]:  # rotate the order: no variant always first
            cb = variants[name]
            token = RE.subscribe(cb) if cb is not None else None
            t0, c0 = time.perf_counter(), time.process_time()
            RE(scan([diff.detector], diff.motor, lo, hi, n_points))
            wall[name].append(time.perf_counter() - t0)  # what the beamline waits for
            journal.wait()  # the journal thread's remaining work counts in the CPU time
            cpu[name].append(time.process_time() - c0)
            if token is not None:
                RE.unsubscribe(token)
    journal.close()
    publisher.close()
    base_wall, base_cpu = statistics.median(wall["nothing"]), statistics.median(cpu["nothing"])
    return {
        name: {
            "wall_median_s": statistics.median(wall[name]),
            "wall_ratio": statistics.median(wall[name]) / base_wall,
            "cpu_median_s": statistics.median(cpu[name]),
            "cpu_ratio": statistics.median(cpu[name]) / base_cpu,
            "wall_s": wall[name],
            "cpu_s": cpu[name],
        }
        for name in variants
    }


def replay_speed(n_runs: int, n_points: int) -> dict:
    import numpy as np
    from event_model import compose_run

    from xrd_strain_plugin.bluesky.journal import JournalClient, JournalWriter, serve_in_thread

    directory = tempfile.mkdtemp(prefix="bench-replay-")
    writer = JournalWriter(directory)
    angles = np.linspace(35.8, 37.1, n_points)
    t0 = time.perf_counter()
    n_docs = 0
    for i in range(n_runs):
        run = compose_run(metadata={"hints": {"dimensions": [[["omega"], "primary"]]}, "num_points": n_points})
        desc = run.compose_descriptor(
            name="primary",
            data_keys={
                "omega": {"dtype": "number", "shape": [], "source": "sim"},
                "det": {"dtype": "number", "shape": [], "source": "sim"},
            },
            hints={"det": {"fields": ["det"]}},
        )
        writer("start", run.start_doc)
        writer("descriptor", desc.descriptor_doc)
        for j in range(n_points):
            writer(
                "event",
                desc.compose_event(
                    data={"omega": float(angles[j]), "det": 1000.0 + j},
                    timestamps={"omega": 0.0, "det": 0.0},
                    seq_num=j + 1,
                ),
            )
        writer("stop", run.compose_stop())
        n_docs += n_points + 3
    writer.wait()
    write_s = time.perf_counter() - t0
    writer.close()
    size = sum(p.stat().st_size for p in pathlib.Path(directory).glob("*.jsonl"))
    server, thread = serve_in_thread(directory)
    client = JournalClient(server.endpoint)
    t0 = time.perf_counter()
    position, read = 0, 0
    while position < n_docs:
        batch = client.fetch(position, max_docs=2000, wait_s=0.0)
        read += len(batch)
        position = batch[-1][0] + 1
    replay_s = time.perf_counter() - t0
    client.close()
    server.stop()
    thread.join(5)
    return {
        "runs": n_runs,
        "documents": n_docs,
        "bytes": size,
        "write_docs_per_s": n_docs / write_s,
        "replay_s": replay_s,
        "replay_docs_per_s": read / replay_s,
        "replay_runs_per_s": n_runs / replay_s,
    }


def transport_latency(n: int) -> dict:
    """Seconds from ``JournalWriter.__call__`` to the document in a long-polling client's hands."""
    import threading

    from xrd_strain_plugin.bluesky.journal import JournalClient, JournalWriter, serve_in_thread

    directory = tempfile.mkdtemp(prefix="bench-latency-")
    writer = JournalWriter(directory)
    server, thread = serve_in_thread(directory)
    client = JournalClient(server.endpoint)
    sent: dict[int, float] = {}

    def produce():
        for i in range(n):
            time.sleep(0.05)
            sent[i] = time.perf_counter()
            writer("event", {"i": i})

    producer = threading.Thread(target=produce)
    producer.start()
    latencies, position = [], 0
    while len(latencies) < n:
        for seq, _name, doc in client.fetch(position, wait_s=1.0):
            latencies.append(time.perf_counter() - sent[doc["i"]])
            position = seq + 1
    producer.join()
    client.close()
    server.stop()
    thread.join(5)
    writer.close()
    latencies.sort()
    return {"n": n, "p50_s": latencies[n // 2], "p95_s": latencies[int(0.95 * (n - 1))]}


SERVE = """
import sys
from tiled.server import SimpleTiledServer
server = SimpleTiledServer(sys.argv[1], api_key="bench", port=int(sys.argv[2]))
print("ready", flush=True)
sys.stdin.read()
server.close()
"""


def catch_up_read(n_runs: int, n_points: int) -> dict:
    import subprocess

    import numpy as np
    from bluesky import RunEngine
    from bluesky.plans import scan
    from tiled.client import from_uri

    from xrd_strain_plugin.bluesky.catchup import run_documents
    from xrd_strain_plugin.bluesky.detection import RockingCurveConfig
    from xrd_strain_plugin.bluesky.raw import raw_run_writer
    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.cli.demo import SAMPLES
    from xrd_strain_plugin.physics.materials import make_reflection

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, tempfile.mkdtemp(prefix="bench-tiled-"), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}/api/v1"
        refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
        diff = SimulatedDiffractometer(reflection=refl, sample=SAMPLES[1].simulated(), rng=np.random.default_rng(0))
        lo, hi = diff.scan_range()
        raw = raw_run_writer(from_uri(url, api_key="bench"))
        RE = RunEngine({})
        RE.subscribe(raw)
        uids = [RE(scan([diff.detector], diff.motor, lo, hi, n_points))[0] for _ in range(n_runs)]
        raw.wait()
        raw.close()
        client = from_uri(url, api_key="bench")
        t0 = time.perf_counter()
        n_docs = sum(len(list(run_documents(client["raw"][uid], RockingCurveConfig()))) for uid in uids)
        elapsed = time.perf_counter() - t0
    finally:
        server.stdin.close()
        server.wait(30)
    return {"runs": n_runs, "points": n_points, "seconds": elapsed, "runs_per_s": n_runs / elapsed, "documents": n_docs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7, help="scans per variant (default: %(default)s)")
    p.add_argument("--points", type=int, default=401, help="points per scan (default: %(default)s)")
    p.add_argument("--replay-runs", type=int, default=500, help="runs in the replay journal (default: %(default)s)")
    p.add_argument("--replay-points", type=int, default=61, help="points per replayed run (default: %(default)s)")
    p.add_argument(
        "--catch-up-runs", type=int, default=30, help="runs read back from Tiled (default: %(default)s; 0: skip)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = p.parse_args(argv)
    out = {
        "load_average": os.getloadavg(),
        "scan": scan_cost(args.repeats, args.points),
        "replay": replay_speed(args.replay_runs, args.replay_points),
        "latency": transport_latency(100),
    }
    if args.catch_up_runs:
        out["catch_up"] = catch_up_read(args.catch_up_runs, args.points)
    out["load_average_after"] = os.getloadavg()
    for name, r in out["scan"].items():
        print(
            f"{args.points}-point scan, {name:<14}: wall median {r['wall_median_s']:.3f} s ({r['wall_ratio']:.3f}x), "
            f"CPU of the process {r['cpu_median_s']:.3f} s ({r['cpu_ratio']:.3f}x)"
        )
    r = out["replay"]
    print(
        f"journal: wrote {r['documents']} documents ({r['bytes'] / 1e6:.1f} MB) at {r['write_docs_per_s']:.0f} docs/s; "
        f"replayed them in {r['replay_s']:.2f} s ({r['replay_docs_per_s']:.0f} docs/s, {r['replay_runs_per_s']:.0f} runs/s)"
    )
    lat = out["latency"]
    print(
        f"journal transport, write -> in the listener's hands: p50 {lat['p50_s'] * 1e3:.1f} ms, "
        f"p95 {lat['p95_s'] * 1e3:.1f} ms ({lat['n']} documents)"
    )
    if "catch_up" in out:
        c = out["catch_up"]
        print(
            f"catch-up: read {c['runs']} {c['points']}-point raw runs back from Tiled as BlueskyRuns in "
            f"{c['seconds']:.2f} s ({c['runs_per_s']:.1f} runs/s)"
        )
    print(f"load average {out['load_average']} -> {out['load_average_after']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
