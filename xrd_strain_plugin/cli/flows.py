"""``xrd-strain flows``: the Prefect flows (serve the schedules, run one now) and the model registry.

Needs the ``flows`` extra (prefect, prefect-dask); Prefect is imported only when a command runs.
Without ``PREFECT_API_URL`` Prefect starts a temporary local server for a one-off run.
"""

from __future__ import annotations

import argparse
import json
import os

from xrd_strain_plugin.cli import CommandError, option_errors
from xrd_strain_plugin.cli.options import (
    API_KEY_ENV,
    add_budget_options,
    add_reflection_options,
    add_tiled_options,
    budgets,
    tiled_url,
)

DESCRIPTION = """\
Scheduled dataset regeneration, retraining behind a promotion gate, and least-squares
refinement of new results, as Prefect flows (docs/flows.md), plus the model registry they
feed (current model per material/reflection/wavelength; model_id[@version] references).

  serve       run the three schedules in this process (nightly regeneration, weekly
              retraining, refinement every few minutes) until interrupted
  regenerate  run the regeneration flow once
  retrain     run the retraining flow once
  refine      run the refinement flow once
  trigger     start a run of a served deployment and return at once
  models      list the registry (current models marked)
  promote     make a registered model the current one of its key (also: roll back)
"""


def register(subparsers) -> None:
    """Add the ``flows`` command and its subcommands."""
    p = subparsers.add_parser(
        "flows",
        help="Prefect flows (schedules, retraining, refinement) and the model registry",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(
        dest="flows_command",
        metavar="SUBCOMMAND",
        required=True,
        help="one of the subcommands above; 'xrd-strain flows SUBCOMMAND --help'",
    )
    p.set_defaults(func=lambda args: p.print_help() or 2)

    _register_serve(sub)
    _register_regenerate(sub)
    _register_retrain(sub)
    _register_refine(sub)
    _register_trigger(sub)
    _register_models(sub)
    _register_promote(sub)


def _register_serve(sub) -> None:
    s = sub.add_parser(
        "serve",
        help="serve the three scheduled deployments (Ctrl-C stops)",
        description="Serve nightly regeneration, weekly retraining and periodic "
        "refinement from this process (prefect.serve). Point "
        "PREFECT_API_URL at a Prefect server to see them in its UI.",
    )
    _data_root(s)
    _registry(s)
    add_tiled_options(
        s,
        write=True,
        required=False,
        help="Tiled server of the results; without it there is no refinement deployment",
        with_api_key=False,
    )
    _api_key(s)
    s.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        default=None,
        help="tcp://host:8786 of a Dask scheduler for the regeneration's shards (default: local processes)",
    )
    s.add_argument(
        "--regenerate-cron",
        default="0 1 * * *",
        metavar="CRON",
        help="regeneration schedule (default: %(default)r, nightly at 01:00)",
    )
    s.add_argument(
        "--retrain-cron",
        default="0 3 * * 0",
        metavar="CRON",
        help="retraining schedule (default: %(default)r, Sundays at 03:00)",
    )
    s.add_argument(
        "--refine-every-s",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds between refinement runs (default: %(default)s)",
    )
    s.add_argument("--timezone", default="UTC", help="time zone of the cron expressions")
    _dataset_options(s)
    s.set_defaults(func=run_serve)


def _register_regenerate(sub) -> None:
    g = sub.add_parser(
        "regenerate",
        help="generate a training set (and the held-out test set) now",
        description="Run regenerate_dataset once: shards as parallel tasks, "
        "resumable; DATA_ROOT/<preset>-<key>-seed<seed>/train and "
        "DATA_ROOT/heldout-<preset>-<key>/test.",
    )
    _data_root(g)
    _dataset_options(g)
    g.add_argument("--seed", type=int, default=None, help="training-set seed (default: today's date, YYYYMMDD)")
    g.add_argument("--shard-size", type=int, default=1000, help="curves per shard = per task")
    g.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        default=None,
        help="tcp://host:8786 of a Dask scheduler (default: local processes)",
    )
    g.add_argument(
        "--workers", type=int, default=None, help="local worker processes (default: all cores; 1: in this process)"
    )
    g.set_defaults(func=run_regenerate)


