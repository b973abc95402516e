"""Reading a generated dataset directory (see :mod:`xrd_strain_training.generate` for the layout)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load_dataset"]

_IDENTITY = ("preset", "seed", "split", "shard_size", "material", "hkl", "wavelength_angstrom", "grid")


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """Curves and labels of one split, in shard order.

    Attributes
    ----------
    x : numpy.ndarray, shape (n, n_grid), float32
        Model input.
    labels : numpy.ndarray, shape (n, n_labels)
        Physical labels (weights in percent, dw_min, t in nm, H in deg, DR).
    params : dict of numpy.ndarray, each shape (n,)
        Every drawn parameter (e_max, scale, background, scan limits ...).
    manifest : dict
        The dataset's manifest.
    fingerprint : str
        sha256 over the dataset's identity, the shards read and the number of curves kept: it
        names exactly these curves, even while the directory grows.
    """

    x: np.ndarray
    labels: np.ndarray
    params: dict
    manifest: dict
    fingerprint: str = ""

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["label_names"])


def load_dataset(path, *, max_curves: int | None = None) -> Dataset:
    """Load the shards of a dataset directory (whole shards, in index order).

    Parameters
    ----------
    path : str or Path
        Directory with ``manifest.json`` and ``shard-*.h5``.
    max_curves : int, optional
        Stop after this many curves (the first shards: nested subsets for set-size studies).

    Raises
    ------
    FileNotFoundError
        If there is no manifest or no finished shard.
    """
    import h5py

    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path} is not a dataset directory (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    xs, ys, ps, total = [], [], [], 0
    identity = {k: manifest.get(k) for k in _IDENTITY}
    if "draws_per_profile" in manifest:  # absent from v1 manifests (their fingerprints stay)
        identity["draws_per_profile"] = manifest["draws_per_profile"]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    for key in sorted(manifest["shards"], key=int):
        if max_curves is not None and total >= max_curves:
            break
        digest.update(manifest["shards"][key]["sha256"].encode())
        with h5py.File(path / manifest["shards"][key]["file"], "r") as f:
            xs.append(f["x"][:])
            ys.append(f["labels"][:])
            ps.append({k: f["params"][k][:] for k in f["params"]})
        total += xs[-1].shape[0]
    if not xs:
        raise FileNotFoundError(f"{path} has no finished shard yet")
    x, y = np.concatenate(xs), np.concatenate(ys)
    params = {k: np.concatenate([p[k] for p in ps]) for k in ps[0]}
    if max_curves is not None:
        x, y = x[:max_curves], y[:max_curves]
        params = {k: v[:max_curves] for k, v in params.items()}
    digest.update(str(x.shape[0]).encode())
    return Dataset(x=x, labels=y, params=params, manifest=manifest, fingerprint=digest.hexdigest())
