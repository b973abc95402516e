"""Sharded generation: counts, label ranges, determinism, resumption, refusal to mix datasets."""

import json

import h5py
import numpy as np
import pytest

from tests.training.conftest import TINY
from xrd_strain_training.dataset import load_dataset
from xrd_strain_training.generate import DatasetSpec, generate, make_shard


def test_manifest_and_shards(tiny_dataset_dir):
    manifest = json.loads((tiny_dataset_dir / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_curves"] == 48
    assert manifest["n_drawn"] >= 48
    assert manifest["preset"]["name"].startswith("CNN2")
    assert manifest["material"] == "YSZ" and manifest["hkl"] == [4, 0, 0]
    assert manifest["seed"] == 7 and manifest["code_version"]
    assert sorted(manifest["shards"]) == ["0", "1"]


def test_curves_and_labels_follow_the_preset(tiny_dataset_dir):
    ds = load_dataset(tiny_dataset_dir)
    assert ds.x.shape == (48, 1001) and ds.labels.shape == (48, 14)
    assert np.all(np.isfinite(ds.x)) and ds.x.max() <= 0.0
    # DR label: log10(I_max/I_min) within the accepted [3, 6], and it is -min of the input.
    dr = ds.labels[:, 13]
    assert dr.min() >= 3.0 and dr.max() <= 6.0
    np.testing.assert_allclose(-ds.x.min(axis=1), dr, atol=0.05)
    t, h, dw = ds.labels[:, 11], ds.labels[:, 12], ds.labels[:, 10]
    assert t.min() >= 100 and t.max() <= 1000
    assert h.min() >= 0.003 and h.max() <= 0.1
    assert dw.min() >= 0.05 and dw.max() <= 1.0
    # The substrate peak (strain 0) is the maximum of most curves.
    grid_zero = round(0.01 / 0.11 * 1000)
    assert np.median(np.abs(ds.x.argmax(axis=1) - grid_zero)) <= 3


def test_shards_are_deterministic_and_resumable(tiny_dataset_dir, tmp_path):
    spec = DatasetSpec(**TINY)
    manifest = json.loads((tiny_dataset_dir / "manifest.json").read_text())
    info = make_shard(spec, 1, tmp_path / "again.h5")
    with h5py.File(tmp_path / "again.h5") as a, h5py.File(tiny_dataset_dir / "shard-00001.h5") as b:
        np.testing.assert_array_equal(a["x"][:], b["x"][:])
        np.testing.assert_array_equal(a["labels"][:], b["labels"][:])
    assert info["n"] == 24
    # Interrupted run: shard 0 missing -> a rerun regenerates it, the fingerprint is unchanged.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "shard-00001.h5").write_bytes((tiny_dataset_dir / "shard-00001.h5").read_bytes())
    again = generate(spec, copy, workers=1, progress=False)
    assert again["fingerprint"] == manifest["fingerprint"]
    assert again["shards"]["1"]["seconds"] == manifest["shards"]["1"]["seconds"]  # kept


def test_a_shards_bytes_do_not_depend_on_when_its_datasets_are_collected(tiny_dataset_dir, tmp_path, monkeypatch):
    """A sampling profiler (Dask workers run one) holds a frame, and h5py's Dataset objects in it, a
    moment past the call; the shard's bytes and sha256 (the manifest's fingerprint) must not change."""
    manifest = json.loads((tiny_dataset_dir / "manifest.json").read_text())
    create, held = h5py.Group.create_dataset, []

    def create_and_hold(self, *args, **kwargs):
        held.append(create(self, *args, **kwargs))
        return held[-1]

    monkeypatch.setattr(h5py.Group, "create_dataset", create_and_hold)
    info = make_shard(DatasetSpec(**TINY), 1, tmp_path / "held.h5")
    assert len(held) > 1  # every dataset outlived make_shard's call to create it
    assert info["sha256"] == manifest["shards"]["1"]["sha256"]


def test_refuses_to_mix_datasets(tiny_dataset_dir):
    other = DatasetSpec(**{**TINY, "seed": 8})
    with pytest.raises(ValueError, match="different dataset.*seed"):
        generate(other, tiny_dataset_dir, workers=1, progress=False)


def test_nested_subsets(tiny_dataset_dir):
    assert load_dataset(tiny_dataset_dir, max_curves=10).n == 10
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_dataset(tiny_dataset_dir.parent)


def test_subset_fingerprint_names_exactly_the_curves_read(tiny_dataset_dir):
    full, again = load_dataset(tiny_dataset_dir), load_dataset(tiny_dataset_dir)
    assert full.fingerprint == again.fingerprint
    assert load_dataset(tiny_dataset_dir, max_curves=24).fingerprint != full.fingerprint
    assert (
        load_dataset(tiny_dataset_dir, max_curves=10).fingerprint
        != load_dataset(tiny_dataset_dir, max_curves=11).fingerprint
    )


def test_each_scan_reaches_from_the_most_to_the_least_strained_lamellas_peak():
    # A lamella strained by e along the normal peaks at sin(theta) = sin(theta_B) / (1 + e): the most
    # strained one lowest. The scan covers both extremes, widened outwards by less than one step.
    from types import SimpleNamespace

    from xrd_strain_plugin.physics.bragg import layer_peak_two_theta_deg
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_training.generate import scan_limits

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    draw = SimpleNamespace(strain_high=np.array([0.02, 0.08]), strain_low=np.array([-0.005, 0.0]))
    step = 0.01
    start, stop = scan_limits(draw, refl, step)
    low_peak = layer_peak_two_theta_deg(draw.strain_high, refl.theta_bragg)
    high_peak = layer_peak_two_theta_deg(draw.strain_low, refl.theta_bragg)
    assert np.all(start * step <= low_peak + 1e-9) and np.all(low_peak - start * step < step)
    assert np.all(stop * step >= high_peak - 1e-9) and np.all(stop * step - high_peak < step)
    assert stop[1] * step == pytest.approx(refl.two_theta_bragg_deg, abs=step)  # e = 0: the substrate's peak
