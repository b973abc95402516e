"""One implementation of the physics on every array backend.

``array_api_strict`` is a minimal, strict implementation of the Python array API standard: code that
runs on it uses nothing numpy-specific, which is what CuPy, JAX and PyTorch (the GPU machine's
libraries) need. (The compiled numba loop, which drives the very same step function, is compared with
the array path in test_dynamical.py.)
"""

import array_api_strict as xs
import numpy as np
import pytest

from xrd_strain_plugin.physics.dynamical import reflectivity
from xrd_strain_plugin.physics.instrument import simulate_scan
from xrd_strain_plugin.physics.materials import make_reflection

R = make_reflection()
TH = R.theta_bragg + np.radians(np.linspace(-0.5, 0.05, 150))
E = np.stack([np.linspace(0.02, 0, 30), 0.01 * np.sin(np.linspace(0, np.pi, 30)) ** 2])
DW = np.stack([np.linspace(0.3, 1, 30), np.ones(30)])
T = np.array([300.0, 800.0])


@pytest.mark.parametrize("bragg", ["exact", "linearized"])
def test_kernel_on_strict_array_api_equals_numpy(bragg):
    ref = reflectivity(TH, E, DW, T, R, bragg=bragg, engine="array")
    out = reflectivity(xs.asarray(TH), xs.asarray(E), xs.asarray(DW), xs.asarray(T), R, bragg=bragg)
    assert out.__array_namespace__() is xs
    np.testing.assert_allclose(np.from_dlpack(out), ref, rtol=1e-9)


def test_forward_model_on_strict_array_api_equals_numpy():
    scan = np.arange(72.8, 73.8, 0.005)
    e = E * 0.4
    ref = simulate_scan(scan, e, DW, T, R, resolution_fwhm_deg=np.array([0.02, 0.05]))
    out = simulate_scan(
        xs.asarray(scan), xs.asarray(e), xs.asarray(DW), T, R, resolution_fwhm_deg=np.array([0.02, 0.05])
    )
    assert out.__array_namespace__() is xs
    np.testing.assert_allclose(np.from_dlpack(out), ref, rtol=1e-9)
