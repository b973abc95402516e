"""``xrd-strain listen``, ``xrd-strain journal`` and ``xrd-strain results``: the live side.

``listen`` consumes documents from a bluesky 0MQ proxy or a durable journal, inverts rocking
curves and writes results (and, with ``--raw``, the raw runs) to a Tiled server; ``journal``
serves the RunEngine-side journal; ``results`` searches and shows stored results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from xrd_strain_plugin.cli import CommandError, option_errors
from xrd_strain_plugin.cli.options import (
    API_KEY_ENV,
    add_reflection_options,
    add_tiled_options,
    api_key,
    tiled_option,
    tiled_url,
)

RESULTS_PREFIX = b"xrd-strain"
# CURVE keys of the journal (deploy/journal/journal.env.example, deploy/listen/listen.env.example).
JOURNAL_SECRET_ENV = "XRD_STRAIN_JOURNAL_SECRET_KEY"
JOURNAL_CLIENTS_ENV = "XRD_STRAIN_JOURNAL_CLIENT_KEYS"
JOURNAL_SERVER_KEY_ENV = "XRD_STRAIN_JOURNAL_SERVER_KEY"
JOURNAL_CLIENT_KEY_ENV = "XRD_STRAIN_JOURNAL_CLIENT_KEY"

LISTEN_EPILOG = """\
examples:
  # the listener also writes the raw runs: read a durable journal kept on the RunEngine host
  # (RE.subscribe(JournalWriter("/var/lib/bluesky/journal")); xrd-strain journal serve there)
  TILED_API_KEY=secret xrd-strain listen --journal beamline-ws:5579 \\
      --tiled-url http://tiled-host:8000 --spool /var/spool/xrd-strain --raw
  # the RunEngine host writes the raw runs to Tiled itself: 0MQ, and catch-up from Tiled
  bluesky-0MQ-proxy 5577 5578 &
  TILED_API_KEY=secret xrd-strain listen --zmq beamline-ws:5578 \\
      --tiled-url http://tiled-host:8000 --spool /var/spool/xrd-strain

Nothing is missed across restarts of the listener: with --journal it resumes
from the last position it made durable (kept in the spool directory); with
--zmq and without --raw it inverts, oldest first, every finished raw run in
Tiled that has no result (catch-up), while new scans keep flowing.

The API key comes from --api-key or the TILED_API_KEY environment variable
(prefer the variable: command lines are visible to other users). Results wait
in the spool directory while Tiled is unreachable and are written, in order,
once it answers again, also after a restart of the listener.
"""

JOURNAL_EPILOG = """\
on the RunEngine host:
  from xrd_strain_plugin.bluesky.journal import JournalWriter
  RE.subscribe(JournalWriter("/var/lib/bluesky/journal"))      # in the RunEngine session
  xrd-strain journal serve /var/lib/bluesky/journal --port 5579  # a service beside it
