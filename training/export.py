"""Turn a training run into a model bundle (weights + card with the measured metrics)."""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path

from xrd_strain_training.presets import Preset

__all__ = ["export_bundle", "code_version"]


def code_version() -> str:
    """Package version, plus the git commit when run from a checkout."""
    from xrd_strain_plugin import __version__

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+g{commit}" if commit else __version__


def export_bundle(
    out,
    *,
    model,
    scaling,
    train_manifest: dict,
    train_state: dict,
    metrics: dict | None = None,
    model_id: str,
    version: str = "1",
    test_manifest: dict | None = None,
    head: dict | None = None,
):
    """Write a bundle for a trained network.

    Parameters
    ----------
    out : str or Path
        Bundle directory.
    model : keras.Model
    scaling : LabelScaling
    train_manifest, test_manifest : dict
        Manifests of the training and held-out test sets (material, reflection, grid, preset,
        fingerprint, sizes).
    train_state : dict
        ``state.json`` of the run (config, epochs, timing).
    metrics : dict, optional
        Measured figures (Table-2 row) to record.
    model_id, version : str
    head : dict, optional
        What the outputs mean (``targets``, ``n_hypotheses``; :class:`ModelCard`); default: the
        paper's head.

    Returns
    -------
    ModelCard
        The card as written.
    """
    from xrd_strain_plugin.inference.bundle import ModelCard, save_bundle
    from xrd_strain_plugin.physics.qspace import ModelGrid
    from xrd_strain_plugin.reflection_cache import cached_reflection

    preset = Preset.from_dict(train_manifest["preset"])
    refl = cached_reflection(
        train_manifest["material"], tuple(train_manifest["hkl"]), train_manifest["wavelength_angstrom"]
    )
    dataset = {
        "train_fingerprint": train_state["fingerprint"],
        "train_set_fingerprint": train_manifest["fingerprint"],
        "n_curves_in_train_set": train_manifest["n_curves"],
        "n_used": train_state["n_curves"],
        "n_train": train_state["n_train"],
        "n_val": train_state["n_val"],
        "seed": train_manifest["seed"],
    }
    if test_manifest is not None:
        dataset.update(
            test_fingerprint=test_manifest["fingerprint"],
            n_test=test_manifest["n_curves"],
            test_seed=test_manifest["seed"],
        )
    training = {k: train_state[k] for k in ("config", "epochs_done", "train_seconds", "n_params") if k in train_state}
    history = train_state.get("history", {})
    if history:
        training["final_loss"] = history["loss"][-1]
        training["best_val_loss"] = min(history["val_loss"])
    import keras

    training["keras"] = keras.__version__
    training["backend"] = keras.backend.backend()
    card = ModelCard(
        model_id=model_id,
        version=version,
        code_version=code_version(),
        material=str(train_manifest["material"]),
        hkl=tuple(train_manifest["hkl"]),
        wavelength_angstrom=float(train_manifest["wavelength_angstrom"]),
        d_spacing_angstrom=float(refl.d_spacing_angstrom),
        grid=ModelGrid(**train_manifest["grid"]),
        labels=scaling,
        n_slices=preset.n_slices,
        dw_mode=preset.dw_mode,
        preset=preset.to_dict(),
        dataset=dataset,
        training=training,
        metrics=metrics or {},
        head=dict(head or {}),
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return save_bundle(out, model, card)