def _register_retrain(sub) -> None:
    r = sub.add_parser(
        "retrain",
        help="train a candidate on the newest set; promote it if it does not regress",
        description="Run retrain once: train on the newest complete training set "
        "under DATA_ROOT, measure candidate and current model on the "
        "held-out set, keep the candidate in the registry and promote "
        "it only if no accuracy drops by more than its tolerance.",
    )
    _data_root(r)
    _registry(r)
    add_reflection_options(r)
    r.add_argument("--model-id", default=None, help="candidate id (default: the current model's, next version)")
    r.add_argument("--epochs", type=int, default=70, help="maximum epochs (default: %(default)s)")
    r.add_argument("--max-minutes", type=float, default=None, help="wall-clock training budget")
    r.add_argument("--batch-size", type=int, default=256, help="mini-batch size")
    r.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="KEY=DROP",
        help="allowed drop of one accuracy, absolute fraction (a_t, a_emax, a_dw, a_h, "
        "a_dr, a_strain; default 0 for each; repeatable)",
    )
    r.add_argument(
        "--mse-tolerance",
        type=float,
        default=0.0,
        help="allowed relative increase of the test MSE (default: %(default)s)",
    )
    r.set_defaults(func=run_retrain)


def _register_refine(sub) -> None:
    f = sub.add_parser(
        "refine",
        help="refine stored results that have no refinement yet",
        description="Run refine_new_results once against a Tiled server.",
    )
    add_tiled_options(f, write=True, help="Tiled server of the results", with_api_key=False)
    _api_key(f)
    f.add_argument("--limit", type=int, default=50, help="at most this many results")
    add_budget_options(f, budget_option="--budget-s")
    f.set_defaults(func=run_refine)


def _register_trigger(sub) -> None:
    t = sub.add_parser(
        "trigger",
        help="start a run of a served deployment, return at once",
        description="run_deployment(..., timeout=0) on a deployment served by "
        "'xrd-strain flows serve' (needs PREFECT_API_URL).",
    )
    t.add_argument("which", choices=("regenerate", "retrain", "refine"), help="which deployment")
    t.set_defaults(func=run_trigger)


def _register_models(sub) -> None:
    m = sub.add_parser(
        "models",
        help="list the model registry",
        description="Every registered model with its Table-2 accuracies; '*' marks "
        "the current model of its material/reflection/wavelength.",
    )
    _registry(m)
    m.add_argument("--json", action="store_true", help="JSON instead of a table")
    m.set_defaults(func=run_models)


def _register_promote(sub) -> None:
    o = sub.add_parser(
        "promote",
        help="make a registered model current (or roll back)",
        description="Point its key's current model at REF; the live plugin picks "
        "it up from its next run, without a restart.",
    )
    o.add_argument("ref", metavar="REF", help="model_id@version (see 'flows models')")
    _registry(o)
    o.add_argument("--reason", default="manual", help="recorded in the registry's history")
    o.set_defaults(func=run_promote)


