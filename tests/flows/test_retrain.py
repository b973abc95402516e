"""retrain: a worse candidate is kept but not promoted; a better one is promoted, and the live
callback, running all along, answers the next run with it (no restart)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xrd_strain_plugin.inference.registry import ModelKey, ModelRegistry

YSZ = ModelKey(material="YSZ", hkl=(4, 0, 0), wavelength_angstrom=1.5406)
#: A network small enough to train in seconds on the tiny set.
TINY_NET = dict(
    epochs=6, filters=[4, 4, 8, 8], dense_units=[32, 16], batch_size=8, learning_rate=3e-3, final_anneal=None
)


def constant_bundle(path, train_dir):
    """A real bundle whose network answers the same (the labels' minima) for every curve: an
    unmistakably poor current model for the 'better candidate' case."""
    import keras

    from xrd_strain_plugin.inference.bundle import ModelCard, save_bundle
    from xrd_strain_plugin.inference.labels import LabelScaling
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.physics.qspace import ModelGrid
    from xrd_strain_training.dataset import load_dataset
    from xrd_strain_training.networks import build_cnn

    ds = load_dataset(train_dir)
    model = build_cnn(n_input=1001, n_labels=14, filters=(4, 4, 4, 4), dense_units=(8, 8))
    for w in model.weights:
        w.assign(keras.ops.zeros(w.shape))
    card = ModelCard(
        model_id="constant",
        version="1",
        code_version="test",
        material="YSZ",
        hkl=(4, 0, 0),
        wavelength_angstrom=1.5406,
        d_spacing_angstrom=make_reflection("YSZ", (4, 0, 0), 1.5406).d_spacing_angstrom,
        grid=ModelGrid(**ds.manifest["grid"]),
        labels=LabelScaling.fit(ds.labels, ds.label_names),
        n_slices=60,
    )
    save_bundle(path, model, card)
    return path


def _artifact(key_prefix):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=key_prefix)))


def test_a_worse_candidate_is_kept_but_not_promoted(tiny_data, tmp_path):
    from xrd_strain_flows.retrain import retrain

    root, data = tiny_data
    registry = ModelRegistry(tmp_path / "registry")  # current: the shipped model
    out = retrain(
        data_root=str(root),
        registry_root=str(registry.root),
        work_dir=str(tmp_path / "work"),
        train_config={**TINY_NET, "epochs": 2},
    )
    assert out["current_before"] == out["current_after"] == "ysz-400-cuka1-cnn2@1"
    assert out["candidate"] == "ysz-400-cuka1-cnn2@2" and not out["promoted"]
    assert any("regressed" in r for r in out["reasons"]), out["reasons"]
    assert out["candidate_metrics"]["a_t"] < out["current_metrics"]["a_t"]
    # Kept, with its metrics, in the registry; the pointer was never written.
    entry = registry.resolve("ysz-400-cuka1-cnn2@2")
    assert entry.card.metrics["n_test"] == 16
    assert registry.evaluation(entry.ref, out["test_fingerprint"]) == pytest.approx(out["candidate_metrics"])
    assert registry.pointer_token(YSZ) is None and registry.current(YSZ).shipped
    assert [e["event"] for e in registry.history()] == ["added", "rejected"]
    # The comparison is published as a markdown artifact with the table and inline figures.
    (artifact,) = [a for a in _artifact("retrain-ysz-400-1-5406a") if "@2 vs" in a.description]
    assert "not promoted" in artifact.data and "| ysz-400-cuka1-cnn2@1 (current) | 16 |" in artifact.data
    assert artifact.data.count("data:image/png;base64,") == 2


def test_a_better_candidate_is_promoted_and_the_live_callback_uses_it_without_restart(
    tiny_data, tmp_path, tiled_server
):
    from bluesky import RunEngine
    from bluesky.plans import scan

    from tests.live_support import API_KEY
    from xrd_strain_flows.retrain import retrain
    from xrd_strain_plugin.bluesky import LiveInversion
    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer, SimulatedSample
    from xrd_strain_plugin.inference.registry import CurrentModel
    from xrd_strain_plugin.physics import profiles
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.tiled import Spool, SpoolingPublisher, TiledResultsWriter, find_results

    root, data = tiny_data
    registry = ModelRegistry(tmp_path / "registry", shipped=None)
    poor = registry.add(constant_bundle(tmp_path / "constant", data["train"]["path"]))
    registry.promote(poor.ref, reason="test: a poor current model")

    # The live callback, started once, following the registry's current model.
    live = LiveInversion(
        CurrentModel(registry, YSZ),
        SpoolingPublisher(
            lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key=API_KEY), Spool(tmp_path / "spool")
        ),
    )
    RE = RunEngine({})
    RE.subscribe(live)
    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    strain = profiles.strain_from_weights(np.exp(-0.5 * ((np.arange(10) - 3) / 2.0) ** 2), 0.015, 60)[0]
    sample = SimulatedSample(
        name="S",
        strain=strain,
        thickness_nm=300.0,
        debye_waller=np.atleast_2d(profiles.dw_coupled(strain, 0.015, 0.5))[0],
    )
    dif = SimulatedDiffractometer(reflection=refl, sample=sample, rng=np.random.default_rng(3))

    def model_of_next_run():
        (uid,) = RE(scan([dif.detector], dif.motor, *dif.scan_range(), 121))
        assert live.wait(60)
        (node,) = find_results(tiled_server.client(), raw_uid=uid).values()
        assert node.metadata["status"] == "ok", node.metadata.get("reason")
        return node.metadata["model"]

    try:
        assert model_of_next_run()["id"] == "constant"
        # One curve of 16 is 6.25 points: allow that much noise per accuracy; the MSE must not grow.
        gate = {
            "tolerances": {k: 0.07 for k in ("a_t", "a_emax", "a_dw", "a_h", "a_dr", "a_strain")},
            "mse_tolerance": 0.0,
        }
        out = retrain(
            data_root=str(root),
            registry_root=str(registry.root),
            work_dir=str(tmp_path / "work"),
            model_id="ysz-tiny",
            train_config={**TINY_NET, "epochs": 10},
            gate=gate,
        )
        assert out["promoted"], out["reasons"]
        assert out["current_before"] == "constant@1" and out["current_after"] == "ysz-tiny@1"
        assert out["candidate_metrics"]["mse_test"] < out["current_metrics"]["mse_test"]
        pointer = json.loads((registry.root / "current" / f"{YSZ.slug}.json").read_text())
        assert pointer["model"] == "ysz-tiny@1" and pointer["previous"] == "constant@1"
        # Same process, same callback object: the next run is answered by the promoted model.
        model = model_of_next_run()
        assert (model["id"], model["version"]) == ("ysz-tiny", "1")
        assert model["sha256"] == registry.resolve("ysz-tiny@1").card.weights_sha256
        assert live.inverter.reloads == 1
    finally:
        live.close()
