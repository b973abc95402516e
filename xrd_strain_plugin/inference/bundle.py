"""Model bundles: a directory holding ``model.keras`` and ``card.json``, loaded and checked together.

The card says everything needed to use the weights correctly (input grid, label names and
scaling, material, reflection, wavelength, preset, dataset fingerprint, code version, measured
metrics) and the sha256 of ``model.keras``. :func:`load_bundle` refuses a bundle whose weights do
not match the hash, whose card is unreadable or whose network does not fit its card, with a
message saying which; :meth:`ModelCard.check_reflection` refuses data the model was not trained for.
Keras is imported only when weights are actually loaded or saved.

A bundle may also carry ``network.npz``, the same network for the pure-numpy runtime
(:mod:`xrd_strain_plugin.inference.runtime`; its sha256 and its measured agreement with Keras
are in the card's ``runtime``). :func:`load_bundle` uses it when present (no TensorFlow import:
the first answer of ``xrd-strain invert`` comes seconds sooner), after checking both hashes;
``runtime="keras"`` or ``XRD_STRAIN_RUNTIME=keras`` loads the Keras model instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from xrd_strain_plugin.inference.labels import LabelScaling
from xrd_strain_plugin.physics.qspace import ModelGrid

__all__ = [
    "BundleError",
    "BundleMismatchError",
    "ModelBundle",
    "ModelCard",
    "load_bundle",
    "read_card",
    "save_bundle",
    "sha256_of",
    "add_numpy_runtime",
    "CARD_FORMAT",
    "RUNTIME_ENV",
]

CARD_FORMAT = 1
MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
#: Environment variable choosing the runtime of :func:`load_bundle` ("auto", "numpy", "keras").
RUNTIME_ENV = "XRD_STRAIN_RUNTIME"
RUNTIMES = ("auto", "numpy", "keras")
#: Relative tolerance on d-spacing and wavelength when matching data to a model.
RELATIVE_TOLERANCE = 2e-3


class BundleError(ValueError):
    """A bundle that cannot be used: missing files, bad card, corrupt or inconsistent weights."""


class BundleMismatchError(BundleError):
    """Data (material, reflection, wavelength) that the model was not trained for."""


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """Everything that travels with the weights (stored as ``card.json``).

    Attributes
    ----------
    model_id : str
        Stable name, e.g. ``"ysz-400-cuka1-cnn2"``.
    version : str
        Version of this model (bumped on retraining).
    code_version : str
        ``xrd_strain_plugin.__version__`` (and git commit when known) that trained it.
    material : str
        Material name or CIF stem the training set was simulated for.
    hkl : tuple of int
        Reflection.
    wavelength_angstrom : float
        X-ray wavelength, angstrom.
    d_spacing_angstrom : float
        Substrate d-spacing of the reflection, angstrom (compatibility check).
    grid : ModelGrid
        The strain axis the network reads.
    labels : LabelScaling
        Label names and min-max scaling.
    n_slices : int
        Lamellae used to turn labels into profiles.
    dw_mode : str
        ``"coupled"`` (DW follows strain) or ``"decoupled"``.
    preset : dict
        ``xrd_strain_training.presets.Preset.to_dict()`` of the training set.
    dataset : dict
        Fingerprint (sha256 of the manifests), sizes, seeds.
    training : dict
        Epochs, batch size, optimiser, wall time.
    metrics : dict
        Measured Table-2 figures on the held-out test set.
    weights_sha256 : str
        sha256 of ``model.keras``; filled in by :func:`save_bundle`.
    runtime : dict
        ``{"numpy": {"file", "sha256", "max_abs_diff_vs_keras"}}`` when the bundle carries the
        numpy network (:mod:`xrd_strain_plugin.inference.runtime`); empty otherwise.
    head : dict
        What the network's outputs mean (issue 14): ``targets`` ("paper": the 14 labels of
        ``labels`` min-max scaled; "relative": weights / e_max, ln e_max, ln DW_min, ln t, ln H,
        DR) and ``n_hypotheses`` K (the output is then K blocks of targets plus K logits,
        :func:`xrd_strain_plugin.inference.labels.labels_from_output`). Empty: the paper's head.
    files : dict
        Other files of the bundle directory (e.g. a proposal library) and their sha256, as found
        by :func:`save_bundle`; they travel with the bundle and are not otherwise checked.
    created_utc : str
        ISO time of creation.
    format : int
        Card format version.
    """

    model_id: str
    version: str
    code_version: str
    material: str
    hkl: tuple[int, int, int]
    wavelength_angstrom: float
    d_spacing_angstrom: float
    grid: ModelGrid
    labels: LabelScaling
    n_slices: int
    dw_mode: str = "coupled"
    preset: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    weights_sha256: str = ""
    runtime: dict = field(default_factory=dict)
    head: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    created_utc: str = ""
    format: int = CARD_FORMAT

    @property
    def n_weights(self) -> int:
        """Number of strain weights among the labels."""
        return sum(name.startswith("w") for name in self.labels.names)

    @property
    def n_hypotheses(self) -> int:
        """Alternative answers the network gives per curve (1: one answer)."""
        return int((self.head or {}).get("n_hypotheses", 1))

    @property
    def n_outputs(self) -> int:
        """Width of the network's output layer."""
        from xrd_strain_plugin.inference.labels import head_outputs

        return head_outputs(len(self.labels.names), self.n_hypotheses)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hkl"] = list(self.hkl)
        out["grid"] = {
            "strain_min": self.grid.strain_min,
            "strain_max": self.grid.strain_max,
            "n_points": self.grid.n_points,
        }
        out["labels"] = self.labels.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        """Parse a card; raises :class:`BundleError` naming a missing or bad field."""
        try:
            data = dict(data)
            if data.get("format") != CARD_FORMAT:
                raise BundleError(
                    f"card format {data.get('format')!r} is not supported (this code reads format {CARD_FORMAT})"
                )
            data["hkl"] = tuple(int(i) for i in data["hkl"])
            data["grid"] = ModelGrid(**data["grid"])
            data["labels"] = LabelScaling.from_dict(data["labels"])
            return cls(**data)
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"card.json is invalid: {type(exc).__name__}: {exc}") from exc

    def check_reflection(self, reflection) -> None:
        """Refuse data the model was not trained for.

        Parameters
        ----------
        reflection : xrd_strain_plugin.physics.materials.Reflection
            Reflection of the data to invert.

        Raises
        ------
        BundleMismatchError
            If the wavelength or the d-spacing differ by more than 0.2 %, or hkl differs.
        """
        problems = []
        if not math.isclose(reflection.wavelength_angstrom, self.wavelength_angstrom, rel_tol=RELATIVE_TOLERANCE):
            problems.append(f"wavelength {reflection.wavelength_angstrom:g} A (model: {self.wavelength_angstrom:g} A)")
        if not math.isclose(reflection.d_spacing_angstrom, self.d_spacing_angstrom, rel_tol=RELATIVE_TOLERANCE):
            problems.append(
                f"d-spacing {reflection.d_spacing_angstrom:.5f} A of "
                f"{reflection.material} {tuple(reflection.hkl)} "
                f"(model: {self.d_spacing_angstrom:.5f} A, {self.material} "
                f"{self.hkl})"
            )
        elif tuple(reflection.hkl) != tuple(self.hkl):
            problems.append(f"reflection {tuple(reflection.hkl)} (model: {self.hkl})")
        if problems:
            raise BundleMismatchError(
                f"model {self.model_id} was trained for {self.material} {self.hkl} at "
                f"{self.wavelength_angstrom:g} A; the data differ: " + "; ".join(problems)
            )