then: xrd-strain listen --journal beamline-ws:5579 ...
"""


def register(subparsers) -> None:
    """Add the ``listen``, ``journal`` and ``results`` subcommands."""
    _register_listen(subparsers)
    _register_journal(subparsers)
    _register_results(subparsers)


def _tiled_options(parser, *, write: bool, required: bool = True):
    # --tiled was this family's spelling before --tiled-url was everyone's: a hidden alias (units installed before)
    add_tiled_options(parser, write=write, required=required, aliases=("--tiled",))


def _register_listen(subparsers):
    p = subparsers.add_parser(
        "listen",
        help="invert rocking curves from a bluesky 0MQ proxy into Tiled (live plugin, out of process)",
        description="Read documents from a bluesky 0MQ proxy (--zmq) or a durable journal on the RunEngine host "
        "(--journal), invert each rocking curve with the model bundle and write the result to Tiled "
        "under results/<raw uid>[/<curve index>].",
        epilog=LISTEN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--zmq",
        metavar="HOST:PORT",
        help="outbound (subscriber) address of the bluesky 0MQ proxy (live only: what is published "
        "while the listener is down is recovered from Tiled by catch-up, not by 0MQ)",
    )
    source.add_argument(
        "--journal",
        metavar="HOST:PORT",
        help="address of `xrd-strain journal serve` on the RunEngine host (durable: resumes after a "
        "restart from the position saved in the spool directory)",
    )
    _source_options(p)
    _refinement_options(p)
    _output_options(p)
    _catch_up_options(p)
    _tiled_options(p, write=True)
    p.add_argument("--model", metavar="BUNDLE", default=None, help="model bundle (default: the shipped model)")
    _reading_options(p)
    p.set_defaults(func=_run_listen)


def _source_options(parser) -> None:
    """Which documents are read: a 0MQ prefix, the journal's CURVE keys."""
    g = parser.add_argument_group("reading the source")
    g.add_argument("--prefix", default="", help="with --zmq: only documents published with this prefix")
    g.add_argument(
        "--journal-server-key",
        metavar="FILE",
        default=os.environ.get(JOURNAL_SERVER_KEY_ENV),
        help="with --journal on another host: the journal server's public CURVE key (server.key; "
        f"default: ${JOURNAL_SERVER_KEY_ENV})",
    )
    g.add_argument(
        "--journal-client-key",
        metavar="FILE",
        default=os.environ.get(JOURNAL_CLIENT_KEY_ENV),
        help="with --journal-server-key: this listener's secret key (NAME.key_secret; its public half is "
        f"in the server's --client-keys; default: ${JOURNAL_CLIENT_KEY_ENV})",
    )


def _refinement_options(parser) -> None:
    """Least-squares refinement of each result: in a background process, or by the Prefect flow."""
    g = parser.add_argument_group("refinement")
    g.add_argument(
        "--refine",
        action="store_true",
        help="refine each result by least squares in a background process (lower priority), written "
        "beside the network's answer in the same result node; results it cannot take are left for "
        "the Prefect flow refine_new_results",
    )
    g.add_argument(
        "--refine-processes",
        type=int,
        default=1,
        metavar="N",
        help="with --refine: refining processes sharing the queue, each on one core (default: 1, which "
        "leaves the other cores to the live path; more clear a burst sooner)",
    )
    g.add_argument(
        "--refine-flow-every-s",
        type=float,
        default=None,
        metavar="S",
        help="start the Prefect deployment refine_new_results for the results this listener does not "
        "refine itself (without --refine: every result; with it: those its queue could not take, "
        "and those left at stop), at most one run per S seconds: a burst is one run, not one per "
        "result (needs the flows extra and PREFECT_API_URL)",
    )
    g.add_argument(
        "--refine-stop-s",
        type=float,
        default=20.0,
        help="on SIGTERM, seconds the refinement in progress gets before it is cut short and its claim "
        "released; queued results are left for refine_new_results (default: %(default)s; keep it "
        "well under the unit's TimeoutStopSec)",
    )


def _output_options(parser) -> None:
    """Where results wait while Tiled is away, raw runs, derived runs for remote plots."""
    g = parser.add_argument_group("results and spool")
    g.add_argument(
        "--results-zmq",
        metavar="HOST:PORT",
        default=None,
        help="publish each result (and each finished refinement) as a derived bluesky run to the inbound "
        "side of a bluesky 0MQ proxy, prefix 'xrd-strain': a LiveProfilePlot in an IPython session "
        "subscribes with RemoteDispatcher(proxy-out, prefix=b'xrd-strain')",
    )
    g.add_argument(
        "--spool",
        metavar="DIR",
        required=True,
        help="directory for results waiting while Tiled is unreachable (durable, replayed in order)",
    )
    g.add_argument(
        "--raw",
        action="store_true",
        help="also write the raw runs to Tiled (raw/<uid>); use with --journal, "
        "so that raw runs made while the listener is down are not lost",
    )


