"""Serve the xrd-strain deployments from one process: nightly regeneration, weekly retraining,
refinement every few minutes (the same as ``xrd-strain flows serve``; docs/flows.md).

Configuration comes from the environment (deploy/flows/flows.env.example), never from this file:

    XRD_STRAIN_DATA          datasets and retraining runs (required)
    XRD_STRAIN_REGISTRY      model registry (default: ~/.local/share/xrd-strain/registry)
    XRD_STRAIN_TILED         Tiled server of the results (no refinement deployment without it)
    TILED_API_KEY            the Tiled key the refinement writes with (or XRD_STRAIN_TILED_KEY_BLOCK,
                             the name of a Prefect Secret block holding it)
    DASK_SCHEDULER_ADDRESS   tcp://host:8786 to run the regeneration's shards on a Dask cluster
    PREFECT_API_URL          the Prefect server the deployments register with (its UI shows them)

    python deploy/serve.py
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from xrd_strain_flows.deployments import FlowSettings, Schedules, serve

    if not os.environ.get("XRD_STRAIN_DATA"):
        print("deploy/serve.py: set XRD_STRAIN_DATA (see the docstring)", file=sys.stderr)
        return 2
    block = os.environ.get("XRD_STRAIN_TILED_KEY_BLOCK")
    settings = FlowSettings(
        data_root=os.environ["XRD_STRAIN_DATA"],
        registry_root=os.environ.get("XRD_STRAIN_REGISTRY"),
        tiled_url=os.environ.get("XRD_STRAIN_TILED"),
        scheduler_address=os.environ.get("DASK_SCHEDULER_ADDRESS"),
        refine={"api_key_env": None if block else "TILED_API_KEY", "api_key_block": block},
    )
    serve(settings, Schedules())
    return 0


if __name__ == "__main__":
    sys.exit(main())