@dataclass(frozen=True, kw_only=True)
class ModelBundle:
    """A loaded bundle: its directory, card and network.

    ``model`` is a Keras model (``runtime == "keras"``) or a
    :class:`~xrd_strain_plugin.inference.runtime.NumpyNetwork` (``runtime == "numpy"``); both
    map ``(n_batch, n_points, 1)`` float32 to the scaled labels.
    """

    path: Path
    card: ModelCard
    model: Any
    runtime: str = "keras"


def sha256_of(path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(path, model, card: ModelCard) -> ModelCard:
    """Write ``model.keras`` and ``card.json`` (with the weights' sha256) into directory ``path``.

    Returns
    -------
    ModelCard
        The card as written (``weights_sha256`` filled in).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _check_model_against_card(model, card)
    model_path = path / MODEL_FILE
    model.save(model_path)
    card = replace(
        card, weights_sha256=sha256_of(model_path), runtime=_export_numpy_runtime(model, path, card.grid.n_points)
    )
    card = replace(card, files=_extra_files(path, card))
    tmp = path / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n")
    tmp.replace(path / CARD_FILE)
    return card


def _extra_files(path: Path, card: ModelCard) -> dict:
    """sha256 of the bundle directory's files other than the weights, the numpy network and
    the card (a proposal library, notes): kept and listed, never refused."""
    own = {MODEL_FILE, CARD_FILE, CARD_FILE + ".tmp"}
    own.update(str(e.get("file")) for e in (card.runtime or {}).values() if isinstance(e, dict))
    return {p.name: sha256_of(p) for p in sorted(path.iterdir()) if p.is_file() and p.name not in own}


def read_card(path) -> ModelCard:
    """Read and parse ``card.json`` of bundle directory ``path`` (no Keras needed)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} is not a directory")
    card_path = path / CARD_FILE
    if not card_path.is_file():
        raise BundleError(f"model bundle {path} has no {CARD_FILE}")
    try:
        data = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{card_path} is not valid JSON: {exc}") from exc
    return ModelCard.from_dict(data)


