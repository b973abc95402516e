"""``xrd-strain listen``, ``xrd-strain results`` and ``xrd-strain demo``: the live side.

``listen`` consumes documents from a bluesky 0MQ proxy, inverts rocking curves
and writes results (and, with ``--raw``, the raw runs) to a Tiled server;
``results`` searches and shows stored results; ``demo`` runs the whole chain
on a simulated diffractometer with an embedded Tiled server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from xrd_strain_plugin.cli import CommandError, option_errors

API_KEY_ENV = "TILED_API_KEY"

LISTEN_EPILOG = """\
example (RunEngine host publishes to a proxy on beamline-ws:5577/5578):
  bluesky-0MQ-proxy 5577 5578 &
  TILED_API_KEY=secret xrd-strain listen --zmq beamline-ws:5578 \\
      --tiled http://tiled-host:8000 --spool /var/spool/xrd-strain --raw

The API key comes from --api-key or the TILED_API_KEY environment variable
(prefer the variable: command lines are visible to other users). Results wait
in the spool directory while Tiled is unreachable and are written, in order,
once it answers again, also after a restart of the listener.
"""


def register(subparsers) -> None:
    """Add the ``listen``, ``results`` and ``demo`` subcommands."""
    _register_listen(subparsers)
    _register_results(subparsers)
    _register_demo(subparsers)


def _tiled_options(parser, *, write: bool):
    group = parser.add_argument_group("Tiled")
    group.add_argument("--tiled", metavar="URL", required=True,
                       help="Tiled server, e.g. http://tiled-host:8000 (the /api/v1 suffix is optional)")
    group.add_argument("--api-key", metavar="KEY", default=None,
                       help=f"Tiled API key ({'needed to write; ' if write else ''}default: ${API_KEY_ENV}, "
                            "else anonymous)")


def _register_listen(subparsers):
    p = subparsers.add_parser(
        "listen", help="invert rocking curves from a bluesky 0MQ proxy into Tiled (live plugin, out of process)",
        description="Subscribe to a bluesky 0MQ proxy, invert each rocking curve with the model bundle and "
                    "write the result to Tiled under results/<raw uid>[/<curve index>].",
        epilog=LISTEN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zmq", metavar="HOST:PORT", required=True,
                   help="outbound (subscriber) address of the bluesky 0MQ proxy")
    p.add_argument("--prefix", default="", help="only documents published with this prefix")
    _tiled_options(p, write=True)
    p.add_argument("--spool", metavar="DIR", required=True,
                   help="directory for results waiting while Tiled is unreachable (durable, replayed in order)")
    p.add_argument("--raw", action="store_true", help="also write the raw runs to Tiled (raw/<uid>)")
    p.add_argument("--model", metavar="BUNDLE", default=None, help="model bundle (default: the shipped model)")
    _reading_options(p)
    p.set_defaults(func=_run_listen)


def _reading_options(p):
    g = p.add_argument_group("reading the runs (start-document metadata wins over these)")
    g.add_argument("--motor-field", default=None, help="event field of the scanned angle (default: from start hints)")
    g.add_argument("--detector-field", default=None, help="event field of the intensity (default: from descriptor hints)")
    g.add_argument("--axis", choices=("auto", "two_theta", "omega", "theta"), default="auto",
                   help="what the motor angle is; for omega/theta 2theta = 2 x angle (default: from the name)")
    g.add_argument("--material", default="YSZ", help="material when the run does not say (default: %(default)s)")
    g.add_argument("--hkl", nargs=3, type=int, metavar=("H", "K", "L"), default=(4, 0, 0),
                   help="reflection when the run does not say (default: 4 0 0)")
    g.add_argument("--wavelength-angstrom", type=float, default=1.5406,
                   help="wavelength when the run does not say (default: %(default)s)")


def _config(args):
    from xrd_strain_plugin.bluesky.detection import RockingCurveConfig

    with option_errors("--axis"):
        return RockingCurveConfig(motor_field=args.motor_field, detector_field=args.detector_field, axis=args.axis,
                                  material=args.material, hkl=tuple(args.hkl),
                                  wavelength_angstrom=args.wavelength_angstrom)


def _api_key(args):
    return args.api_key or os.environ.get(API_KEY_ENV) or None


def _run_listen(args) -> int:
    import logging

    # The spool is the retry mechanism; the Tiled client's own retries (up to 45 s) would stall the worker.
    os.environ.setdefault("TILED_RETRY_ATTEMPTS", "2")
    os.environ.setdefault("TILED_RETRY_TIMEOUT", "5")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from xrd_strain_plugin.bluesky.remote import listen
    from xrd_strain_plugin.bluesky.service import LiveInversion

    from xrd_strain_plugin.tiled.spool import SpoolLockedError

    config = _config(args)
    raw = None
    if args.raw:  # raw runs need Tiled now; results alone can wait in the spool
        from xrd_strain_plugin.bluesky.raw import raw_run_writer

        raw = raw_run_writer(_connect(args), backup_directory=os.path.join(args.spool, "raw-backup"))
    try:
        with option_errors("--model"):
            live = LiveInversion.from_uri(args.tiled, api_key=_api_key(args), spool_directory=args.spool,
                                          bundle=args.model, config=config)
    except SpoolLockedError as exc:
        raise CommandError(f"--spool: {exc}") from exc
    callbacks = [live] if raw is None else [raw, live]
    print(f"xrd-strain listen: {args.zmq} -> {args.tiled} (spool {args.spool}); Ctrl-C to stop", file=sys.stderr)
    try:
        listen(args.zmq, callbacks, prefix=args.prefix.encode())
    finally:
        if raw is not None:
            raw.close()
        live.close()
        print(f"xrd-strain listen: stopped; {dict(live.counts)}; {len(live.publisher.spool)} result(s) still spooled",
              file=sys.stderr)
    return 0


def _register_results(subparsers):
    p = subparsers.add_parser(
        "results", help="search and show inversion results stored in Tiled",
        description="List results matching all the given criteria, or show one result's figures and arrays.",
        epilog="example:\n  xrd-strain results --tiled http://localhost:8000 --sample YSZ-A --emax-min 0.5\n"
               "  xrd-strain results --tiled http://localhost:8000 --show <uid>[/<curve>] --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _tiled_options(p, write=False)
    p.add_argument("--sample", help="sample name")
    p.add_argument("--uid", help="raw run uid")
    p.add_argument("--emax-min", type=float, help="smallest e_max, percent")
    p.add_argument("--emax-max", type=float, help="largest e_max, percent")
    p.add_argument("--model-version", help="version of the model that answered")
    p.add_argument("--status", choices=("ok", "rejected", "aborted", "failed", "error"),
                   help="only results with this status (ok: a profile was retrieved; the others carry the reason)")
    p.add_argument("--show", metavar="PATH", help="show one result (<uid> or <uid>/<curve index>)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_results)


def _connect(args):
    from tiled.client import from_uri

    try:
        return from_uri(args.tiled, api_key=_api_key(args))
    except Exception as exc:  # connection refused, auth required, not a Tiled server...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"--tiled: cannot open {args.tiled}: {first}") from exc


def _run_results(args) -> int:
    from xrd_strain_plugin.tiled.queries import ResultRow, find_results, format_table, read_result

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
    hits = find_results(client, sample=args.sample, raw_uid=args.uid,
                        strain_max_percent=None if args.emax_min is None and args.emax_max is None
                        else (args.emax_min, args.emax_max),
                        model_version=args.model_version, status=args.status)
    rows = [ResultRow.from_node(path, node) for path, node in hits.items()]
    if args.json:
        import dataclasses

        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    else:
        print(format_table(rows))
        print(f"{len(rows)} result(s)")
    return 0


def _register_demo(subparsers):
    p = subparsers.add_parser(
        "demo", help="the live demo: simulated diffractometer -> RunEngine -> live inversion -> Tiled -> table and PNG",
        description="Start an embedded Tiled server (SQLite catalog and files in --data-dir), scan three simulated "
                    "samples with known profiles, invert them live, print the results table from a Tiled query and "
                    "write OUT/demo_live.png (true vs retrieved profiles, measured vs model curves).")
    p.add_argument("--out", default="out", help="output directory (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="Tiled data directory (default: OUT/tiled, wiped first)")
    p.add_argument("--model", metavar="BUNDLE", default=None, help="model bundle (default: the shipped model)")
    p.add_argument("--seed", type=int, default=1, help="seed of the counting noise (default: %(default)s)")
    p.add_argument("--zmq", action="store_true", help="route documents through a local 0MQ proxy and listener")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from xrd_strain_plugin.demo import run_demo

    with option_errors("--model"):
        return run_demo(out=args.out, data_dir=args.data_dir, bundle=args.model, seed=args.seed, via_zmq=args.zmq)
