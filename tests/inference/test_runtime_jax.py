"""The GPU path: the bundle loads and predicts identically under Keras' JAX backend.

The GPU machines have JAX but no TensorFlow. JAX is not a dependency of this project (jaxlib
alone is ~350 MB installed, more than the rest of the numeric stack), so this test is marked
``slow``: the default suite deselects it instead of skipping it, and ``make test-slow`` runs it
where ``jax`` is importable (``.venv/bin/pip install jax jaxlib``); without jax it fails, naming
the install, rather than passing silently. Keras fixes its backend per process, so the JAX side
runs in a subprocess.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from xrd_strain_plugin.inference import default_bundle_path, load_bundle
from xrd_strain_plugin.inference.predictor import Predictor

pytestmark = pytest.mark.slow

_JAX_SIDE = """
import json, sys
import numpy as np
import keras
from xrd_strain_plugin.inference import load_bundle
from xrd_strain_plugin.inference.predictor import Predictor
assert keras.backend.backend() == "jax", keras.backend.backend()
bundle = load_bundle(sys.argv[1], runtime="keras")
x = np.load(sys.argv[2])
print(json.dumps(Predictor(bundle).predict_scaled(x).tolist()))
"""


def test_bundle_predicts_the_same_under_jax(tmp_path):
    assert importlib.util.find_spec("jax") is not None, (
        "jax is not installed: .venv/bin/pip install jax jaxlib (not a project dependency)"
    )
    path = default_bundle_path()
    rng = np.random.default_rng(0)
    x = (-np.abs(rng.normal(2.0, 1.5, size=(16, 1001))).cumsum(axis=1) / 200).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run(
        [sys.executable, "-c", _JAX_SIDE, str(path), str(tmp_path / "x.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    jax_pred = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]), dtype=np.float32)
    reference = Predictor(load_bundle(path, runtime="keras")).predict_scaled(x)
    np.testing.assert_allclose(jax_pred, reference, atol=2e-5, rtol=0)
