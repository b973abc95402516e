"""Training and test sets: simulated curves on the model grid, in resumable HDF5 shards.

Layout of a dataset directory (one per split)::

    <out>/manifest.json          preset, seed, split, material, reflection, grid, code version,
                                 shard size, counts, per-shard sha256 (rewritten after each shard)
    <out>/shard-00000.h5         x (n, n_grid) float32, labels (n, n_labels) float64,
                                 params/<name> (n,) every drawn parameter

Shard ``k`` of split ``s`` is drawn from ``SeedSequence(seed, spawn_key=(s, k))``, so the data
depend only on (preset, seed, split, shard index), not on the number of workers or on
interruptions: a rerun skips finished shards. The test split (``split=1``) uses its own seed
stream and is never read by training.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.presets import Preset
from xrd_strain_plugin.inference.bundle import sha256_of
from training.sampling import Draw, draw_parameters

__all__ = ["DatasetSpec", "generate", "simulate_batch", "shard_seed", "SPLITS"]

SPLITS = {"train": 0, "test": 1}
MANIFEST = "manifest.json"
# Curves sharing one simulated angle axis (sorted by scan width, so little is wasted).
_SUB_BATCH = 16
# Redraws of scale/background before a profile whose dynamic range never fits is rejected.
_COUNT_TRIES = 20
# Relative sd of the multiplicative noise of preset option noise="poisson_multiplicative".
_EXTRA_NOISE = 0.05


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """What a dataset directory holds.

    Attributes
    ----------
    preset : Preset
    seed : int
    split : str
        ``"train"`` or ``"test"``.
    n_curves : int
        Accepted curves wanted.
    shard_size : int
        Curves per shard.
    material : str
    hkl : tuple of int
    wavelength_angstrom : float
    grid_strain : tuple of float
        ``(strain_min, strain_max)`` of the model grid (plain fractions); 1001 points.
    """

    preset: Preset
    seed: int
    split: str = "train"
    n_curves: int = 10_000
    shard_size: int = 1000
    material: str = "YSZ"
    hkl: tuple[int, int, int] = (4, 0, 0)
    wavelength_angstrom: float = 1.5406
    grid_strain: tuple[float, float] = (-0.01, 0.10)
    n_grid: int = 1001

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {self.split!r}")
        if self.n_curves < 1 or self.shard_size < 1:
            raise ValueError("n_curves and shard_size must be positive")

    @property
    def n_shards(self) -> int:
        return -(-self.n_curves // self.shard_size)

    def shard_count(self, index: int) -> int:
        """Curves in shard ``index`` (the last one may be short)."""
        return min(self.shard_size, self.n_curves - index * self.shard_size)

    def identity(self) -> dict:
        """Fields that must match for a rerun to resume this dataset."""
        return {"preset": self.preset.to_dict(), "seed": self.seed, "split": self.split,
                "shard_size": self.shard_size, "material": self.material, "hkl": list(self.hkl),
                "wavelength_angstrom": self.wavelength_angstrom,
                "grid": {"strain_min": self.grid_strain[0], "strain_max": self.grid_strain[1],
                         "n_points": self.n_grid}}


def shard_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """Seed sequence of one shard: independent of workers and of resumption."""
    return np.random.SeedSequence(seed, spawn_key=(SPLITS[split], index))


def _grid(spec: DatasetSpec):
    from xrd_strain_plugin.physics.qspace import ModelGrid

    return ModelGrid(strain_min=spec.grid_strain[0], strain_max=spec.grid_strain[1],
                     n_points=spec.n_grid)


def simulate_batch(draw: Draw, preset: Preset, reflection, grid, rng: np.random.Generator):
    """Simulate the curves of a draw, add counts, put them on the model grid.

    Returns
    -------
    x : numpy.ndarray, shape (n, grid.n_points), float32
        Model input (log10 of the normalised counts), or NaN rows for rejected samples.
    dynamic_range : numpy.ndarray, shape (n,)
        ``log10(I_max / I_min)`` (smallest positive count), NaN where rejected.
    log10_scale, log10_background : numpy.ndarray, shape (n,)
        The accepted exponents (redrawn until the dynamic range fits the preset).
    """
    from xrd_strain_plugin.inference.labels import decode_labels
    from xrd_strain_plugin.physics import instrument
    from xrd_strain_plugin.physics.qspace import q_to_two_theta_deg, to_model_input

    n = draw.thickness_nm.size
    q_b = reflection.q_bragg_inv_angstrom
    lam = reflection.wavelength_angstrom
    step = preset.step_deg
    # Scan limits snapped onto one global step grid, so curves of a sub-batch share an axis.
    start = np.floor(q_to_two_theta_deg(q_b / (1 + draw.strain_high), lam) / step).astype(int)
    stop = np.ceil(q_to_two_theta_deg(q_b / (1 + draw.strain_low), lam) / step).astype(int)
    labels_w = np.column_stack([draw.weights_percent, draw.dw_min, draw.thickness_nm,
                                draw.resolution_fwhm_deg, np.zeros(n)])
    profile = decode_labels(labels_w, n_weights=preset.n_weights, n_slices=preset.n_slices,
                            clip=False)
    x = np.full((n, grid.n_points), np.nan, dtype=np.float32)
    dyn = np.full(n, np.nan)
    log_scale, log_bg = draw.log10_scale.copy(), draw.log10_background.copy()
    # Group curves of similar cost: simulate_scan uses one fine grid per sub-batch, as long as
    # its longest member needs (narrow resolution and thick layers need fine steps).
    fine = np.array([min(step, instrument.fine_grid_step_deg(h, t, reflection)) for h, t in
                     zip(draw.resolution_fwhm_deg, draw.thickness_nm)])
    order = np.argsort(((stop - start) * step + 8 * draw.resolution_fwhm_deg) / fine)
    for chunk in np.array_split(order, max(1, -(-n // _SUB_BATCH))):
        lo, hi = start[chunk].min(), stop[chunk].max()
        two_theta = np.arange(lo, hi + 1) * step
        refl = instrument.simulate_scan(
            two_theta, profile.strain[chunk], profile.debye_waller[chunk],
            draw.thickness_nm[chunk], reflection,
            resolution_fwhm_deg=draw.resolution_fwhm_deg[chunk])
        for row, i in enumerate(chunk):
            sl = slice(start[i] - lo, stop[i] - lo + 1)
            angles, r = two_theta[sl], refl[row, sl]
            for attempt in range(_COUNT_TRIES):
                if attempt:
                    log_scale[i] = rng.uniform(*preset.log10_scale)
                    log_bg[i] = rng.uniform(*preset.log10_background)
                counts = _counts(r, 10.0 ** log_scale[i], 10.0 ** log_bg[i], preset, rng)
                positive = counts[counts > 0]
                if positive.size < 2:
                    continue
                dr = float(np.log10(positive.max() / positive.min()))
                if preset.dynamic_range[0] <= dr <= preset.dynamic_range[1]:
                    x[i] = to_model_input(angles, counts, wavelength_angstrom=lam,
                                          q_bragg_inv_angstrom=q_b, grid=grid)[0]
                    dyn[i] = dr
                    break
    return x, dyn, log_scale, log_bg


def _counts(refl, scale, background, preset: Preset, rng):
    from xrd_strain_plugin.physics import instrument

    if preset.background == "sloped":
        # Linear in angle, up to a factor 3 between the scan ends (either direction).
        background = background * np.linspace(1.0, rng.uniform(1 / 3, 3), refl.size)[None, :]
    extra = _EXTRA_NOISE if preset.noise == "poisson_multiplicative" else 0.0
    counts = instrument.apply_counts(refl[None, :], scale=scale, background=background, rng=rng,
                                     noise="poisson", extra_noise=extra)
    return np.asarray(counts, dtype=float).reshape(-1)


def make_shard(spec: DatasetSpec, index: int, path: Path) -> dict:
    """Generate shard ``index`` of ``spec`` into ``path`` (atomically) and describe it."""
    import h5py

    from xrd_strain_plugin.physics.materials import reflection as make_reflection

    t0 = time.perf_counter()
    preset = spec.preset
    rng = np.random.default_rng(shard_seed(spec.seed, spec.split, index))
    refl = make_reflection(spec.material, spec.hkl, spec.wavelength_angstrom)
    grid = _grid(spec)
    want = spec.shard_count(index)
    parts, drawn = [], 0
    have = 0
    while have < want:
        n = max(8, want - have)  # scale/background redraws make rejections rare
        draw = draw_parameters(rng, preset, n)
        x, dyn, ls, lb = simulate_batch(draw, preset, refl, grid, rng)
        drawn += n
        ok = np.flatnonzero(np.isfinite(dyn))[: want - have]
        parts.append((draw, x, dyn, ls, lb, ok))
        have += ok.size
        if drawn > 50 * want:
            raise RuntimeError(f"preset {preset.name}: almost no curve has a dynamic range in "
                               f"{preset.dynamic_range}")
    x = np.concatenate([p[1][p[5]] for p in parts])
    params = {
        "strain_max_percent": np.concatenate([p[0].strain_max_percent[p[5]] for p in parts]),
        "dw_min": np.concatenate([p[0].dw_min[p[5]] for p in parts]),
        "thickness_nm": np.concatenate([p[0].thickness_nm[p[5]] for p in parts]),
        "resolution_fwhm_deg": np.concatenate([p[0].resolution_fwhm_deg[p[5]] for p in parts]),
        "dynamic_range": np.concatenate([p[2][p[5]] for p in parts]),
        "log10_scale": np.concatenate([p[3][p[5]] for p in parts]),
        "log10_background": np.concatenate([p[4][p[5]] for p in parts]),
        "strain_low": np.concatenate([p[0].strain_low[p[5]] for p in parts]),
        "strain_high": np.concatenate([p[0].strain_high[p[5]] for p in parts]),
    }
    weights = np.concatenate([p[0].weights_percent[p[5]] for p in parts])
    labels = np.column_stack([weights, params["dw_min"], params["thickness_nm"],
                              params["resolution_fwhm_deg"], params["dynamic_range"]])
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("x", data=x, dtype="float32", chunks=(min(256, want), x.shape[1]))
        f.create_dataset("labels", data=labels)
        for key, value in params.items():
            f.create_dataset(f"params/{key}", data=value)
        f.attrs["index"] = index
        f.attrs["label_names"] = list(preset.label_names)
    os.replace(tmp, path)
    return {"file": path.name, "n": int(want), "drawn": int(drawn),
            "sha256": sha256_of(path), "seconds": round(time.perf_counter() - t0, 2)}


def _shard_job(args):
    spec, index, path = args
    return index, make_shard(spec, index, Path(path))


def generate(spec: DatasetSpec, out, *, workers: int | None = None, progress: bool = True) -> dict:
    """Generate (or resume) a dataset directory.

    Parameters
    ----------
    spec : DatasetSpec
    out : str or Path
        Dataset directory; created if missing.
    workers : int, optional
        Worker processes (default: all cores).
    progress : bool
        Show a tqdm bar (counts curves).

    Returns
    -------
    dict
        The final manifest.

    Raises
    ------
    ValueError
        If ``out`` holds a dataset with a different preset, seed, split, grid or shard size.
    """
    from tqdm import tqdm

    from xrd_strain_plugin import __version__

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = {**spec.identity(), "code_version": __version__, "shards": {},
                "label_names": list(spec.preset.label_names)}
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        mismatch = [k for k, v in spec.identity().items() if old.get(k) != v]
        if mismatch:
            raise ValueError(f"{out} holds a different dataset (differs in {mismatch}); "
                             f"choose another --out")
        manifest["shards"] = {k: v for k, v in old.get("shards", {}).items()
                              if (out / v["file"]).is_file()}
    todo = [i for i in range(spec.n_shards) if str(i) not in manifest["shards"]
            or manifest["shards"][str(i)]["n"] != spec.shard_count(i)]
    done = sum(spec.shard_count(i) for i in range(spec.n_shards)) - sum(
        spec.shard_count(i) for i in todo)
    bar = tqdm(total=spec.n_curves, initial=done, unit="curve", disable=not progress,
               desc=f"{spec.preset.name} {spec.split}")
    jobs = [(spec, i, str(out / f"shard-{i:05d}.h5")) for i in todo]
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()

    def record(index, info):
        manifest["shards"][str(index)] = info
        _finish(manifest, spec)
        _write_json(manifest_path, manifest)
        bar.update(info["n"])

    if workers == 1:
        for job in jobs:
            record(*_shard_job(job))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for index, info in pool.map(_shard_job, jobs):
                record(index, info)
    bar.close()
    _finish(manifest, spec)
    manifest["wall_seconds_last_run"] = round(time.perf_counter() - t0, 1)
    _write_json(manifest_path, manifest)
    return manifest


def _finish(manifest: dict, spec: DatasetSpec) -> None:
    shards = manifest["shards"]
    manifest["n_curves"] = sum(s["n"] for s in shards.values())
    manifest["n_drawn"] = sum(s["drawn"] for s in shards.values())
    manifest["complete"] = manifest["n_curves"] == spec.n_curves
    digest = hashlib.sha256(json.dumps(spec.identity(), sort_keys=True).encode())
    for key in sorted(shards, key=int):
        digest.update(shards[key]["sha256"].encode())
    manifest["fingerprint"] = digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
