"""Cost of the Prefect machinery: refinement through the flow vs the engine called directly, and
dataset generation through the flow (local processes, Dask LocalCluster) vs the plain generator.

Usage::

    .venv/bin/python benchmarks/bench_flows.py [--curves 160] [--shard-size 20] [--workers 2]
                                               [--refine 4] [--budget-s 2]

Everything runs here, for real: a temporary Prefect server (prefect_test_harness, own
PREFECT_HOME), a Tiled server in its own process, the shipped model, the refinement engine.

Refinement, the same curves and options on each path:
- ``engine``: ``refine_curve`` on inputs already in memory (the engine alone);
- ``library``: claim, read inputs, refine, write, per result, through Tiled (no Prefect);
- ``flow``: one ``refine_new_results`` run over as many fresh results (one task per result).
Overhead per refinement = (flow - library) / n (Prefect) and (flow - engine) / n (Prefect + Tiled).

Generation, the same DatasetSpec (CNN2 preset) into fresh directories, one after the other:
``generate(workers=W)`` (ProcessPoolExecutor), the flow with W local processes, the flow on a
Dask LocalCluster of W single-threaded worker processes (imports done beforehand), once with
Dask's default worker environment and once with ``distributed.nanny.pre-spawn-environ: {}``.
Shards are checked byte-identical.

Prints a markdown report (pasted into BENCHMARKS.md) with the load average before and after.
"""

import sqlite3  # noqa: F401  isort: skip  (before TensorFlow: see xrd_strain_plugin.cli.demo)

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="bench-flows-prefect-")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
API_KEY = "benchsecret"
SERVE = """
import sys
from tiled.server import SimpleTiledServer
server = SimpleTiledServer(sys.argv[1], api_key=sys.argv[2], port=int(sys.argv[3]))
print("ready", flush=True)
sys.stdin.read()
server.close()
"""


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def start_tiled(directory):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(directory), API_KEY, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready", "Tiled did not start"
    return proc, f"http://127.0.0.1:{port}/api/v1"


def store_results(url, n, seed):
    """``n`` network answers for simulated YSZ 400 curves, written as the live plugin writes."""
    from tiled.client import from_uri

    from xrd_strain_plugin.inference import Inverter
    from xrd_strain_plugin.inference.registry import shipped_bundle_path
    from xrd_strain_plugin.physics import instrument, profiles
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.tiled import TiledResultsWriter, record_from_result

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    inverter = Inverter(shipped_bundle_path())
    rng = np.random.default_rng(seed)
    tb = refl.two_theta_bragg_deg
    two_theta = np.arange(tb - 2.0, tb + 0.4, 0.005)
    writer = TiledResultsWriter(from_uri(url, api_key=API_KEY))
    uids = []
    for _ in range(n):
        e_max, t_nm = rng.uniform(0.008, 0.02), rng.uniform(200, 600)
        strain = profiles.strain_from_weights(np.exp(-0.5 * ((np.arange(10) - 3) / 2.0) ** 2), e_max, 60)
        dw = profiles.dw_coupled(strain, e_max, 0.6)
        r = instrument.simulate_scan(two_theta, strain, dw, t_nm, refl, resolution_fwhm_deg=0.01)
        counts = np.asarray(instrument.apply_counts(r, scale=1e6, background=3.0, rng=rng))[0]
        uid = str(uuid.uuid4())
        writer.write(record_from_result(inverter.invert(two_theta, counts, refl), raw_uid=uid))
        uids.append(uid)
    return uids


def bench_refinement(url, n, options):
    from prefect.task_runners import ThreadPoolTaskRunner
    from tiled.client import from_uri

    from xrd_strain_flows.refine import refine_new_results
    from xrd_strain_plugin.refinement import RefineOptions, refine_curve
    from xrd_strain_plugin.tiled.refinement import claim_refinement, find_unrefined, refinement_inputs, write_refinement

    client = from_uri(url, api_key=API_KEY)
    # engine + library on the same n results
    store_results(url, n, seed=1)
    nodes = list(find_unrefined(client).values())
    inputs = [refinement_inputs(node) for node in nodes]
    t0 = time.perf_counter()
    for two_theta, counts, refl, start in inputs:
        refine_curve(two_theta, counts, refl, start=start, options=RefineOptions(**options))
    engine = time.perf_counter() - t0
    t0 = time.perf_counter()
    for node in nodes:
        assert claim_refinement(node, worker="bench")
        two_theta, counts, refl, start = refinement_inputs(node)
        write_refinement(node, refine_curve(two_theta, counts, refl, start=start, options=RefineOptions(**options)))
    library = time.perf_counter() - t0
    # the flow on n fresh results (the same random curves: same seed)
    store_results(url, n, seed=1)
    os.environ["TILED_API_KEY"] = API_KEY
    refine_new_results(url, limit=1, **options)  # warm-up run (first-run imports), 1 result
    t0 = time.perf_counter()
    out = refine_new_results(url, **options)
    flow = time.perf_counter() - t0
    assert len(out["refined"]) == n - 1, out
    # one task at a time: the same work as the library loop, plus Prefect
    store_results(url, n - 1, seed=1)
    sequential = refine_new_results.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    t0 = time.perf_counter()
    assert len(sequential(url, **options)["refined"]) == n - 1
    flow_1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert refine_new_results(url, **options)["found"] == 0
    empty = time.perf_counter() - t0
    return {
        "engine": engine / n,
        "library": library / n,
        "flow": flow / (n - 1),
        "empty": empty,
        "flow_1": flow_1 / (n - 1),
        "per_task": (flow_1 - empty) / (n - 1),
    }


