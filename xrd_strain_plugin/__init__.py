"""xrd-strain: depth-resolved strain and disorder from XRD rocking curves.

Packages by role (dependencies point inward):

- :mod:`xrd_strain_plugin.physics` -- the pure simulator (numpy/scipy/xrayutilities only)
- :mod:`xrd_strain_plugin.inference` -- model bundles and the CNN predictor (Keras)
- :mod:`xrd_strain_plugin.bluesky`, :mod:`xrd_strain_plugin.tiled` -- adapters
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
