"""The compiled simulator kernel in worker processes: loaded from numba's disk cache, built once per
process and reused by every task (issue 15: a Dask shard must not pay a compilation per task)."""

import math

import numpy as np
import pytest

from xrd_strain_plugin.physics.dynamical import HAVE_NUMBA, reflectivity
from xrd_strain_plugin.physics.materials import make_reflection

distributed = pytest.importorskip("distributed", reason="the flows extra (Dask) is not installed")


def _kernel_state():
    """Run one simulation and report which kernel object served it and how it was obtained."""
    from xrd_strain_plugin.physics import dynamical

    r = make_reflection("YSZ", (4, 0, 0), 1.5406)
    th = r.theta_bragg + np.radians(np.linspace(-0.4, 0.05, 123))
    curve = reflectivity(th, np.linspace(0.01, 0.0, 30), np.ones(30), 300.0, r)
    kernel = dynamical._fused_kernel(3, False)
    stats = kernel.stats
    return {
        "id": id(kernel),
        "signatures": len(kernel.signatures),
        "cache_hits": sum(stats.cache_hits.values()),
        "cache_misses": sum(stats.cache_misses.values()),
        "peak": float(curve.max()),
    }


def test_worker_tasks_reuse_one_kernel_loaded_from_the_disk_cache():
    assert HAVE_NUMBA
    here = _kernel_state()  # compiles (or loads) in this process, so the disk cache exists
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        first = client.submit(_kernel_state, pure=False).result()
        second = client.submit(_kernel_state, pure=False).result()
    assert first["id"] == second["id"]  # the same compiled object served both tasks
    assert first["signatures"] == second["signatures"] == 1  # one specialisation, never recompiled
    assert first["cache_misses"] == 0 and first["cache_hits"] >= 1  # loaded from disk, not compiled
    assert math.isclose(first["peak"], here["peak"], rel_tol=1e-12)
