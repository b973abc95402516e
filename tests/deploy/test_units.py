"""deploy/services as shipped: every unit starts on a fresh host, and the deployed chain (Tiled,
journal server, listener, each started from its unit's own command line and environment files)
inverts scans, follows a promotion in the registry the flows promote into, and stops in bounds."""

from __future__ import annotations

import json
import shutil
import signal
import time

import numpy as np
import pytest

from tests.deploy.units import REPO, Host, UnitStartError, read_env_file, units
from tests.live_support import free_port

#: Environment files the units read, and the example each is filled in from.
ENV_EXAMPLES = {
    "/etc/xrd-strain/flows.env": REPO / "deploy/flows/flows.env.example",
    "/etc/xrd-strain/listen.env": REPO / "deploy/listen/listen.env.example",
    "/etc/xrd-strain/tiled.env": REPO / "deploy/tiled/tiled.env.example",
    "/etc/xrd-strain/journal.env": REPO / "deploy/journal/journal.env.example",
    "/etc/xrd-strain/prefect.env": None,  # documented in prefect-server.service itself
}
KEY = "testsecret"


def fresh_host(tmp_path, *, tmpfiles=True, ports=None, fill=None):
    host = Host(tmp_path / "host", ports=ports)
    if tmpfiles:
        host.apply_tmpfiles()
    for path, example in ENV_EXAMPLES.items():
        text = example.read_text() if example is not None else "PREFECT_HOME=/var/lib/prefect\n"
        for key, value in (fill or {}).get(path, {}).items():
            text += f"\n{key}={value}\n"
        host.write_env_file(path, text)
    return host


def test_every_unit_starts_on_a_fresh_host_with_what_the_deploy_files_make(tmp_path):
    found = units()
    assert {
        "xrd-strain-listen.service",
        "xrd-strain-journal.service",
        "xrd-strain-journal-prune.timer",
        "tiled.service",
        "xrd-strain-flows.service",
    } <= set(found)
    # The optional Dask units need the scheduler's address (commented out in flows.env.example).
    host = fresh_host(tmp_path, fill={"/etc/xrd-strain/flows.env": {"DASK_SCHEDULER_ADDRESS": "tcp://dask:8786"}})
    for name, unit in found.items():
        if name.endswith(".timer"):
            assert unit.one("Unit", "Timer") in found, f"{name} starts a unit that is not shipped"
            continue
        for value in unit.get("EnvironmentFile"):  # every required file has an example in deploy/
            assert value.lstrip("-") in ENV_EXAMPLES, f"{name}: no example for {value}"
        env = host.prepare(unit)  # raises where systemd would refuse the unit
        for key in ("ExecStart", "ExecStartPost"):
            for i in range(len(unit.get(key))):
                host.command(unit, env, key, i)  # every ${VAR} is set
    # Without tmpfiles.d the flows' ReadWritePaths is missing: the check can fail.
    with pytest.raises(UnitStartError, match="ReadWritePaths=/srv/xrd-strain"):
        fresh_host(tmp_path / "bare", tmpfiles=False).prepare(found["xrd-strain-flows.service"])


def test_the_listener_and_the_flows_use_one_registry_and_the_spool_is_a_state_directory(tmp_path):
    found = units()
    host = fresh_host(tmp_path)
    promoted_into = read_env_file((REPO / "deploy/flows/flows.env.example").read_text())["XRD_STRAIN_REGISTRY"]
    for name in ("xrd-strain-listen.service", "xrd-strain-flows.service", "prefect-worker.service"):
        env = host.prepare(found[name])
        assert env.get("XRD_STRAIN_REGISTRY") == promoted_into, name
    listen = found["xrd-strain-listen.service"]
    argv, _ = host.command(listen, host.prepare(listen))
    spool = argv[argv.index("--spool") + 1]
    states = [host.path(f"/var/lib/{d}") for v in listen.get("StateDirectory") for d in v.split()]
    assert any(str(spool).startswith(str(s) + "/") for s in states), (spool, states)
    assert "--refine-stop-s" in argv and float(argv[argv.index("--refine-stop-s") + 1]) < 0.5 * float(
        listen.one("TimeoutStopSec")
    )


def test_the_journal_units_serve_and_prune_an_empty_journal_on_a_fresh_host(tmp_path):
    found = units()
    port = free_port()
    host = fresh_host(tmp_path, ports={5579: port})
    unit = found["xrd-strain-journal.service"]
    env = host.prepare(unit)
    server = host.start(unit, env)
    try:
        line = server.stdout.readline()
        assert "serving" in line and f"tcp://127.0.0.1:{port}" in line, line  # loopback by default
        done, ignore = host.run(unit, env, "ExecStartPost", timeout=120)
        assert ignore and done.returncode == 0 and "deleted 0 segment(s)" in done.stdout, done.stderr
        prune = found["xrd-strain-journal-prune.service"]
        done, _ = host.run(prune, host.prepare(prune), timeout=120)
        assert done.returncode == 0, done.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0