def _prefect_env() -> None:
    """Before Prefect is imported: a one-off run without PREFECT_API_URL starts a temporary
    server, which needs more than Prefect's default 20 s on a busy machine."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _data_root(p) -> None:
    p.add_argument(
        "--data-root",
        required=True,
        metavar="DIR",
        help="directory of the datasets (and of retraining runs and candidates)",
    )


def _registry(p) -> None:
    p.add_argument(
        "--registry",
        metavar="DIR",
        default=None,
        help="model registry directory (default: $XRD_STRAIN_REGISTRY, else ~/.local/share/xrd-strain/registry)",
    )


def _api_key(p) -> None:
    p.add_argument(
        "--api-key-env",
        default=API_KEY_ENV,
        metavar="VAR",
        help="environment variable holding the Tiled API key (default: %(default)s)",
    )
    p.add_argument(
        "--api-key-block",
        default=None,
        metavar="NAME",
        help="Prefect Secret block holding the Tiled API key (instead of the variable)",
    )


def _dataset_options(p) -> None:
    add_reflection_options(p)
    p.add_argument("--preset", default="CNN2", help="training preset (default: %(default)s)")
    p.add_argument(
        "--n-curves", type=int, default=10_000, help="training curves per regeneration (default: %(default)s)"
    )
    p.add_argument(
        "--test-curves", type=int, default=5000, help="held-out test curves, made once (default: %(default)s)"
    )


def _dataset_params(args) -> dict:
    return {
        "preset": args.preset,
        "n_curves": args.n_curves,
        "test_curves": args.test_curves,
        "material": args.material,
        "hkl": tuple(args.hkl),
        "wavelength_angstrom": args.wavelength_angstrom,
    }


def _tolerances(items) -> dict:
    keys = ("a_t", "a_emax", "a_dw", "a_h", "a_dr", "a_strain")
    out = {k: 0.0 for k in keys}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise CommandError(f"--tolerance: expected KEY=DROP with KEY one of {keys}, got {item!r}")
        with option_errors("--tolerance"):
            out[key] = float(value)
    return out


def run_serve(args) -> int:
    _prefect_env()
    from xrd_strain_flows.deployments import FlowSettings, Schedules, serve

    settings = FlowSettings(
        data_root=args.data_root,
        registry_root=args.registry,
        tiled_url=tiled_url(args),
        scheduler_address=args.dask_scheduler,
        regenerate=_dataset_params(args),
        retrain={"material": args.material, "hkl": tuple(args.hkl), "wavelength_angstrom": args.wavelength_angstrom},
        refine={"api_key_env": args.api_key_env, "api_key_block": args.api_key_block},
    )
    with option_errors("--regenerate-cron/--retrain-cron/--refine-every-s"):
        schedules = Schedules(
            regenerate_cron=args.regenerate_cron,
            retrain_cron=args.retrain_cron,
            refine_interval_s=args.refine_every_s,
            timezone=args.timezone,
        )
    serve(settings, schedules)
    return 0


def run_regenerate(args) -> int:
    _prefect_env()
    from xrd_strain_flows.regenerate import regenerate

    with option_errors("--data-root"):
        out = regenerate(
            scheduler_address=args.dask_scheduler,
            workers=args.workers,
            data_root=args.data_root,
            seed=args.seed,
            shard_size=args.shard_size,
            **_dataset_params(args),
        )
    print(json.dumps(out, indent=1))
    return 0


def run_retrain(args) -> int:
    _prefect_env()
    from xrd_strain_flows.retrain import retrain

    config = {"epochs": args.epochs, "max_minutes": args.max_minutes, "batch_size": args.batch_size}
    gate = {"tolerances": _tolerances(args.tolerance), "mse_tolerance": args.mse_tolerance}
    with option_errors("--data-root"):
        out = retrain(
            data_root=args.data_root,
            registry_root=args.registry,
            material=args.material,
            hkl=tuple(args.hkl),
            wavelength_angstrom=args.wavelength_angstrom,
            model_id=args.model_id,
            train_config=config,
            gate=gate,
        )
    verdict = "promoted" if out["promoted"] else "kept, not promoted"
    print(f"{out['candidate']}: {verdict} ({'; '.join(out['reasons'])}); current: {out['current_after']}")
    return 0


def run_refine(args) -> int:
    _prefect_env()
    from xrd_strain_flows.refine import refine_new_results

    out = refine_new_results(
        tiled_url(args),
        limit=args.limit,
        **budgets(args, budget_option="--budget-s"),
        api_key_env=args.api_key_env,
        api_key_block=args.api_key_block,
    )
    print(
        f"{out['found']} found, {len(out['refined'])} refined, {len(out['claimed_elsewhere'])} taken by another refiner"
    )
    return 0


def run_trigger(args) -> int:
    _prefect_env()
    from xrd_strain_flows.deployments import DEPLOYMENT_NAMES
    from xrd_strain_flows.refine import trigger_refinement

    run = trigger_refinement(deployment=DEPLOYMENT_NAMES[args.which])
    print(f"started flow run {run.id} of {DEPLOYMENT_NAMES[args.which]}")
    return 0


def run_models(args) -> int:
    from xrd_strain_plugin.inference.registry import ModelRegistry

    registry = ModelRegistry(args.registry)
    with option_errors("--registry"):
        entries = registry.entries()
        current = set()
        for entry in entries:
            try:
                current.add(registry.current(entry.key).ref)
            except ValueError:
                pass
    rows = [
        {
            "ref": e.ref,
            "current": e.ref in current,
            "shipped": e.shipped,
            "key": e.key.slug,
            "path": str(e.path),
            "metrics": e.card.metrics,
        }
        for e in entries
    ]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"registry: {registry.root}")
    print(f"  {'model':<28} {'key':<18} {'a(t)':>5} {'a(e)':>5} {'a(DW)':>5} {'a(s)':>5}  where")
    for r in rows:
        m = r["metrics"]
        acc = " ".join(
            f"{100 * m[k]:4.0f}%" if isinstance(m.get(k), (int, float)) else "    -"
            for k in ("a_t", "a_emax", "a_dw", "a_strain")
        )
        print(
            f"{'*' if r['current'] else ' '} {r['ref']:<28} {r['key']:<18} {acc}  "
            f"{'shipped' if r['shipped'] else r['path']}"
        )
    return 0


def run_promote(args) -> int:
    from xrd_strain_plugin.inference.registry import ModelRegistry

    registry = ModelRegistry(args.registry)
    with option_errors("REF"):
        entry = registry.promote(args.ref, reason=args.reason)
    print(f"{entry.ref} is now the current model for {entry.key.slug}")
    return 0
