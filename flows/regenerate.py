"""``regenerate_dataset``: a training set (and the fixed held-out test set) as parallel shard tasks.

A thin wrapper over :mod:`xrd_strain_training.generate`: each shard is one task that calls
:func:`xrd_strain_training.generate.make_shard` (which writes the shard atomically) and returns its path and
description, never arrays; the flow then writes the manifest. Shard ``k`` depends only on
(preset, seed, split, k), so the shards are the same whichever task runner ran them, and a rerun
skips finished shards (resumable). Tasks per run = shards (a 10^6-curve set in shards of 1000 is
1000 tasks), well inside what a Prefect/Dask deployment handles.

Runs on this machine by default (a process pool, one worker per core); given
``scheduler_address`` it runs on a Dask cluster through prefect-dask's ``DaskTaskRunner``. The
runner is chosen per run: each split is a subflow started with that runner, so the choice also
holds for a served deployment (whose runs load the flow afresh).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from prefect import flow, get_run_logger, task

from xrd_strain_flows.notify import FAILURE_HOOKS

__all__ = [
    "regenerate_dataset",
    "regenerate",
    "generate_split",
    "dataset_dir",
    "heldout_dir",
    "task_runner",
    "make_shard_task",
]


def dataset_dir(data_root, *, preset: str, material: str, hkl, wavelength_angstrom: float, seed: int) -> Path:
    """Where a regeneration writes: ``<data_root>/<preset>-<key>-seed<seed>`` (``train``/``test``
    inside), e.g. ``data/CNN2-ysz-400-1.5406A-seed20261130``."""
    from xrd_strain_plugin.inference.registry import ModelKey

    key = ModelKey(material=material, hkl=tuple(hkl), wavelength_angstrom=wavelength_angstrom)
    return Path(data_root) / f"{preset.upper()}-{key.slug}-seed{seed}"


def heldout_dir(data_root, *, preset: str, material: str, hkl, wavelength_angstrom: float) -> Path:
    """The fixed held-out test set of a (preset, key): ``<data_root>/heldout-<preset>-<key>/test``;
    it never changes, so candidates of different nights are compared on the same curves."""
    from xrd_strain_plugin.inference.registry import ModelKey

    key = ModelKey(material=material, hkl=tuple(hkl), wavelength_angstrom=wavelength_angstrom)
    return Path(data_root) / f"heldout-{preset.upper()}-{key.slug}" / "test"


@task(retries=2, retry_delay_seconds=1, task_run_name="shard-{index}")
def make_shard_task(spec, index: int, out: str) -> dict:
    """Write shard ``index`` of ``spec`` into directory ``out``; return ``{"path", "index", ...}``
    (the manifest entry: file, n, drawn, sha256, seconds)."""
    from xrd_strain_training.generate import make_shard

    path = Path(out) / f"shard-{index:05d}.h5"
    info = make_shard(spec, index, path)
    return {"index": index, "path": str(path), **info}


def _plan(spec, out: Path) -> tuple[dict, list[int]]:
    """The manifest to extend and the shards still to make (as ``xrd_strain_training.generate.generate``)."""
    from xrd_strain_plugin import __version__
    from xrd_strain_training.generate import MANIFEST

    manifest = {
        **spec.identity(),
        "code_version": __version__,
        "shards": {},
        "label_names": list(spec.preset.label_names),
    }
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        mismatch = [k for k, v in spec.identity().items() if old.get(k) != v]
        if mismatch:
            raise ValueError(f"{out} holds a different dataset (differs in {mismatch}); choose another directory")
        manifest["shards"] = {k: v for k, v in old.get("shards", {}).items() if (out / v["file"]).is_file()}
    todo = [
        i
        for i in range(spec.n_shards)
        if str(i) not in manifest["shards"] or manifest["shards"][str(i)]["n"] != spec.shard_count(i)
    ]
    return manifest, todo


def _record(spec, out: Path, manifest: dict, infos: list[dict]) -> dict:
    # xrd_strain_training.generate keeps the fingerprint and the atomic write private; reuse them rather
    # than keep a second copy of the fingerprint rule.
    from xrd_strain_training import generate as gen

    for info in infos:
        manifest["shards"][str(info["index"])] = {k: v for k, v in info.items() if k not in ("index", "path")}
    gen._finish(manifest, spec)
    gen._write_json(out / gen.MANIFEST, manifest)
    return manifest


@flow(name="generate_split", flow_run_name="{spec.split}-{spec.n_curves}")
def generate_split(spec, out: str) -> dict:
    """Submit the missing shards of one split, wait, write the manifest; raise on failures.

    Returns
    -------
    dict
        The manifest (finished shards are kept in it even when others failed).
    """
    logger = get_run_logger()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest, todo = _plan(spec, out)
    logger.info("%s: %d of %d shards to make (%d curves each)", out, len(todo), spec.n_shards, spec.shard_size)
    futures = [make_shard_task.submit(spec, i, str(out)) for i in todo]
    infos, failures = [], []
    for i, future in zip(todo, futures):
        future.wait()
        if future.state.is_completed():
            infos.append(future.result())
        else:
            failures.append((i, future.state.message or "failed"))
    manifest = _record(spec, out, manifest, infos)  # keep what finished: a rerun resumes
    if failures:
        first = "; ".join(f"shard {i}: {msg}" for i, msg in failures[:3])
        raise RuntimeError(
            f"{len(failures)} of {len(todo)} shards of {out} failed after retries "
            f"({first}); {len(infos)} finished and are kept, rerun to resume"
        )
    return manifest


@flow(name="regenerate_dataset", log_prints=True, **FAILURE_HOOKS)
def regenerate_dataset(
    data_root: str,
    preset: str = "CNN2",
    n_curves: int = 10_000,
    test_curves: int = 5000,
    seed: int | None = None,
    test_seed: int = 2023,
    shard_size: int = 1000,
    material: str = "YSZ",
    hkl: tuple[int, int, int] = (4, 0, 0),
    wavelength_angstrom: float = 1.5406,
    options: dict | None = None,
    draws_per_profile: int = 1,
    scheduler_address: str | None = None,
    workers: int | None = None,
) -> dict:
    """Generate a training set under ``data_root`` and, if missing, the fixed held-out test set.

    Parameters
    ----------
    data_root : str
        Directory holding every dataset (see :func:`dataset_dir`, :func:`heldout_dir`).
    preset : str
        ``xrd_strain_training.presets`` name (CNN1, CNN2, CNN3, ...).
    n_curves, test_curves : int
        Training curves; held-out test curves (made once per preset and key; 0: none).
    seed : int, optional
        Training-set seed (default: today's date as YYYYMMDD, so each nightly run draws new
        curves and a rerun the same day resumes).
    test_seed : int
        Seed of the held-out test set (fixed: every candidate is measured on the same curves).
    shard_size : int
        Curves per shard = per task.
    material, hkl, wavelength_angstrom
        The reflection.
    options : dict, optional
        Preset options (``xrd_strain_training.presets.get_preset(name, **options)``).
    draws_per_profile : int
        See :class:`xrd_strain_training.generate.DatasetSpec`.
    scheduler_address : str, optional
        ``tcp://host:8786`` of a Dask scheduler: the shards run on its workers (which need this
        package installed and ``data_root`` on a shared file system).
    workers : int, optional
        Local worker processes when there is no scheduler (default: all cores; 1: threads in the
        flow's process).

    Returns
    -------
    dict
        ``train`` and ``test`` directories and their manifests' ``n_curves``, ``fingerprint``,
        ``complete``.
    """
    from xrd_strain_training.generate import DatasetSpec
    from xrd_strain_training.presets import get_preset

    logger = get_run_logger()

    def split(spec, directory):
        runner = task_runner(scheduler_address=scheduler_address, workers=workers)
        return generate_split.with_options(task_runner=runner)(spec, str(directory))

    if seed is None:
        seed = int(_dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d"))
    spec_preset = get_preset(preset, **dict(options or {}))
    common = dict(
        preset=spec_preset,
        shard_size=shard_size,
        material=material,
        hkl=tuple(hkl),
        wavelength_angstrom=wavelength_angstrom,
        draws_per_profile=draws_per_profile,
    )
    out = {}
    if test_curves > 0:
        test_dir = heldout_dir(
            data_root, preset=preset, material=material, hkl=hkl, wavelength_angstrom=wavelength_angstrom
        )
        m = split(DatasetSpec(split="test", seed=test_seed, n_curves=test_curves, **common), test_dir)
        out["test"] = {"path": str(test_dir), **_brief(m)}
    train_dir = (
        dataset_dir(
            data_root, preset=preset, material=material, hkl=hkl, wavelength_angstrom=wavelength_angstrom, seed=seed
        )
        / "train"
    )
    m = split(DatasetSpec(split="train", seed=seed, n_curves=n_curves, **common), train_dir)
    out["train"] = {"path": str(train_dir), **_brief(m)}
    logger.info("training set %s: %d curves, fingerprint %s", train_dir, m["n_curves"], m["fingerprint"][:12])
    return out


def _brief(manifest: dict) -> dict:
    return {k: manifest[k] for k in ("n_curves", "fingerprint", "complete")}


def task_runner(*, scheduler_address: str | None = None, workers: int | None = None):
    """The task runner: Dask at ``scheduler_address``; else threads for one worker, processes
    (one per core by default) for more."""
    if scheduler_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=scheduler_address)
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=1)
    from prefect.task_runners import ProcessPoolTaskRunner

    return ProcessPoolTaskRunner(max_workers=workers)


def regenerate(
    *, scheduler_address: str | None = None, workers: int | None = None, return_state: bool = False, **parameters
):
    """Run :func:`regenerate_dataset` locally or on a Dask cluster.

    Parameters
    ----------
    scheduler_address : str, optional
        ``tcp://host:8786`` of a Dask scheduler; shards then run on its workers (which need this
        package installed and ``data_root`` on a shared file system).
    workers : int, optional
        Local worker processes (default: all cores; 1 runs the shards in this process).
    return_state : bool
        Return the flow run's final state instead of raising on failure.
    **parameters
        The flow's parameters.
    """
    return regenerate_dataset(
        scheduler_address=scheduler_address, workers=workers, return_state=return_state, **parameters
    )
