"""The schedules: nightly regeneration, weekly retraining, refinement every few minutes.

:func:`build_deployments` declares the three Prefect deployments; :func:`serve` runs them in
this process (``xrd-strain flows serve``; the same as ``deploy/serve.py``). Against a Prefect
server with work pools, ``deploy/prefect.yaml`` declares the same deployments (docs/flows.md).

Times are cron expressions in the server's time zone (UTC unless ``timezone`` says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Schedules", "FlowSettings", "build_deployments", "serve", "DEPLOYMENT_NAMES"]

#: Deployment names (``flow name/deployment name`` is what ``run_deployment`` takes).
DEPLOYMENT_NAMES = {
    "regenerate": "regenerate_dataset/nightly-regeneration",
    "retrain": "retrain/weekly-retraining",
    "refine": "refine_new_results/refine-new-results",
}


@dataclass(frozen=True, kw_only=True)
class Schedules:
    """When each flow runs.

    Attributes
    ----------
    regenerate_cron : str
        Nightly regeneration (default 01:00).
    retrain_cron : str
        Weekly retraining (default Sunday 03:00, after that night's regeneration).
    refine_interval_s : float
        Seconds between refinement runs (default 5 minutes; live results also trigger one).
    timezone : str
        Time zone of the cron expressions.
    """

    regenerate_cron: str = "0 1 * * *"
    retrain_cron: str = "0 3 * * 0"
    refine_interval_s: float = 300.0
    timezone: str = "UTC"


@dataclass(frozen=True, kw_only=True)
class FlowSettings:
    """Where the flows read and write, and their parameters beyond the defaults.

    Attributes
    ----------
    data_root : str
        Datasets and retraining work directory.
    registry_root : str or None
        Model registry (None: ``$XRD_STRAIN_REGISTRY`` or the user's data directory).
    tiled_url : str or None
        Tiled server of the results (None: no refinement deployment).
    scheduler_address : str or None
        Dask scheduler for the regeneration (None: local processes).
    regenerate, retrain, refine : dict
        Extra parameters of each flow (e.g. ``{"n_curves": 50000}``).
    """

    data_root: str
    registry_root: str | None = None
    tiled_url: str | None = None
    scheduler_address: str | None = None
    regenerate: dict = field(default_factory=dict)
    retrain: dict = field(default_factory=dict)
    refine: dict = field(default_factory=dict)


def build_deployments(settings: FlowSettings, schedules: Schedules = Schedules()) -> list:
    """The deployments of the three flows (``RunnerDeployment`` objects, not yet served).

    Retraining and regeneration allow one run at a time (two trainings on one machine would
    only slow each other); overlapping refinement runs are safe (atomic claims) and limited to 2.
    """
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.deployments.runner import EntrypointType

    from xrd_strain_flows.refine import refine_new_results
    from xrd_strain_flows.regenerate import regenerate_dataset
    from xrd_strain_flows.retrain import retrain

    tz = schedules.timezone
    # Runs load the flow by module path (xrd_strain_flows.regenerate:...), not by a file path relative to
    # the directory the server was started in.
    common = dict(tags=["xrd-strain"], entrypoint_type=EntrypointType.MODULE_PATH)
    out = [
        regenerate_dataset.to_deployment(
            name="nightly-regeneration",
            schedule=CronSchedule(cron=schedules.regenerate_cron, timezone=tz),
            parameters={
                "data_root": settings.data_root,
                "scheduler_address": settings.scheduler_address,
                **settings.regenerate,
            },
            concurrency_limit=1,
            **common,
            description="New training curves every night (seed = date); shards as tasks.",
        ),
        retrain.to_deployment(
            name="weekly-retraining",
            schedule=CronSchedule(cron=schedules.retrain_cron, timezone=tz),
            parameters={"data_root": settings.data_root, "registry_root": settings.registry_root, **settings.retrain},
            concurrency_limit=1,
            **common,
            description="Candidate on the newest set; promoted only if it does not regress.",
        ),
    ]
    if settings.tiled_url:
        out.append(
            refine_new_results.to_deployment(
                name="refine-new-results",
                schedule=IntervalSchedule(interval=schedules.refine_interval_s, timezone=tz),
                parameters={"tiled_url": settings.tiled_url, **settings.refine},
                concurrency_limit=2,
                **common,
                description="Least-squares refinement of results that have none yet.",
            )
        )
    return out


def serve(settings: FlowSettings, schedules: Schedules = Schedules(), *, limit: int | None = None):
    """Serve the deployments from this process until interrupted (runs execute here)."""
    from prefect import serve as prefect_serve

    prefect_serve(*build_deployments(settings, schedules), limit=limit)
