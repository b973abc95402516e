"""Shared fixtures: one tiny real dataset, simulated once per session."""

import pytest

from xrd_strain_training.generate import DatasetSpec, generate
from xrd_strain_training.presets import get_preset

# Fewer lamellae keep the tiny set fast; everything else is the CNN2 preset.
TINY = dict(preset=get_preset("CNN2", n_slices=60), seed=7, n_curves=48, shard_size=24)


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn2_tiny") / "train"
    generate(DatasetSpec(**TINY), out, workers=1, progress=False)
    return out
