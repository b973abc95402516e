"""Bundles: save/load round trip, and clear refusals of corrupt, incomplete or mismatched ones."""

import json
import subprocess
import sys

import pytest

from xrd_strain_plugin.inference import BundleError, BundleMismatchError, ModelCard, load_bundle, read_card, save_bundle
from xrd_strain_plugin.inference.labels import LabelScaling
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.physics.qspace import ModelGrid
from xrd_strain_training.networks import build_cnn

NAMES = tuple(f"w{i}_percent" for i in range(10)) + ("dw_min", "thickness_nm", "resolution_fwhm_deg", "dynamic_range")


def _card(**changes):
    fields = dict(
        model_id="test-model",
        version="1",
        code_version="0.1.0",
        material="YSZ",
        hkl=(4, 0, 0),
        wavelength_angstrom=1.5406,
        d_spacing_angstrom=1.28625,
        grid=ModelGrid(strain_min=-0.01, strain_max=0.10, n_points=301),
        labels=LabelScaling(names=NAMES, minimum=(0.0,) * 14, maximum=(1.0,) * 14),
        n_slices=50,
        metrics={"a_t": 0.9},
    )
    fields.update(changes)
    return ModelCard(**fields)


@pytest.fixture(scope="module")
def small_model():
    return build_cnn(n_input=301, filters=(2, 2, 2, 2), dense_units=(4, 4))


@pytest.fixture
def bundle_dir(tmp_path, small_model):
    save_bundle(tmp_path / "bundle", small_model, _card())
    return tmp_path / "bundle"


def test_round_trip(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.card.model_id == "test-model" and bundle.card.metrics == {"a_t": 0.9}
    assert len(bundle.card.weights_sha256) == 64
    assert bundle.card.grid.n_points == 301 and bundle.card.n_weights == 10
    assert bundle.model.input_shape == (None, 301, 1)
    card = json.loads((bundle_dir / "card.json").read_text())
    assert card["labels"]["names"] == list(NAMES) and card["hkl"] == [4, 0, 0]


def test_corrupt_weights_are_refused(bundle_dir):
    data = bytearray((bundle_dir / "model.keras").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle_dir / "model.keras").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="corrupt or was modified"):
        load_bundle(bundle_dir)


def test_missing_and_unreadable_parts(bundle_dir, tmp_path):
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nowhere")
    (bundle_dir / "model.keras").unlink()
    with pytest.raises(BundleError, match="no model.keras"):
        load_bundle(bundle_dir)
    (bundle_dir / "card.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_card(bundle_dir)
    (bundle_dir / "card.json").unlink()
    with pytest.raises(BundleError, match="no card.json"):
        read_card(bundle_dir)


def test_card_errors_name_the_field(bundle_dir):
    card = json.loads((bundle_dir / "card.json").read_text())
    del card["grid"]
    (bundle_dir / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="card.json is invalid.*grid"):
        read_card(bundle_dir)
    card["grid"], card["format"] = {"strain_min": 0, "strain_max": 1}, 99
    (bundle_dir / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="format 99"):
        read_card(bundle_dir)


def test_network_that_contradicts_its_card(tmp_path, small_model):
    with pytest.raises(BundleError, match="input has 301 points.*1001"):
        save_bundle(tmp_path / "b", small_model, _card(grid=ModelGrid(strain_min=0, strain_max=1)))


def test_reflection_mismatch_is_explained():
    card = _card(d_spacing_angstrom=make_reflection("YSZ", (4, 0, 0), 1.5406).d_spacing_angstrom)
    card.check_reflection(make_reflection("YSZ", (4, 0, 0), 1.5406))  # the trained case passes
    with pytest.raises(BundleMismatchError, match="wavelength 1.789"):
        card.check_reflection(make_reflection("YSZ", (4, 0, 0), 1.789))
    with pytest.raises(BundleMismatchError, match=r"d-spacing.*\(2, 0, 0\)"):
        card.check_reflection(make_reflection("YSZ", (2, 0, 0), 1.5406))


def test_importing_inference_does_not_import_keras():
    code = (
        "import sys, xrd_strain_plugin.inference as i; "
        "print(any(m.split('.')[0] in ('keras', 'tensorflow') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