def _catch_up_options(parser) -> None:
    """Inverting finished raw runs in Tiled that have no result (what the listener missed)."""
    g = parser.add_argument_group("catch-up from Tiled")
    g.add_argument(
        "--catch-up",
        choices=("auto", "on", "off"),
        default="auto",
        help="invert finished raw runs in Tiled that have no result, oldest first (auto: on with --zmq "
        "without --raw, where another writer stores the raw runs)",
    )
    g.add_argument(
        "--catch-up-hours",
        type=float,
        default=24.0,
        help="on the first start, how far back catch-up looks (later starts continue from the saved "
        "watermark; default: %(default)s)",
    )
    g.add_argument(
        "--catch-up-grace-s",
        type=float,
        default=10.0,
        help="catch-up leaves a run alone until its stop is this old (the live path goes first; default: %(default)s)",
    )
    g.add_argument(
        "--catch-up-interval-s", type=float, default=5.0, help="seconds between catch-up passes (default: %(default)s)"
    )


def _reading_options(p):
    g = p.add_argument_group("reading the runs (start-document metadata wins over these)")
    g.add_argument("--motor-field", default=None, help="event field of the scanned angle (default: from start hints)")
    g.add_argument(
        "--detector-field", default=None, help="event field of the intensity (default: from descriptor hints)"
    )
    g.add_argument(
        "--axis",
        choices=("auto", "two_theta", "omega", "theta"),
        default="auto",
        help="what the motor angle is; for omega/theta 2theta = 2 x angle (default: from the name)",
    )
    add_reflection_options(g, when="when the run does not say")


def _config(args):
    from xrd_strain_plugin.bluesky.detection import RockingCurveConfig

    with option_errors("--axis"):
        return RockingCurveConfig(
            motor_field=args.motor_field,
            detector_field=args.detector_field,
            axis=args.axis,
            material=args.material,
            hkl=tuple(args.hkl),
            wavelength_angstrom=args.wavelength_angstrom,
        )


def _run_listen(args) -> int:
    """Check the options, start the parts (raw writer, live inversion, derived runs, catch-up), consume, stop."""
    import pathlib

    _quiet_retries_and_logging()
    for option in ("catch_up_hours", "catch_up_grace_s", "catch_up_interval_s", "refine_stop_s"):
        if getattr(args, option) <= 0:
            raise CommandError(f"--{option.replace('_', '-')}: must be positive, got {getattr(args, option)}")
    catch_up_on = args.catch_up == "on" or (args.catch_up == "auto" and args.zmq and not args.raw)
    config = _config(args)
    if args.journal:
        _journal_keys(args)  # unreadable keys stop here, before the model is loaded
    _warm_reflection(args)
    trigger = _FlowTrigger(args.refine_flow_every_s) if args.refine_flow_every_s is not None else None
    raw = None
    if args.raw:  # raw runs need Tiled now; results alone can wait in the spool
        from xrd_strain_plugin.bluesky.raw import raw_run_writer

        raw = raw_run_writer(_connect(args), backup_directory=os.path.join(args.spool, "raw-backup"))
    live = _start_live(args, config, trigger, raw)
    spool = pathlib.Path(args.spool)
    if trigger is not None:
        trigger.live = live
    results_out = None
    if args.results_zmq:  # the derived runs of results (and refinements) for remote plots and agents
        from bluesky.callbacks.zmq import Publisher

        results_out = Publisher(args.results_zmq, prefix=RESULTS_PREFIX)
        live.subscribe_results(results_out)
    catch_up = _start_catch_up(args, live, spool) if catch_up_on else None
    source = f"journal {args.journal}" if args.journal else f"0MQ {args.zmq}"
    print(
        f"xrd-strain listen: {source} -> {tiled_url(args)} (spool {args.spool}"
        f"{'; catch-up from Tiled' if catch_up else ''}); Ctrl-C to stop",
        file=sys.stderr,
    )
    try:
        _consume(args, live, raw, spool, catch_up)
    finally:
        _stop_listen(args, live, raw=raw, catch_up=catch_up, results_out=results_out, trigger=trigger)
    return 0


def _quiet_retries_and_logging() -> None:
    import logging

    # The spool is the retry mechanism; the Tiled client's own retries (up to 45 s) would stall the worker.
    os.environ.setdefault("TILED_RETRY_ATTEMPTS", "2")
    os.environ.setdefault("TILED_RETRY_TIMEOUT", "5")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury what matters


