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

from xrd_strain_plugin.inference.bundle import sha256_of
from xrd_strain_training.presets import Preset
from xrd_strain_training.sampling import Draw, draw_parameters

__all__ = ["DatasetSpec", "generate", "simulate_batch", "per_curve_scans", "shared_scans", "shard_seed", "SPLITS"]

SPLITS = {"train": 0, "test": 1}
MANIFEST = "manifest.json"
# v1 layout: curves sharing one simulated angle axis (sorted by scan width).
_SUB_BATCH = 16
#: Fine-grid points (curves x angles) per recursion call: the complex arrays of the recursion then
#: stay in the CPU cache (measured on this CPU: 16 x 6 500 angles run 2.5x slower per point than
#: 4 x 6 500 or 16 x 2 048; BENCHMARKS.md).
CACHE_ELEMENTS = 32_768
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
    draws_per_profile : int
        Curves (resolution, scale, background, noise, scan window) drawn per simulated profile;
        they share one intrinsic reflectivity (:func:`shared_scans`). 1: every curve its own.
    layout : str
        ``"per_curve"`` (each curve on its own grid, cache-sized calls) or ``"grouped"`` (v1).
        Both give the same curves to float precision; ``layout`` is not part of the identity.
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
    draws_per_profile: int = 1
    layout: str = "per_curve"

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {self.split!r}")
        if self.n_curves < 1 or self.shard_size < 1:
            raise ValueError("n_curves and shard_size must be positive")
        if self.draws_per_profile < 1:
            raise ValueError("draws_per_profile must be >= 1")
        if self.layout not in ("per_curve", "grouped"):
            raise ValueError(f"layout must be 'per_curve' or 'grouped', got {self.layout!r}")

    @property
    def n_shards(self) -> int:
        return -(-self.n_curves // self.shard_size)

    def shard_count(self, index: int) -> int:
        """Curves in shard ``index`` (the last one may be short)."""
        return min(self.shard_size, self.n_curves - index * self.shard_size)

    def identity(self) -> dict:
        """Fields that must match for a rerun to resume this dataset."""
        out = {
            "preset": self.preset.to_dict(),
            "seed": self.seed,
            "split": self.split,
            "shard_size": self.shard_size,
            "material": self.material,
            "hkl": list(self.hkl),
            "wavelength_angstrom": self.wavelength_angstrom,
            "grid": {"strain_min": self.grid_strain[0], "strain_max": self.grid_strain[1], "n_points": self.n_grid},
        }
        if self.draws_per_profile != 1:  # left out at 1: v1 manifests still match
            out["draws_per_profile"] = self.draws_per_profile
        return out


def shard_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """Seed sequence of one shard: independent of workers and of resumption."""
    return np.random.SeedSequence(seed, spawn_key=(SPLITS[split], index))


def _grid(spec: DatasetSpec):
    from xrd_strain_plugin.physics.qspace import ModelGrid

    return ModelGrid(strain_min=spec.grid_strain[0], strain_max=spec.grid_strain[1], n_points=spec.n_grid)


def simulate_batch(
    draw: Draw,
    preset: Preset,
    reflection,
    grid,
    rng: np.random.Generator,
    *,
    draws_per_profile: int = 1,
    layout: str = "per_curve",
):
    """Simulate the curves of a draw, add counts, put them on the model grid.

    Parameters
    ----------
    draw : Draw
        With ``draws_per_profile = k > 1``, rows ``k j .. k j + k - 1`` must share one profile
        (:func:`xrd_strain_training.sampling.draw_parameters` with ``per_profile=k``).
    preset : Preset
    reflection : Reflection
    grid : ModelGrid
    rng : numpy.random.Generator
        Counting noise and scale/background redraws.
    draws_per_profile : int
        Curves sharing one intrinsic reflectivity (see :func:`shared_scans`).
    layout : {"per_curve", "grouped"}
        ``"per_curve"``: every curve on its own angle grid, in cache-sized calls
        (:func:`per_curve_scans`). ``"grouped"``: the v1 generator (sub-batches of 16 on one
        padded axis), kept to reproduce v1 datasets and for the side-by-side benchmark.

    Returns
    -------
    x : numpy.ndarray, shape (n, grid.n_points), float32
        Model input (log10 of the normalised counts), or NaN rows for rejected samples.
    dynamic_range : numpy.ndarray, shape (n,)
        ``log10(I_max / I_min)`` (smallest positive count), NaN where rejected.
    log10_scale, log10_background : numpy.ndarray, shape (n,)
        The accepted exponents (redrawn until the dynamic range fits the preset; paper-recipe
        samples keep theirs).
    """
    from xrd_strain_plugin.inference.labels import decode_labels

    n = draw.thickness_nm.size
    step = preset.step_deg
    start, stop = scan_limits(draw, reflection, step)
    labels_w = np.column_stack(
        [draw.weights_percent, draw.dw_min, draw.thickness_nm, draw.resolution_fwhm_deg, np.zeros(n)]
    )
    profile = decode_labels(labels_w, n_weights=preset.n_weights, n_slices=preset.n_slices, clip=False)
    curves = _intrinsic_curves(
        start, stop, step, profile, draw, reflection, preset, draws_per_profile=draws_per_profile, layout=layout
    )
    return _counts_on_grid(curves, start, stop, step, draw, preset, reflection, grid, rng)


def scan_limits(draw: Draw, reflection, step_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Each curve's scan as indices ``start .. stop`` on one global grid of 2-theta (``index * step_deg``).

    The scan runs from the peak of the most strained lamella (``draw.strain_high``: larger d, lower
    angle) to that of ``draw.strain_low``, widened outwards to the grid.
    """
    from xrd_strain_plugin.physics.qspace import q_to_two_theta_deg

    q_b, lam = reflection.q_bragg_inv_angstrom, reflection.wavelength_angstrom
    start = np.floor(q_to_two_theta_deg(q_b / (1 + draw.strain_high), lam) / step_deg + 1e-9).astype(int)
    stop = np.ceil(q_to_two_theta_deg(q_b / (1 + draw.strain_low), lam) / step_deg - 1e-9).astype(int)
    return start, stop


def _intrinsic_curves(start, stop, step, profile, draw, reflection, preset, *, draws_per_profile, layout):
    """The noise-free curves (reflectivity convolved with the resolution) of every scan, one array per curve."""
    kw = dict(shape=preset.resolution_shape, eta=preset.resolution_eta)
    if layout == "grouped":
        if draws_per_profile != 1:
            raise ValueError("layout='grouped' simulates every curve on its own: draws_per_profile=1")
        return _grouped_scans(start, stop, step, profile, draw, reflection, **kw)
    if layout != "per_curve":
        raise ValueError(f"layout must be 'per_curve' or 'grouped', got {layout!r}")
    args = (start, stop, step, profile.strain, profile.debye_waller, draw.thickness_nm, draw.resolution_fwhm_deg)
    if draws_per_profile == 1:
        return per_curve_scans(*args, reflection, **kw)
    return shared_scans(*args, reflection, draws_per_profile=draws_per_profile, **kw)


def _counts_on_grid(curves, start, stop, step, draw, preset, reflection, grid, rng):
    """Counts for every curve (scale and background redrawn until the dynamic range fits), on the model grid.

    Returns ``(x, dynamic_range, log10_scale, log10_background)`` as :func:`simulate_batch`.
    """
    from xrd_strain_plugin.physics.qspace import to_model_input

    n = draw.thickness_nm.size
    q_b, lam = reflection.q_bragg_inv_angstrom, reflection.wavelength_angstrom
    paper = draw.paper_recipe if draw.paper_recipe is not None else np.zeros(n, dtype=bool)
    x = np.full((n, grid.n_points), np.nan, dtype=np.float32)
    dyn = np.full(n, np.nan)
    log_scale, log_bg = draw.log10_scale.copy(), draw.log10_background.copy()
    for i in range(n):
        angles = np.arange(start[i], stop[i] + 1) * step
        r = curves[i]
        for attempt in range(_COUNT_TRIES):
            if attempt:
                if paper[i]:
                    break  # the published rule accepts any dynamic range
                log_scale[i] = rng.uniform(*preset.log10_scale)
                log_bg[i] = rng.uniform(*preset.log10_background)
            counts = _counts(r, 10.0 ** log_scale[i], 10.0 ** log_bg[i], preset, rng)
            positive = counts[counts > 0]
            if positive.size < 2:
                continue
            dr = float(np.log10(positive.max() / positive.min()))
            if paper[i] or preset.dynamic_range[0] <= dr <= preset.dynamic_range[1]:
                x[i] = to_model_input(angles, counts, wavelength_angstrom=lam, q_bragg_inv_angstrom=q_b, grid=grid)[0]
                dyn[i] = dr
                break
    return x, dyn, log_scale, log_bg


def _grouped_scans(start, stop, step, profile, draw, reflection, *, shape, eta):
    """v1: sub-batches of 16 curves (sorted by cost) on one axis padded to the union."""
    from xrd_strain_plugin.physics import instrument

    n = start.size
    fine = np.array(
        [
            min(step, instrument.fine_grid_step_deg(h, t, reflection))
            for h, t in zip(draw.resolution_fwhm_deg, draw.thickness_nm)
        ]
    )
    order = np.argsort(((stop - start) * step + 8 * draw.resolution_fwhm_deg) / fine)
    curves = [None] * n
    for chunk in np.array_split(order, max(1, -(-n // _SUB_BATCH))):
        lo, hi = start[chunk].min(), stop[chunk].max()
        two_theta = np.arange(lo, hi + 1) * step
        refl = instrument.simulate_scan(
            two_theta,
            profile.strain[chunk],
            profile.debye_waller[chunk],
            draw.thickness_nm[chunk],
            reflection,
            resolution_fwhm_deg=draw.resolution_fwhm_deg[chunk],
            shape=shape,
            eta=eta,
        )
        for row, i in enumerate(chunk):
            curves[i] = refl[row, start[i] - lo : stop[i] - lo + 1]
    return curves


def _sub_steps(step, fwhm, thickness, reflection):
    """Fine-grid points per scan step that resolve each curve (as simulate_scan chooses them)."""
    from xrd_strain_plugin.physics import instrument

    need = np.array(
        [instrument.fine_grid_step_deg(h, t, reflection) for h, t in zip(np.atleast_1d(fwhm), np.atleast_1d(thickness))]
    )
    return np.maximum(1, np.ceil(step / need - 1e-9)).astype(int)


def _cache_groups(sub, n_points, *, elements: int = CACHE_ELEMENTS):
    """Groups of rows with equal ``sub`` and similar ``n_points`` whose fine grids together hold
    about ``elements`` points (the recursion's arrays then stay in cache)."""
    order = np.lexsort((n_points, sub))
    groups, current = [], []
    for i in order:
        if current and (sub[i] != sub[current[0]] or (len(current) + 1) * n_points[i] * sub[i] > elements):
            groups.append(np.array(current))
            current = []
        current.append(i)
    if current:
        groups.append(np.array(current))
    return groups


def per_curve_scans(
    start,
    stop,
    step,
    strain,
    debye_waller,
    thickness_nm,
    fwhm_deg,
    reflection,
    *,
    shape="gaussian",
    eta=0.5,
    elements: int = CACHE_ELEMENTS,
):
    """Noise-free scans, each curve on its own angle grid (``start[i]..stop[i]`` times ``step``).

    Curves with the same fine-grid subdivision are simulated together in calls of about
    ``elements`` fine-grid points (so the recursion's arrays stay in the CPU cache), each row on
    its own window padded at the high-angle end to the group's longest.

    Returns
    -------
    list of numpy.ndarray
        Curve ``i`` at angles ``arange(start[i], stop[i] + 1) * step``.
    """
    from xrd_strain_plugin.physics import instrument

    n_points = stop - start + 1
    sub = _sub_steps(step, fwhm_deg, thickness_nm, reflection)
    curves = [None] * start.size
    for g in _cache_groups(sub, n_points, elements=elements):
        width = int(n_points[g].max())
        tt = (start[g][:, None] + np.arange(width)[None, :]) * step
        refl = instrument.simulate_scan(
            tt,
            strain[g],
            debye_waller[g],
            thickness_nm[g],
            reflection,
            resolution_fwhm_deg=fwhm_deg[g],
            shape=shape,
            eta=eta,
        )
        for row, i in enumerate(g):
            curves[i] = refl[row, : n_points[i]]
    return curves


def shared_scans(
    start,
    stop,
    step,
    strain,
    debye_waller,
    thickness_nm,
    fwhm_deg,
    reflection,
    *,
    draws_per_profile: int,
    shape="gaussian",
    eta=0.5,
    elements: int = CACHE_ELEMENTS,
):
    """Noise-free scans where each run of ``draws_per_profile`` rows shares one profile.

    The intrinsic reflectivity of a profile is computed once, over the union of its rows' scan
    windows, at the narrowest of their resolutions ``H_b`` and on the fine grid that resolution
    needs, with a Gaussian resolution; each row then gets the extra Gaussian blur
    ``sqrt(H**2 - H_b**2)`` (Gaussians compose exactly) and is read at its own scan angles. For a
    pseudo-Voigt, ``(1 - eta) G(H) + eta L(H)``, the Lorentzian part is ``eta L(H)`` applied to the
    base curve (off by the base's Gaussian blur, which only matters within a few H_b of a peak,
    where the ``eta = 0.001`` Lorentzian is negligible; its far tails are what it is there for). The profile's rows must be consecutive and share strain, DW and thickness.

    Returns
    -------
    list of numpy.ndarray
        Curve ``i`` at angles ``arange(start[i], stop[i] + 1) * step``.
    """
    from xrd_strain_plugin.physics import instrument

    n = start.size
    k = int(draws_per_profile)
    heads = np.arange(0, n, k)
    members = [np.arange(h, min(h + k, n)) for h in heads]
    h_base = np.array([fwhm_deg[m].min() for m in members])
    extra = [np.sqrt(np.maximum(fwhm_deg[m] ** 2 - hb**2, 0.0)) for m, hb in zip(members, h_base)]
    sub = _sub_steps(step, h_base, thickness_nm[heads], reflection)
    fine = step / sub
    # union window plus a margin for the extra blur (4 FWHM), in fine steps
    margin = np.array([int(np.ceil(4 * e.max() / f)) for e, f in zip(extra, fine)])
    lo = np.array([start[m].min() for m in members]) * sub - margin
    hi = np.array([stop[m].max() for m in members]) * sub + margin
    n_points = hi - lo + 1
    curves = [None] * n
    for g in _cache_groups(sub, n_points // sub, elements=elements):
        width = int(n_points[g].max())
        tt = (lo[g][:, None] + np.arange(width)[None, :]) * fine[g][:, None]
        refl = instrument.simulate_scan(
            tt,
            strain[heads[g]],
            debye_waller[heads[g]],
            thickness_nm[heads[g]],
            reflection,
            resolution_fwhm_deg=h_base[g],
            shape="gaussian",
        )
        for row, j in enumerate(g):
            base = refl[row, : n_points[j]]
            for i, e in zip(members[j], extra[j]):
                curve = _gaussian_blur(base, e / fine[j])
                if shape == "pseudo-voigt" and eta > 0:
                    curve = (1 - eta) * curve + eta * _lorentz_blur(base, fwhm_deg[i] / fine[j])
                idx = np.arange(start[i], stop[i] + 1) * sub[j] - lo[j]
                curves[i] = curve[idx]
    return curves


def _gaussian_blur(values, fwhm_points):
    """Convolve with a unit-area Gaussian of FWHM ``fwhm_points`` samples (edges renormalised)."""
    if fwhm_points < 0.5:
        return values
    sigma = fwhm_points / (2 * np.sqrt(2 * np.log(2)))
    half = int(np.ceil(4 * fwhm_points))  # as simulate_scan: 4 FWHM (the substrate peak is bright)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    return _convolve(values, kernel)


def _lorentz_blur(values, fwhm_points):
    """Convolve with a Lorentzian of FWHM ``fwhm_points`` samples over the whole grid."""
    half = values.size - 1
    x = np.arange(-half, half + 1) / fwhm_points
    return _convolve(values, 1.0 / (1.0 + 4.0 * x * x))


def _convolve(values, kernel):
    """``values * kernel`` (kernel centred, odd length), renormalised where it leaves the grid."""
    from scipy.signal import fftconvolve

    kernel = kernel / kernel.sum()
    out = fftconvolve(values, kernel, mode="same")
    norm = fftconvolve(np.ones_like(values), kernel, mode="same")
    return out / norm


def _counts(refl, scale, background, preset: Preset, rng):
    from xrd_strain_plugin.physics import instrument

    if preset.background == "sloped":
        # Linear in angle, up to a factor 3 between the scan ends (either direction).
        background = background * np.linspace(1.0, rng.uniform(1 / 3, 3), refl.size)[None, :]
    extra = _EXTRA_NOISE if preset.noise == "poisson_multiplicative" else 0.0
    counts = instrument.apply_counts(
        refl[None, :], scale=scale, background=background, rng=rng, noise="poisson", extra_noise=extra
    )
    return np.asarray(counts, dtype=float).reshape(-1)


def make_shard(spec: DatasetSpec, index: int, path: Path) -> dict:
    """Generate shard ``index`` of ``spec`` into ``path`` (atomically) and describe it."""
    import h5py

    from xrd_strain_plugin.reflection_cache import cached_reflection

    t0 = time.perf_counter()
    preset = spec.preset
    rng = np.random.default_rng(shard_seed(spec.seed, spec.split, index))
    refl = cached_reflection(spec.material, spec.hkl, spec.wavelength_angstrom)
    grid = _grid(spec)
    want = spec.shard_count(index)
    parts, drawn = [], 0
    have = 0
    while have < want:
        k = spec.draws_per_profile
        n = -(-max(8, want - have) // k) * k  # scale/background redraws make rejections rare
        draw = draw_parameters(rng, preset, n, two_theta_bragg_deg=refl.two_theta_bragg_deg, per_profile=k)
        x, dyn, ls, lb = simulate_batch(draw, preset, refl, grid, rng, draws_per_profile=k, layout=spec.layout)
        drawn += n
        ok = np.flatnonzero(np.isfinite(dyn))[: want - have]
        parts.append((draw, x, dyn, ls, lb, ok))
        have += ok.size
        if drawn > 50 * want:
            raise RuntimeError(f"preset {preset.name}: almost no curve has a dynamic range in {preset.dynamic_range}")
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
        "paper_recipe": np.concatenate(
            [
                (p[0].paper_recipe if p[0].paper_recipe is not None else np.zeros(p[0].thickness_nm.size, dtype=bool))[
                    p[5]
                ]
                for p in parts
            ]
        ).astype(np.int8),
    }
    weights = np.concatenate([p[0].weights_percent[p[5]] for p in parts])
    labels = np.column_stack(
        [weights, params["dw_min"], params["thickness_nm"], params["resolution_fwhm_deg"], params["dynamic_range"]]
    )
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("x", data=x, dtype="float32", chunks=(min(256, want), x.shape[1]))
        # The last chunk of x waits in HDF5's chunk cache until the dataset is closed, which is when
        # its Dataset object is collected: at once, unless something still holds it (a sampling
        # profiler's snapshot of this frame, as Dask workers take every 10 ms). Written later, it
        # lands after the other datasets: the same arrays in a file with other bytes and another
        # sha256 (the manifest's fingerprint). Flushing here places it now, whoever holds the object.
        f.flush()
        f.create_dataset("labels", data=labels)
        for key, value in params.items():
            f.create_dataset(f"params/{key}", data=value)
        f.attrs["index"] = index
        f.attrs["label_names"] = list(preset.label_names)
    os.replace(tmp, path)
    return {
        "file": path.name,
        "n": int(want),
        "drawn": int(drawn),
        "sha256": sha256_of(path),
        "seconds": round(time.perf_counter() - t0, 2),
    }


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
    manifest = {
        **spec.identity(),
        "code_version": __version__,
        "shards": {},
        "label_names": list(spec.preset.label_names),
    }
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        mismatch = [k for k, v in spec.identity().items() if old.get(k) != v]
        if mismatch:
            raise ValueError(f"{out} holds a different dataset (differs in {mismatch}); choose another --out")
        manifest["shards"] = {k: v for k, v in old.get("shards", {}).items() if (out / v["file"]).is_file()}
    todo = [
        i
        for i in range(spec.n_shards)
        if str(i) not in manifest["shards"] or manifest["shards"][str(i)]["n"] != spec.shard_count(i)
    ]
    done = sum(spec.shard_count(i) for i in range(spec.n_shards)) - sum(spec.shard_count(i) for i in todo)
    bar = tqdm(
        total=spec.n_curves, initial=done, unit="curve", disable=not progress, desc=f"{spec.preset.name} {spec.split}"
    )
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
