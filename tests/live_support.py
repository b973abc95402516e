"""Helpers for the adapter tests (tests/bluesky, tests/tiled; also tests/flows, tests/deploy): real Tiled
servers on loopback, a tiny bundle, synthetic records. Fixtures are in tests/conftest.py.

A separate module rather than ``from conftest import ...``: other test folders have their own
conftest.py, and a bare ``conftest`` module name can resolve to one of those.
"""

from __future__ import annotations

import os

# The spool is what retries; the Tiled client's own retries (up to 45 s) would only slow the
# outage tests down. Must be set before tiled.client is imported.
os.environ["TILED_RETRY_ATTEMPTS"] = "1"
os.environ["TILED_RETRY_TIMEOUT"] = "2"

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from http.server import BaseHTTPRequestHandler  # noqa: E402

import numpy as np  # noqa: E402

API_KEY = "testsecret"

#: Refinement options for tests of the refiners' plumbing (claims, exactly once, derived runs, write
#: beside the network's answer): a small search grid, no rescans, variants, deeper rounds or global
#: stage, about 2 CPU s a curve instead of ~9 with ``budget_s=1`` alone (whose cap does not bound the
#: fixed-size search). The search's quality is tests/refinement's business. JSON-able, as the flow
#: ``refine_new_results`` takes it; :func:`cheap_refinement` gives it as ``RefineOptions`` fields.
CHEAP_SEARCH = dict(
    peak_depths=(0.15, 0.45, 0.75),
    widths=((0.25, 0.12), (0.4, 0.2)),
    n_thicknesses=8,
    n_refine=8,
    dw_values=(0.35, 0.85),
    n_sweep=4,
)
CHEAP_REFINEMENT = dict(
    budget_s=1.0,
    global_budget_s=0.0,
    global_generations=0,
    n_rescan=0,
    n_variant_fits=0,
    n_deeper_rounds=0,
    search=CHEAP_SEARCH,
)


def cheap_refinement() -> dict:
    """:data:`CHEAP_REFINEMENT` as ``RefineOptions`` fields (``search`` a ``SearchOptions``)."""
    from xrd_strain_plugin.refinement.search import SearchOptions

    return {**CHEAP_REFINEMENT, "search": SearchOptions(**CHEAP_SEARCH)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVE = """
import sys, time
from tiled.server import SimpleTiledServer
server = SimpleTiledServer(sys.argv[1], api_key=sys.argv[2], port=int(sys.argv[3]))
print("ready", flush=True)
sys.stdin.read()  # until the parent closes our stdin
server.close()
"""


class TiledProcess:
    """A SimpleTiledServer (SQLite catalog, files in ``directory``) in its own process.

    Its own process, as in deployment: no GIL shared with the plugin, and no clash with the
    SQLite that TensorFlow bundles (loaded first, it hides the FTS5 module Tiled's catalog
    needs). It can be stopped and started again on the same port and data.
    """

    def __init__(self, directory, port=None):
        self.directory = directory
        self.port = port or free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(self.directory), API_KEY, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.process.kill()
            raise RuntimeError(f"Tiled server did not start (see {self.directory}/error.log)")
        return self

    def stop(self):
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def client(self):
        from tiled.client import from_uri

        return from_uri(self.url, api_key=API_KEY)


class _Failing(BaseHTTPRequestHandler):
    def _fail(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _fail

    def log_message(self, *args):
        pass


def make_tiny_bundle(path):
    """Save a small untrained network as a real bundle for YSZ 400 at Cu K-alpha1."""
    from xrd_strain_plugin.inference.bundle import ModelCard, save_bundle
    from xrd_strain_plugin.inference.labels import TAIL, LabelScaling
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.physics.qspace import ModelGrid
    from xrd_strain_training.networks import build_cnn

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    n_weights = 10
    names = tuple(f"w{i}" for i in range(n_weights)) + TAIL
    lo = (0.0,) * n_weights + (0.05, 100.0, 0.003, 3.0)
    hi = (8.0,) * n_weights + (1.0, 1000.0, 0.1, 6.0)
    grid = ModelGrid(strain_min=-0.01, strain_max=0.09, n_points=1001)
    model = build_cnn(n_input=grid.n_points, n_labels=len(names), filters=(4, 4, 4, 4), dense_units=(16, 8))
    card = ModelCard(
        model_id="tiny-test",
        version="0.0.test",
        code_version="test",
        material="YSZ",
        hkl=(4, 0, 0),
        wavelength_angstrom=1.5406,
        d_spacing_angstrom=refl.d_spacing_angstrom,
        grid=grid,
        labels=LabelScaling(names=names, minimum=lo, maximum=hi),
        n_slices=50,
    )
    save_bundle(path, model, card)
    return path


def synthetic_record(uid, index=None, *, e_max=1.0, sample="S", status="ok", n_slices=20, n_points=64, seed=0):
    """A ResultRecord with known arrays (for the Tiled layer tests, which do not need a model)."""
    from xrd_strain_plugin.results import ARRAY_NAMES, ResultRecord, base_metadata

    rng = np.random.default_rng(seed)
    md = base_metadata(
        status=status,
        raw_uid=uid,
        curve_index=index,
        sample=sample,
        reason=None if status == "ok" else "because",
        extra={"model": {"id": "m", "version": "1", "sha256": "0"}}
        | ({"strain_max_percent": e_max} if status == "ok" else {}),
    )
    arrays = {}
    if status == "ok":
        arrays = {k: rng.random(n_slices) for k in ARRAY_NAMES[:3]} | {k: rng.random(n_points) for k in ARRAY_NAMES[3:]}
    return ResultRecord(raw_uid=uid, curve_index=index, metadata=md, arrays=arrays)