def _warm_reflection(args) -> None:
    """Compute the reflection of the options now, into the physics core's in-memory cache.

    The live service builds reflections with ``make_reflection`` (memory only; the physics core keeps
    no disk cache): without this the first scan would pay the xrayutilities import, about 1.7 s, on
    its way to Tiled. A bad ``--material/--hkl/--wavelength-angstrom`` is refused here, at start.
    """
    from xrd_strain_plugin.physics.materials import make_reflection

    with option_errors("--material/--hkl/--wavelength-angstrom"):
        make_reflection(args.material, tuple(args.hkl), args.wavelength_angstrom)


def _start_live(args, config, trigger, raw):
    """The live inversion (model, spool, publisher, refiner); a locked spool or a refused key is a usage error."""
    from xrd_strain_plugin.bluesky.service import LiveInversion
    from xrd_strain_plugin.tiled.spool import SpoolLockedError
    from xrd_strain_plugin.tiled.writer import TiledAuthError

    try:
        with option_errors("--model"):
            return LiveInversion.from_uri(
                tiled_url(args),
                api_key=api_key(args),
                spool_directory=args.spool,
                bundle=args.model,
                config=config,
                refine=args.refine,
                refine_processes=args.refine_processes,
                on_outcome=trigger.on_outcome if trigger is not None else None,
            )
    except SpoolLockedError as exc:
        raise CommandError(f"--spool: {exc}") from exc
    except TiledAuthError as exc:  # a refused key is a configuration error, not an outage to spool through
        if raw is not None:
            raw.close()
        raise CommandError(f"--api-key: {exc} (set --api-key or ${API_KEY_ENV})") from exc


def _start_catch_up(args, live, spool):
    from xrd_strain_plugin.bluesky.catchup import CatchUp

    return CatchUp(
        lambda: _connect(args),
        live,
        state_path=spool / "catch-up.json",
        since_s=args.catch_up_hours * 3600.0,
        grace_s=args.catch_up_grace_s,
        interval_s=args.catch_up_interval_s,
    ).start()


def _consume(args, live, raw, spool, catch_up) -> None:
    """Feed the documents of the journal or of the 0MQ proxy to the callbacks until interrupted."""
    if args.journal:
        _listen_journal(args, live, raw, spool, extra=[catch_up.note] if catch_up is not None else [])
        return
    from xrd_strain_plugin.bluesky.remote import listen

    callbacks = [live] if raw is None else [raw, live]
    if catch_up is not None:
        callbacks.insert(0, catch_up.note)
    listen(args.zmq, callbacks, prefix=args.prefix.encode())


def _stop_listen(args, live, *, raw, catch_up, results_out, trigger) -> None:
    """Close every part, the refiner with its grace period, and say what is left in the spool."""
    if catch_up is not None:
        catch_up.close()
    if raw is not None:
        raw.close()
    live.close(refine_drain=False, refine_grace_s=args.refine_stop_s)
    if results_out is not None:
        results_out.close()  # a 0MQ context left to the garbage collector can block the exit
    if trigger is not None:
        trigger.close(live)
    refined = "" if live.refiner is None else f"; refiner {dict(live.refiner.counts)}"
    print(
        f"xrd-strain listen: stopped; {dict(live.counts)}; {len(live.publisher.spool)} result(s) still spooled"
        f"{refined}",
        file=sys.stderr,
    )


class _FlowTrigger:
    """Results the listener leaves unrefined -> batched runs of the refinement deployment."""

    def __init__(self, every_s: float):
        if every_s <= 0:
            raise CommandError(f"--refine-flow-every-s: must be positive, got {every_s}")
        try:
            from xrd_strain_flows.refine import BatchedTrigger
        except ImportError as exc:
            raise CommandError(f"--refine-flow-every-s: needs the flows extra (prefect): {exc}") from exc
        self.batched = BatchedTrigger(min_interval_s=every_s)
        self.live = None
        self._skipped = 0

    def on_outcome(self, outcome) -> None:  # the publishing thread
        if outcome.status not in ("ok", "partial") or not outcome.written:
            return
        refiner = getattr(self.live, "refiner", None) if self.live is not None else None
        if refiner is None:
            self.batched.note()
            return
        skipped = refiner.counts["skipped"]
        if skipped > self._skipped:
            self.batched.note(skipped - self._skipped)
            self._skipped = skipped

    def close(self, live) -> None:
        if live.refiner is not None and live.refiner.counts["left_for_flow"]:
            self.batched.note(live.refiner.counts["left_for_flow"])
        self.batched.flush()
        print(f"xrd-strain listen: {len(self.batched.runs)} refinement flow run(s) started", file=sys.stderr)


