"""The physics core: dynamical XRD of a crystal with a strained, disordered surface layer.

Pure functions on arrays (numpy, or any array-API namespace for the simulator); depends on numpy,
scipy, xrayutilities (material constants only) and, optionally, numba. Nothing here imports
bluesky, tiled, prefect or tensorflow.

>>> import numpy as np
>>> from xrd_strain_plugin.physics import reflection, simulate_scan
>>> r = reflection("YSZ", (4, 0, 0), 1.5406)
>>> scan = np.arange(72.8, 73.8, 0.005)
>>> strain = 0.005 * np.linspace(1, 0, 100)          # surface first, 0.5 % at the surface
>>> curve = simulate_scan(scan, strain, np.ones(100), 300.0, r, resolution_fwhm_deg=0.02)
>>> curve.shape
(1, 200)
"""

from .dynamical import reflectivity
from .instrument import apply_counts, background_profile, resolution_kernel, simulate_scan
from .materials import MaterialError, Reflection, reflection
from .profiles import dw_coupled, dw_from_weights, fit_weights, lamellae_from_table, strain_from_weights
from .qspace import (
    CurveError,
    ModelGrid,
    from_model_grid,
    strain_axis,
    to_model_input,
    two_theta_deg_to_q,
    validate_curve,
)

__all__ = [
    "reflection", "Reflection", "MaterialError",
    "reflectivity", "simulate_scan", "apply_counts", "background_profile", "resolution_kernel",
    "strain_from_weights", "dw_coupled", "dw_from_weights", "fit_weights", "lamellae_from_table",
    "ModelGrid", "CurveError", "validate_curve", "to_model_input", "from_model_grid", "strain_axis",
    "two_theta_deg_to_q",
]