def _export_numpy_runtime(model, path: Path, n_points: int) -> dict:
    """Write ``network.npz`` beside the weights and check it against Keras; ``{}`` if the
    network has a layer the numpy runtime lacks."""
    import numpy as np

    from xrd_strain_plugin.inference import runtime

    target = path / runtime.NETWORK_FILE
    try:
        runtime.export_network(model, target)
    except runtime.UnsupportedLayer:
        target.unlink(missing_ok=True)
        return {}
    x = np.random.default_rng(0).normal(-2.0, 1.0, size=(16, n_points, 1)).astype(np.float32)
    diff = runtime.check_against_keras(model, runtime.NumpyNetwork.load(target), x)
    return {"numpy": {"file": runtime.NETWORK_FILE, "sha256": sha256_of(target), "max_abs_diff_vs_keras": diff}}


def add_numpy_runtime(path) -> ModelCard:
    """Give an existing bundle the numpy network (weights unchanged; the card gains ``runtime``).

    Loads the Keras model (checked against its hash), writes ``network.npz``, checks it against
    Keras and rewrites ``card.json`` atomically.
    """
    path = Path(path)
    bundle = load_bundle(path, runtime="keras")
    card = replace(bundle.card, runtime=_export_numpy_runtime(bundle.model, path, bundle.card.grid.n_points))
    tmp = path / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n")
    tmp.replace(path / CARD_FILE)
    return card


def load_bundle(path, *, verify: bool = True, runtime: str | None = None) -> ModelBundle:
    """Load a bundle and check it.

    Parameters
    ----------
    path : str or Path
        Bundle directory.
    verify : bool
        Check the sha256 of ``model.keras`` (and of ``network.npz``) against the card (leave on;
        it costs ~10 ms).
    runtime : {"auto", "numpy", "keras"}, optional
        ``"auto"`` (default, or ``$XRD_STRAIN_RUNTIME``): the numpy network when the bundle has
        one, else Keras. ``"numpy"`` refuses a bundle without it; ``"keras"`` always loads Keras.

    Raises
    ------
    BundleError
        Missing directory or files, invalid card, hash mismatch (corrupt or modified weights),
        weights Keras cannot read, or a network whose input/output shape contradicts the card.
    """
    path = Path(path)
    card = read_card(path)
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise BundleError(f"model bundle {path} has no {MODEL_FILE}")
    if verify:
        actual = sha256_of(model_path)
        if actual != card.weights_sha256:
            raise BundleError(
                f"{model_path} is corrupt or was modified: sha256 {actual[:12]}... does not match "
                f"the card's {card.weights_sha256[:12]}..."
            )
    runtime = runtime or os.environ.get(RUNTIME_ENV) or "auto"
    if runtime not in RUNTIMES:
        raise BundleError(f"runtime must be one of {RUNTIMES}, got {runtime!r} (from the argument or ${RUNTIME_ENV})")
    numpy_entry = card.runtime.get("numpy") if isinstance(card.runtime, dict) else None
    if runtime == "numpy" and not numpy_entry:
        raise BundleError(
            f"model bundle {path} has no numpy network (card.runtime.numpy); load it with runtime='keras'"
        )
    if runtime in ("auto", "numpy") and numpy_entry:
        return _load_numpy(path, card, numpy_entry, verify)
    import keras

    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # keras raises many types for unreadable archives
        raise BundleError(f"{model_path} cannot be read by Keras {keras.__version__}: {exc}") from exc
    _check_model_against_card(model, card)
    return ModelBundle(path=path, card=card, model=model)


def _load_numpy(path: Path, card: ModelCard, entry: dict, verify: bool) -> ModelBundle:
    from xrd_strain_plugin.inference.runtime import NumpyNetwork

    file = path / str(entry.get("file", ""))
    if not file.is_file():
        raise BundleError(f"model bundle {path} has no {entry.get('file')!r} (named by its card)")
    if verify:
        actual = sha256_of(file)
        if actual != entry.get("sha256"):
            raise BundleError(
                f"{file} is corrupt or was modified: sha256 {actual[:12]}... does "
                f"not match the card's {str(entry.get('sha256'))[:12]}..."
            )
    try:
        network = NumpyNetwork.load(file)
    except (ValueError, KeyError, OSError) as exc:
        raise BundleError(f"{file} cannot be read: {exc}") from exc
    _check_model_against_card(network, card)
    return ModelBundle(path=path, card=card, model=network, runtime="numpy")


def _check_model_against_card(model, card: ModelCard) -> None:
    n_in = model.input_shape[1]
    n_out = model.output_shape[-1]
    if n_in != card.grid.n_points:
        raise BundleError(f"network input has {n_in} points but the card's grid has {card.grid.n_points}")
    if n_out != card.n_outputs:
        raise BundleError(
            f"network has {n_out} outputs but the card names "
            f"{len(card.labels.names)} labels x {card.n_hypotheses} hypotheses "
            f"({card.n_outputs} outputs)"
        )