def _listen_journal(args, live, raw, spool, *, extra=()):
    import logging

    from xrd_strain_plugin.bluesky.remote import Cursor, ReplayGuard, listen_journal

    guard = None
    try:
        guard = ReplayGuard(
            _connect(args),
            spooled={r.raw_uid for p in live.publisher.spool.pending() for r in live.publisher.spool.load_all(p)},
        )
    except CommandError as exc:  # Tiled away: replayed runs are handled again (writes are idempotent)
        logging.getLogger(__name__).warning("no replay check: %s", exc)
    listen_journal(
        args.journal,
        live=live,
        raw=raw,
        cursor=Cursor(spool / "journal-position.json"),
        guard=guard,
        extra=extra,
        keys=_journal_keys(args),
    )


def _journal_keys(args):
    from xrd_strain_plugin.bluesky.journal import ClientKeys

    if args.journal_server_key is None and args.journal_client_key is None:
        return None
    if args.journal_server_key is None or args.journal_client_key is None:
        raise CommandError("--journal-server-key, --journal-client-key: give both (CURVE authentication) or neither")
    with option_errors("--journal-client-key"):
        return ClientKeys.from_files(args.journal_server_key, args.journal_client_key)


def _register_journal(subparsers):
    p = subparsers.add_parser(
        "journal",
        help="the durable document journal on the RunEngine host (serve it, show it, prune it)",
        description="A JournalWriter subscribed to the RunEngine appends every document to a journal directory; "
        "`journal serve` lets listeners (`xrd-strain listen --journal`) read it by position, so a "
        "listener that was down resumes where it stopped and misses nothing.",
        epilog=JOURNAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(
        dest="journal_command",
        required=True,
        metavar="ACTION",
        help="serve: run the journal server; status: positions and backlog; prune: drop acknowledged segments",
    )
    serve = sub.add_parser(
        "serve",
        help="serve a journal directory to listeners over 0MQ",
        description="Answer listeners' requests for documents by position (long poll).",
    )
    serve.add_argument("directory", help="journal directory (the JournalWriter's)")
    serve.add_argument("--port", type=int, default=5579, help="TCP port (default: %(default)s)")
    serve.add_argument(
        "--bind",
        default="127.0.0.1",
        help="interface to bind (default: %(default)s, this host only; any other address needs "
        "--secret-key and --client-keys)",
    )
    serve.add_argument(
        "--secret-key",
        metavar="FILE",
        default=os.environ.get(JOURNAL_SECRET_ENV),
        help="the server's CURVE secret key (NAME.key_secret from `journal keys`): clients must "
        f"authenticate, traffic is encrypted (default: ${JOURNAL_SECRET_ENV})",
    )
    serve.add_argument(
        "--client-keys",
        metavar="DIR",
        default=os.environ.get(JOURNAL_CLIENTS_ENV),
        help="directory of the allowed listeners' public keys (*.key); acknowledgements are recorded "
        f"under each key's file name (default: ${JOURNAL_CLIENTS_ENV})",
    )
    serve.set_defaults(func=_run_journal_serve)
    status = sub.add_parser("status", help="segments, documents and each listener's acknowledged position")
    status.add_argument("directory", help="journal directory")
    status.set_defaults(func=_run_journal_status)
    prune = sub.add_parser(
        "prune",
        help="delete segments every listener has acknowledged",
        description="Delete journal segments that every recorded listener has acknowledged and "
        "that are older than --keep-days (the newest segment is always kept).",
    )
    prune.add_argument("directory", help="journal directory")
    prune.add_argument(
        "--keep-days", type=float, default=7.0, help="keep segments younger than this (default: %(default)s)"
    )
    prune.set_defaults(func=_run_journal_prune)
    keys = sub.add_parser(
        "keys",
        help="make a CURVE key pair for the journal server or one listener",
        description="Write DIR/NAME.key (public: give it to the other side) and DIR/NAME.key_secret "
        "(secret, mode 600: keep it where it was made). Existing files are kept.",
    )
    keys.add_argument("directory", help="where the two files go (created)")
    keys.add_argument("--name", required=True, help="the key's name, e.g. server or gpu-host-listener")
    keys.set_defaults(func=_run_journal_keys)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])  # an ACTION is required: argparse stops first


