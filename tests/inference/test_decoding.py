"""Decoding follows the model card: its n_slices and its dw_mode (not a module constant)."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from xrd_strain_plugin.inference import Inverter, default_bundle_path, load_bundle
from xrd_strain_plugin.inference.labels import decode_labels
from xrd_strain_plugin.io import read_curve
from xrd_strain_plugin.physics.materials import make_reflection

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ysz_400_irradiated.xy"


def _with_card(bundle, **changes):
    return dataclasses.replace(bundle, card=dataclasses.replace(bundle.card, **changes))


def test_the_inverter_takes_its_lamellae_from_the_card():
    bundle = load_bundle(default_bundle_path())
    assert Inverter(bundle).n_slices == bundle.card.n_slices
    other = Inverter(_with_card(bundle, n_slices=120))
    two_theta, counts = read_curve(REAL)
    result = other.invert(two_theta, counts, make_reflection("YSZ", (4, 0, 0), 1.5406))
    assert other.n_slices == 120 and result.depth_nm.size == 121  # slices + the interface row
    assert Inverter(bundle, n_slices=80).n_slices == 80  # an explicit choice still wins


def test_a_decoupled_card_is_refused_not_decoded_as_coupled():
    labels = np.r_[np.linspace(1, 0, 10), 0.5, 200.0, 0.01, 4.0][None, :]
    assert decode_labels(labels, n_weights=10, n_slices=50).debye_waller.shape == (1, 50)
    with pytest.raises(ValueError, match="only 'coupled' models can be decoded"):
        decode_labels(labels, n_weights=10, n_slices=50, dw_mode="decoupled")
