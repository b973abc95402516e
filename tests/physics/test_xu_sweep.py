"""Full sweep against xrayutilities' DynamicalModel (slow: ~10 s per curve; `make test-slow`).

Figures are written by `benchmarks/validate_physics.py` into docs/physics.md.
"""

import pytest

from .xu_reference import compare_with_xu, graded_profile

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("thickness_nm", [100.0, 300.0, 1000.0])
@pytest.mark.parametrize("strain", [0.001, 0.005, 0.01, 0.02, 0.04, 0.08])
def test_uniform_layer_within_0p01_rms_log10(strain, thickness_nm):
    import numpy as np

    assert compare_with_xu(np.full(20, strain), thickness_nm) < 0.01


@pytest.mark.parametrize("kind", ["ramp", "gauss", "buried"])
@pytest.mark.parametrize("e_max,thickness_nm", [(0.01, 300.0), (0.02, 500.0), (0.02, 1000.0), (0.08, 300.0)])
def test_graded_layer_within_0p01_rms_log10(kind, e_max, thickness_nm):
    assert compare_with_xu(graded_profile(kind, e_max), thickness_nm) < 0.01