def _journal_dir(path):
    import pathlib

    d = pathlib.Path(path)
    if not d.is_dir():
        raise CommandError(f"journal directory {path!r} does not exist")
    return d


def _run_journal_serve(args) -> int:
    import logging
    import signal

    from xrd_strain_plugin.bluesky.journal import JournalServer, is_loopback

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    directory = _journal_dir(args.directory)
    address = f"tcp://{args.bind}:{args.port}"
    if (args.secret_key is None) != (args.client_keys is None):
        raise CommandError("--secret-key, --client-keys: give both (CURVE authentication) or neither")
    if args.secret_key is None and not is_loopback(address):
        raise CommandError(
            f"--bind: {args.bind} is reachable from other hosts; serving them needs --secret-key and "
            "--client-keys (make them with `xrd-strain journal keys`; deploy/journal/journal.env.example)"
        )
    if args.client_keys is not None and not os.path.isdir(args.client_keys):
        raise CommandError(f"--client-keys: {args.client_keys!r} is not a directory")
    with option_errors("--secret-key"):
        try:
            server = JournalServer(directory, address, secret_key=args.secret_key, client_keys=args.client_keys)
        except ValueError:
            raise
        except Exception as exc:  # zmq.ZMQError: address in use...
            raise CommandError(f"--port: cannot listen on {args.bind}:{args.port}: {exc}") from exc
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    who = f"CURVE keys required ({', '.join(server.client_names)})" if server.authenticated else "this host only"
    print(
        f"xrd-strain journal: serving {args.directory} on {server.endpoint} ({who}); Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    server.serve_forever()
    return 0


def _run_journal_status(args) -> int:
    from xrd_strain_plugin.bluesky.journal import JournalReader, segments

    d = _journal_dir(args.directory)
    reader = JournalReader(d)
    head = reader.refresh()
    files = segments(d)
    size = sum(f.stat().st_size for f in files)
    out = {
        "directory": str(d),
        "segments": len(files),
        "bytes": size,
        "first": reader.first(),
        "head": head,
        "consumers": {},
    }
    for c in sorted((d / "consumers").glob("*.json")) if (d / "consumers").exists() else []:
        out["consumers"][c.stem] = json.loads(c.read_text())
    print(json.dumps(out, indent=1))
    return 0


def _run_journal_keys(args) -> int:
    from xrd_strain_plugin.bluesky.journal import make_keys

    with option_errors("--name"):
        public, secret = make_keys(args.directory, args.name)
    print(f"public key {public} (give it to the other side)\nsecret key {secret} (keep it here, mode 600)")
    return 0


def _run_journal_prune(args) -> int:
    from xrd_strain_plugin.bluesky.journal import prune

    deleted = prune(_journal_dir(args.directory), keep_s=args.keep_days * 86400.0)
    print(f"deleted {len(deleted)} segment(s)")
    return 0


def _register_results(subparsers):
    p = subparsers.add_parser(
        "results",
        help="search, show and export inversion results stored in Tiled",
        description="List results matching all the given criteria, or show one result's figures and arrays; "
        "`results export --nexus FILE` writes the matching results to a NeXus file.",
        epilog="example:\n  xrd-strain results --tiled-url http://localhost:8000 --sample YSZ-A --emax-min 0.5\n"
        "  xrd-strain results --tiled-url http://localhost:8000 --show <uid>[/<curve>] --json\n"
        "  xrd-strain results export --nexus ysz-a.nxs --tiled-url http://localhost:8000 --sample YSZ-A",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _tiled_options(p, write=False, required=False)
    _result_filters(p)
    p.add_argument("--show", metavar="PATH", help="show one result (<uid> or <uid>/<curve index>)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_results)
    sub = p.add_subparsers(
        dest="results_action", required=False, metavar="ACTION", help="export: write the matching results to a file"
    )
    export = sub.add_parser(
        "export",
        help="write the matching results (with their refinements) to a NeXus file",
        description="One NXentry per result with a profile: NXdata profile (strain_percent "
        "against depth_nm, debye_waller) and curve (measured and model intensity "
        "against q), the refined profile when there is one, units on every dataset, "
        "the metadata as JSON.",
    )
    export.add_argument("--nexus", metavar="FILE", required=True, help="the .nxs (HDF5) file to write (replaced)")
    _tiled_options(export, write=False)
    _result_filters(export)
    export.add_argument(
        "--path",
        metavar="PATH",
        action="append",
        help="export this result (<uid> or <uid>/<curve index>; repeatable) instead of a search",
    )
    export.set_defaults(func=_run_export)


def _result_filters(p):
    p.add_argument("--sample", help="sample name")
    p.add_argument("--uid", help="raw run uid")
    p.add_argument("--emax-min", type=float, help="smallest e_max, percent")
    p.add_argument("--emax-max", type=float, help="largest e_max, percent")
    p.add_argument("--model-version", help="version of the model that answered")
    p.add_argument(
        "--status",
        choices=("ok", "partial", "rejected", "aborted", "failed", "error"),
        help="only results with this status (ok: a profile was retrieved; partial: retrieved from a run "
        "stopped before its planned points; the others carry the reason)",
    )


def _search(args, client):
    from xrd_strain_plugin.tiled.queries import find_results

    return find_results(
        client,
        sample=args.sample,
        raw_uid=args.uid,
        strain_max_percent=None if args.emax_min is None and args.emax_max is None else (args.emax_min, args.emax_max),
        model_version=args.model_version,
        status=args.status,
    )


def _run_export(args) -> int:
    from xrd_strain_plugin.tiled.nexus import write_nexus
    from xrd_strain_plugin.tiled.queries import read_result
    from xrd_strain_plugin.tiled.refinement import read_refinement

    client = _connect(args)
    if args.path:
        hits = {}
        for path in args.path:
            try:
                hits[tuple(path.strip("/").split("/"))] = client["results"][path.strip("/")]
            except KeyError:
                raise CommandError(f"--path: no result {path!r}") from None
    else:
        hits = _search(args, client)
    items = (("/".join(("results", *path)), read_result(node), read_refinement(node)) for path, node in hits.items())
    with option_errors("--nexus"):
        n = write_nexus(args.nexus, items)
    print(f"wrote {n} result(s) to {args.nexus}")
    return 0


def _connect(args):
    from tiled.client import from_uri

    try:
        return from_uri(tiled_url(args), api_key=api_key(args))
    except Exception as exc:  # connection refused, auth required, not a Tiled server...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"{tiled_option(args)}: cannot open {tiled_url(args)}: {first}") from exc


def _run_results(args) -> int:
    from xrd_strain_plugin.tiled.queries import ResultRow, format_table, read_result

    if tiled_url(args) is None:
        raise CommandError(f"{tiled_option(args)}: required (the Tiled server of the results)")
    client = _connect(args)
    if args.show:
        try:
            node = client["results"][args.show.strip("/")]
        except KeyError:
            raise CommandError(f"--show: no result {args.show!r}") from None
        result = read_result(node)
        if args.json:
            out = {"metadata": result["metadata"], "arrays": {k: v.tolist() for k, v in result["arrays"].items()}}
            print(json.dumps(out, indent=1))
        else:
            print(json.dumps(result["metadata"], indent=1))
            for name, a in result["arrays"].items():
                print(f"{name:<20} {a.shape[0]:>5} points  [{a.min():.4g} .. {a.max():.4g}]")
        return 0
    hits = _search(args, client)
    rows = [ResultRow.from_node(path, node) for path, node in hits.items()]
    if args.json:
        import dataclasses

        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    else:
        print(format_table(rows))
        print(f"{len(rows)} result(s)")
    return 0
