"""Fixtures shared by the adapter tests (tests/bluesky, tests/tiled): real Tiled servers on
loopback, a tiny real model bundle.

No mocks: servers are ``tiled.server.SimpleTiledServer`` instances (SQLite catalog,
files in a temporary directory) in their own processes, the model is a real (small,
untrained) Keras network saved as a real bundle and run by the real ``Inverter``.

Here, at the root, so that one session server serves both folders; the helpers are imported
inside the fixtures, so that tests which use none of them never import ``tests.live_support``
(which sets the Tiled client's retry variables).
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import pytest


@pytest.fixture(scope="session")
def tiled_server(tmp_path_factory):
    """One Tiled server for the adapter tests (tests that stop a server start their own)."""
    from tests.live_support import TiledProcess

    server = TiledProcess(tmp_path_factory.mktemp("tiled")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def failing_http_url():
    """A loopback HTTP server answering 503 to everything (a Tiled that is up but failing)."""
    from tests.live_support import _Failing

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    server.shutdown()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    from tests.live_support import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def inverter(tiny_bundle):
    from xrd_strain_plugin.inference.bundle import load_bundle
    from xrd_strain_plugin.inference.invert import Inverter

    return Inverter(load_bundle(tiny_bundle))