def bench_generation(curves, shard_size, workers, tmp):
    from distributed import LocalCluster

    from xrd_strain_flows.regenerate import dataset_dir, regenerate
    from xrd_strain_training.generate import DatasetSpec, generate
    from xrd_strain_training.presets import get_preset

    params = dict(preset="CNN2", n_curves=curves, test_curves=0, seed=99, shard_size=shard_size)
    spec = DatasetSpec(preset=get_preset("CNN2"), seed=99, n_curves=curves, shard_size=shard_size)
    out = {}
    t0 = time.perf_counter()
    plain = generate(spec, tmp / "plain", workers=workers, progress=False)
    out["plain generate()"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = regenerate(workers=workers, data_root=str(tmp / "flow"), **params)
    out[f"flow, {workers} local processes"] = time.perf_counter() - t0
    import dask as dask_config
    from distributed import Client

    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 and one BLAS/OpenMP thread
    # ("distributed.nanny.pre-spawn-environ"); measured both ways.
    for label, environ in (("default worker environment", None), ("pre-spawn-environ {}", {})):
        settings = {} if environ is None else {"distributed.nanny.pre-spawn-environ": environ}
        with (
            dask_config.config.set(settings),
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        ):
            with Client(cluster) as client:  # warm workers: imports done, as on a standing cluster
                client.run(
                    lambda: __import__("xrd_strain_flows.regenerate") and __import__("xrd_strain_training.generate")
                )
            t0 = time.perf_counter()
            name = "dask" if environ is None else "dask-env"
            dask = regenerate(scheduler_address=cluster.scheduler_address, data_root=str(tmp / name), **params)
            out[f"flow, Dask LocalCluster ({workers} warm worker processes, {label})"] = time.perf_counter() - t0
    shards = lambda d: json.loads((Path(d) / "manifest.json").read_text())["shards"]  # noqa: E731
    dirs = [tmp / "plain", Path(local["train"]["path"])] + [
        Path(dataset_dir(tmp / name, preset="CNN2", material="YSZ", hkl=(4, 0, 0), wavelength_angstrom=1.5406, seed=99))
        / "train"
        for name in ("dask", "dask-env")
    ]
    sha = [{k: v["sha256"] for k, v in shards(d).items()} for d in dirs]
    differ = [str(d) for d, s in zip(dirs, sha) if s != sha[0]]
    if differ:
        bad = {str(d): sorted(k for k in s if s[k] != sha[0].get(k)) for d, s in zip(dirs, sha)}
        raise AssertionError(f"shards differ between paths: {bad}")
    assert plain["fingerprint"] == local["train"]["fingerprint"] == dask["train"]["fingerprint"]
    # time spent inside make_shard, summed over shards (the compute, whoever ran it)
    inside = [sum(v["seconds"] for v in shards(d).values()) for d in dirs]
    return {k: (v, i) for (k, v), i in zip(out.items(), inside)}


def _refinement(args, tmp):
    proc, url = start_tiled(tmp / "tiled")
    try:
        return bench_refinement(url, args.refine, {"budget_s": args.budget_s, "global_budget_s": 0.0})
    finally:
        proc.stdin.close()
        proc.wait(30)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--curves", type=int, default=160, help="curves generated per path")
    p.add_argument("--shard-size", type=int, default=20, help="curves per shard (= per task)")
    p.add_argument("--workers", type=int, default=2, help="processes per generation path")
    p.add_argument("--refine", type=int, default=4, help="results refined per refinement path")
    p.add_argument("--budget-s", type=float, default=2.0, help="refinement budget per curve")
    p.add_argument("--skip-refinement", action="store_true", help="only the generation paths")
    args = p.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    lines = [f"machine: {os.cpu_count()} cores; before: {load()}"]
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=180):
        tmp = Path(tmp)
        r = None if args.skip_refinement else _refinement(args, tmp)
        lines += (
            []
            if r is None
            else [
                "",
                f"### Refinement ({args.refine} results, budget {args.budget_s} s, no global stage; {load()})",
                "",
                "| path | seconds per result |",
                "| --- | --- |",
                f"| engine alone (`refine_curve`, inputs in memory) | {r['engine']:.2f} |",
                f"| library: claim + read + refine + write through Tiled | {r['library']:.2f} |",
                f"| flow `refine_new_results`, {args.refine - 1} results, 2 tasks at a time "
                f"(the default) | {r['flow']:.2f} |",
                f"| the same flow, one task at a time | {r['flow_1']:.2f} |",
                f"| flow run with nothing to refine (fixed cost of a run) | {r['empty']:.2f} |",
                "",
                f"One task at a time, per refinement: {r['per_task']:.2f} s after the fixed "
                f"{r['empty']:.2f} s of a run; Prefect's share per result "
                f"{r['per_task'] - r['library']:+.2f} s, Prefect + Tiled "
                f"{r['per_task'] - r['engine']:+.2f} s.",
            ]
        )
        g = bench_generation(args.curves, args.shard_size, args.workers, tmp)
        base = g["plain generate()"][0]
        lines += [
            "",
            f"### Generation ({args.curves} CNN2 curves in shards of {args.shard_size}; {load()})",
            "",
            "| path | wall s | curves/s | vs plain | s inside make_shard, summed |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [f"| {k} | {v:.1f} | {args.curves / v:.1f} | {base / v:.2f}x | {i:.1f} |" for k, (v, i) in g.items()]
        lines += ["", "Shards byte-identical on the three paths (sha256 in the manifests)."]
    lines.append(f"\nafter: {load()}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
