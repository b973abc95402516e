"""A proposal library from a generated training set (``xrd-strain library``; issue 13).

The refinement screens the profiles of the library curves nearest to a measured curve beside its
own grid (:class:`xrd_strain_plugin.refinement.library.ProposalLibrary`). This module picks the
profiles: one per group of K draws (curves drawn with ``--draws-per-profile K`` share a profile),
so the library holds distinct profiles of the set's recipe.
"""

from __future__ import annotations

from xrd_strain_plugin.physics.qspace import ModelGrid
from xrd_strain_plugin.refinement.library import ProposalLibrary
from xrd_strain_plugin.reflection_cache import cached_reflection

__all__ = ["build_library"]


def build_library(split_dir, *, n_curves: int = 20000, n_components: int = 32) -> ProposalLibrary:
    """The library of the first ``n_curves`` distinct profiles of a dataset split."""
    from xrd_strain_training.dataset import load_dataset

    probe = load_dataset(split_dir, max_curves=1)
    stride = int(probe.manifest.get("draws_per_profile", 1) or 1)
    data = load_dataset(split_dir, max_curves=n_curves * stride)
    m = data.manifest
    refl = cached_reflection(m["material"], tuple(m["hkl"]), float(m["wavelength_angstrom"]))
    return ProposalLibrary.build(
        data.x[::stride][:n_curves],
        data.labels[::stride][:n_curves],
        grid=ModelGrid(**m["grid"]),
        d_spacing_angstrom=refl.d_spacing_angstrom,
        wavelength_angstrom=refl.wavelength_angstrom,
        n_components=n_components,
    )
