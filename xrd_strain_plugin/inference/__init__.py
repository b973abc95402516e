"""Model bundles and the CNN inversion of measured curves.

Importing this package does not import Keras: the network is loaded only when a bundle is.

- :class:`Inverter` -- measured curve -> :class:`InversionResult` (the one inversion path, used
  by ``xrd-strain invert`` and the live Bluesky callback)
- :func:`load_bundle`, :func:`save_bundle`, :class:`ModelCard` -- model bundles
- :class:`~xrd_strain_plugin.inference.registry.ModelRegistry` -- find models by
  ``model_id[@version]`` or by (material, reflection, wavelength); the current model per key
- :func:`default_bundle_path` -- the shipped YSZ 400 / Cu K-alpha1 model (an alias kept for old
  callers; use the registry)
"""

from __future__ import annotations

from pathlib import Path

from xrd_strain_plugin.inference.bundle import (
    BundleError,
    BundleMismatchError,
    ModelBundle,
    ModelCard,
    load_bundle,
    read_card,
    save_bundle,
)
from xrd_strain_plugin.inference.invert import InversionResult, Inverter
from xrd_strain_plugin.physics.misfit import sigma_i

__all__ = [
    "BundleError",
    "BundleMismatchError",
    "InversionResult",
    "Inverter",
    "ModelBundle",
    "ModelCard",
    "default_bundle_path",
    "load_bundle",
    "read_card",
    "save_bundle",
    "sigma_i",
    "DEFAULT_MODEL",
]

#: Directory name of the shipped default bundle under ``xrd_strain_plugin/models``.
DEFAULT_MODEL = "ysz-400-cuka1-cnn2"


def default_bundle_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a bundle shipped with the package (default: YSZ 400 at Cu K-alpha1, CNN2).

    Kept as an alias of :func:`~xrd_strain_plugin.inference.registry.shipped_bundle_path`; new
    code asks the registry (``ModelRegistry().current(key)`` or ``.resolve("id@version")``), which
    also sees promoted models.
    """
    from xrd_strain_plugin.inference.registry import shipped_bundle_path

    return shipped_bundle_path(name)