def _scan(RE, dif, n=121):
    from bluesky.plans import scan

    (uid,) = RE(scan([dif.detector], dif.motor, *dif.scan_range(), n), sample="deployed")
    return uid


def _result(client, uid, timeout=120.0):
    from xrd_strain_plugin.tiled import find_results

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = find_results(client, raw_uid=uid)
        if hits:
            (node,) = hits.values()
            return node
        time.sleep(0.3)
    raise AssertionError(f"no result for {uid} within {timeout} s")


def _wait_http(url, process, timeout=120.0):
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "the server did not start"
        time.sleep(0.3)


def test_the_deployed_chain_follows_a_promotion_and_stops_within_its_timeout(tmp_path):
    """tiled.service, xrd-strain-journal.service and xrd-strain-listen.service, each started from
    its unit; a RunEngine writing the journal; a promotion into the registry the flows use."""
    from bluesky import RunEngine
    from tiled.client import from_uri

    from xrd_strain_plugin.bluesky.journal import JournalWriter
    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.cli.demo import SAMPLES
    from xrd_strain_plugin.inference.registry import SHIPPED_MODELS, ModelRegistry
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.tiled import find_results

    found = units()
    tiled_port, journal_port = free_port(), free_port()
    host = fresh_host(
        tmp_path,
        ports={8000: tiled_port, 5579: journal_port},
        fill={"/etc/xrd-strain/tiled.env": {"TILED_ADMIN_PASSWORD": KEY, "TILED_SECRET_KEY": "0" * 64}},
    )
    procs = {}
    try:
        for name in ("tiled.service", "xrd-strain-journal.service"):
            procs[name] = host.start(found[name], host.prepare(found[name]))
        _wait_http(f"http://127.0.0.1:{tiled_port}/healthz", procs["tiled.service"])
        # What the operator does once (tiled.service's comment): the scoped keys; the listener's goes to listen.env.
        from xrd_strain_plugin.tiled.keys import create_scoped_keys

        keys = create_scoped_keys(f"http://127.0.0.1:{tiled_port}", admin="admin", password=KEY)
        host.write_env_file(
            "/etc/xrd-strain/listen.env",
            (REPO / "deploy/listen/listen.env.example").read_text()
            + (
                f"\nTILED_API_KEY={keys['listener']}\nXRD_STRAIN_JOURNAL=127.0.0.1:{journal_port}\n"
                f"XRD_STRAIN_TILED=http://127.0.0.1:{tiled_port}\n"
            ),
        )
        listen = found["xrd-strain-listen.service"]
        listen_env = host.prepare(listen)
        registry = ModelRegistry(host.path(listen_env["XRD_STRAIN_REGISTRY"]))
        procs["listen"] = host.start(listen, listen_env)

        journal = JournalWriter(host.path("/var/lib/bluesky/journal"))
        RE = RunEngine({})
        RE.subscribe(journal)
        refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
        dif = SimulatedDiffractometer(reflection=refl, sample=SAMPLES[1].simulated(), rng=np.random.default_rng(2))
        client = from_uri(f"http://127.0.0.1:{tiled_port}/api/v1")  # public reads
        first = _result(client, _scan(RE, dif), timeout=240)
        assert first.metadata["status"] == "ok", first.metadata.get("reason")
        shipped = json.loads((SHIPPED_MODELS / "ysz-400-cuka1-cnn2" / "card.json").read_text())["version"]
        assert (first.metadata["model"]["id"], first.metadata["model"]["version"]) == ("ysz-400-cuka1-cnn2", shipped)

        # What retraining does on a good candidate: add it to the registry, promote it.
        bundle = tmp_path / "candidate"
        shutil.copytree(SHIPPED_MODELS / "ysz-400-cuka1-cnn2", bundle)
        card = json.loads((bundle / "card.json").read_text())
        candidate = str(int(shipped) + 1)
        (bundle / "card.json").write_text(json.dumps({**card, "version": candidate}))
        registry.promote(registry.add(bundle).ref, reason="test: a promotion reaches the deployed listener")
        second = _result(client, _scan(RE, dif))
        assert second.metadata["model"]["version"] == candidate  # the running listener, no restart

        uids = [_scan(RE, dif) for _ in range(4)]  # a short series, then the service is stopped
        journal.wait(30)
        for uid in uids:
            _result(client, uid)
        t0 = time.monotonic()
        procs["listen"].send_signal(signal.SIGTERM)
        rc = procs["listen"].wait(float(listen.one("TimeoutStopSec")))
        stop_s = time.monotonic() - t0
        out = procs["listen"].stdout.read()
        assert rc == 0, out[-3000:]
        assert stop_s < 0.75 * float(listen.one("TimeoutStopSec")), stop_s
        assert "leaked semaphore" not in out and "refiner {" in out, out[-3000:]
        statuses = [n.metadata["refinement"]["status"] for n in find_results(client, sample="deployed").values()]
        assert len(statuses) == 6 and "pending" not in statuses, statuses  # claims released; rest: "none"
        journal.close()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except Exception:
                    proc.kill()
