"""The physics core: dynamical XRD of a crystal with a strained, disordered surface layer.

Pure functions on arrays (numpy, or any array-API namespace for the simulator); depends on numpy,
scipy, xrayutilities (material constants only) and, optionally, numba. Nothing here imports
bluesky, tiled, prefect or tensorflow.

>>> import numpy as np
>>> from xrd_strain_plugin.physics import make_reflection, simulate_scan
>>> r = make_reflection("YSZ", (4, 0, 0), 1.5406)
>>> scan = np.arange(72.8, 73.8, 0.005)
>>> strain = 0.005 * np.linspace(1, 0, 100)          # surface first, 0.5 % at the surface
>>> curve = simulate_scan(scan, strain, np.ones(100), 300.0, r, resolution_fwhm_deg=0.02)
>>> curve.shape
(1, 200)
"""

from .bragg import bragg_angle, fringe_period_two_theta_deg, layer_peak_two_theta_deg, q_to_two_theta_deg
from .curve import Curve, CurveError, validate_curve
from .dynamical import reflectivity
from .instrument import apply_counts, background_profile, convolve_resolution, resolution_kernel, simulate_scan
from .materials import MaterialError, Reflection, make_reflection
from .misfit import fit_scale_background, sigma_i
from .profiles import (
    depth_table,
    dw_coupled,
    dw_from_weights,
    fit_weights,
    lamellae_from_table,
    strain_from_weights,
    weights_basis,
)
from .qspace import ModelGrid, curve_to_model_input, from_model_grid, strain_axis, to_model_input, two_theta_deg_to_q

__all__ = [
    "make_reflection",
    "Reflection",
    "MaterialError",
    "bragg_angle",
    "layer_peak_two_theta_deg",
    "fringe_period_two_theta_deg",
    "two_theta_deg_to_q",
    "q_to_two_theta_deg",
    "Curve",
    "CurveError",
    "validate_curve",
    "reflectivity",
    "simulate_scan",
    "convolve_resolution",
    "apply_counts",
    "background_profile",
    "resolution_kernel",
    "sigma_i",
    "fit_scale_background",
    "strain_from_weights",
    "dw_coupled",
    "dw_from_weights",
    "fit_weights",
    "lamellae_from_table",
    "weights_basis",
    "depth_table",
    "ModelGrid",
    "to_model_input",
    "curve_to_model_input",
    "from_model_grid",
    "strain_axis",
]
