"""Real Prefect flow runs: one temporary Prefect server per session (prefect_test_harness, ~15 s
to start) with its own PREFECT_HOME, and one tiny dataset made by the regeneration flow itself."""

from __future__ import annotations

import os
import tempfile

# Before prefect is imported anywhere: no analytics (no network here), no user profile touched.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="xrd-strain-prefect-home-")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402

#: The tiny dataset of the flow tests: CNN2 with 60 lamellae, 2 shards of 12 training curves, one
#: test shard of 16.
TINY = dict(preset="CNN2", options={"n_slices": 60}, n_curves=24, shard_size=12, test_curves=16, seed=11, test_seed=5)


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """``(data_root, result)`` of one local regeneration run (shards run in this process)."""
    from xrd_strain_flows.regenerate import regenerate

    root = tmp_path_factory.mktemp("flow-data")
    result = regenerate(workers=1, data_root=str(root), **TINY)
    return root, result


@pytest.fixture(scope="session")
def tiled_server(tmp_path_factory):
    """A real Tiled server (SQLite, own process) on loopback, as the live tests start one."""
    from tests.live_support import TiledProcess

    server = TiledProcess(tmp_path_factory.mktemp("tiled")).start()
    yield server
    server.stop()
