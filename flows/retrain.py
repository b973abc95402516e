"""``retrain``: a candidate trained on the newest dataset, measured on the fixed held-out test set,
promoted only if it does not regress; every candidate kept in the registry with its metrics.

Each task is one library call: :func:`xrd_strain_training.train.train` and
:func:`xrd_strain_training.export.export_bundle` (candidate), :func:`xrd_strain_training.report.evaluate_bundle` and
:func:`xrd_strain_training.report.write_report` (Table 2, figures), and the registry's
:meth:`~xrd_strain_plugin.inference.registry.ModelRegistry.add`,
:meth:`~xrd_strain_plugin.inference.registry.PromotionGate.decide` and
:meth:`~xrd_strain_plugin.inference.registry.ModelRegistry.promote`. The current model is measured
on the same test set (once per test set, then read back from the registry), so the comparison is
like for like. A markdown artifact (``retrain-<key>``) shows the table, the decision and figures.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from prefect import flow, get_run_logger, task

from xrd_strain_flows.notify import FAILURE_HOOKS

__all__ = ["retrain", "newest_dataset", "train_candidate", "evaluate_model"]


def newest_dataset(
    data_root, *, material: str | None = None, hkl=None, wavelength_angstrom: float | None = None
) -> Path:
    """The newest complete training set under ``data_root`` (by manifest time), optionally for
    one reflection.

    Raises
    ------
    FileNotFoundError
        If ``data_root`` holds no complete training set (for that reflection).
    """
    from xrd_strain_plugin.inference.registry import ModelKey

    want = (
        None
        if material is None
        else ModelKey(material=material, hkl=tuple(hkl), wavelength_angstrom=wavelength_angstrom)
    )
    found = []
    for manifest_path in Path(data_root).glob("*/train/manifest.json"):
        m = json.loads(manifest_path.read_text())
        if not m.get("complete"):
            continue
        key = ModelKey(material=m["material"], hkl=tuple(m["hkl"]), wavelength_angstrom=m["wavelength_angstrom"])
        if want is not None and key.slug != want.slug:
            continue
        found.append((manifest_path.stat().st_mtime_ns, manifest_path.parent))
    if not found:
        raise FileNotFoundError(
            f"no complete training set under {data_root}"
            + (f" for {want.slug}" if want else "")
            + "; run regenerate_dataset first"
        )
    return max(found)[1]


def heldout_for(train_dir: Path) -> Path:
    """The held-out test set beside a training set made by ``regenerate_dataset``."""
    name = train_dir.parent.name.rsplit("-seed", 1)[0]
    return train_dir.parent.parent / f"heldout-{name}" / "test"


@task(task_run_name="train-{model_id}@{version}")
def train_candidate(train_dir: str, run_dir: str, bundle_dir: str, *, model_id: str, version: str, config: dict) -> str:
    """Train on ``train_dir`` (resuming ``run_dir``) and export the bundle; return its path."""
    from xrd_strain_training.dataset import load_dataset
    from xrd_strain_training.export import export_bundle
    from xrd_strain_training.train import TrainConfig, train

    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    dataset = load_dataset(train_dir)
    result = train(dataset, run_dir, TrainConfig(**config), verbose=0)
    export_bundle(
        bundle_dir,
        model=result.model,
        scaling=result.scaling,
        train_manifest=dataset.manifest,
        train_state=result.state,
        model_id=model_id,
        version=version,
    )
    return bundle_dir


@task(task_run_name="evaluate-{name}")
def evaluate_model(bundle_dir: str, test_dir: str, report_dir: str, *, name: str) -> dict:
    """Table-2 row of a bundle on the test set; report.md and figures go to ``report_dir``."""
    from xrd_strain_plugin.inference import load_bundle
    from xrd_strain_training.dataset import load_dataset
    from xrd_strain_training.report import evaluate_bundle, table_row, write_report

    bundle = load_bundle(bundle_dir)
    test = load_dataset(test_dir)
    ev, predicted = evaluate_bundle(bundle, test)
    row = table_row(ev)
    write_report(report_dir, name=name, ev=ev, row=row)
    return row


@task
def register_candidate(
    registry_root: str | None, bundle_dir: str, run_dir: str, row: dict, test_dir: str, train_dir: str
) -> str:
    """Write the measured row into the candidate's card (re-export, as ``xrd-strain train``
    does) and add the bundle to the registry; return its ``model_id@version``."""
    from xrd_strain_plugin.inference import load_bundle
    from xrd_strain_plugin.inference.registry import ModelRegistry
    from xrd_strain_training.export import export_bundle

    registry = ModelRegistry(registry_root)
    bundle = load_bundle(bundle_dir, runtime="keras")
    state = json.loads((Path(run_dir) / "state.json").read_text())
    test_manifest = json.loads((Path(test_dir) / "manifest.json").read_text())
    train_manifest = json.loads((Path(train_dir) / "manifest.json").read_text())
    export_bundle(
        bundle_dir,
        model=bundle.model,
        scaling=bundle.card.labels,
        train_manifest=train_manifest,
        train_state=state,
        model_id=bundle.card.model_id,
        version=bundle.card.version,
        metrics=row,
        test_manifest=test_manifest,
    )
    entry = registry.add(bundle_dir, evaluation=row, test_fingerprint=test_manifest["fingerprint"])
    return entry.ref


@flow(name="retrain", log_prints=True, **FAILURE_HOOKS)
def retrain(
    data_root: str,
    registry_root: str | None = None,
    work_dir: str | None = None,
    train_dir: str | None = None,
    test_dir: str | None = None,
    material: str = "YSZ",
    hkl: tuple[int, int, int] = (4, 0, 0),
    wavelength_angstrom: float = 1.5406,
    model_id: str | None = None,
    train_config: dict | None = None,
    gate: dict | None = None,
) -> dict:
    """Train a candidate, compare it with the current model on the held-out set, maybe promote it.

    Parameters
    ----------
    data_root : str
        Where ``regenerate_dataset`` writes; the newest complete training set for the reflection
        is used unless ``train_dir`` is given.
    registry_root : str, optional
        Model registry (default: ``$XRD_STRAIN_REGISTRY`` or the user's data directory).
    work_dir : str, optional
        Training runs, candidate bundles and reports (default: ``<data_root>/retrain``).
    train_dir, test_dir : str, optional
        Explicit training set and held-out test set (default: newest, and its ``heldout-*``).
    material, hkl, wavelength_angstrom
        The key whose current model is challenged.
    model_id : str, optional
        Id of the candidate (default: the current model's, with the next version).
    train_config : dict, optional
        :class:`xrd_strain_training.train.TrainConfig` fields (default: the paper's recipe).
    gate : dict, optional
        :class:`~xrd_strain_plugin.inference.registry.PromotionGate` fields (``tolerances``,
        ``mse_tolerance``, ``min_gain``); default: no accuracy and not the MSE may regress.

    Returns
    -------
    dict
        ``candidate`` (ref), ``current_before``, ``current_after``, ``promoted``, ``reasons``,
        ``candidate_metrics``, ``current_metrics``, ``test_fingerprint``.
    """
    from xrd_strain_plugin.inference.registry import ModelKey, ModelRegistry, PromotionGate

    logger = get_run_logger()
    registry = ModelRegistry(registry_root)
    key = ModelKey(material=material, hkl=tuple(hkl), wavelength_angstrom=wavelength_angstrom)
    gate_ = PromotionGate(**(gate or {}))
    train_path, test_path, test_fp = _datasets(data_root, train_dir, test_dir, key)
    current = registry.current(key)
    model_id = model_id or current.card.model_id
    version = registry.next_version(model_id)
    ref = f"{model_id}@{version}"
    work = Path(work_dir) if work_dir else Path(data_root) / "retrain"
    bundle_dir = work / "candidates" / ref
    logger.info("candidate %s on %s; current %s; held-out set %s", ref, train_path, current.ref, test_path)

    bundle = train_candidate(
        str(train_path),
        str(work / "runs" / ref),
        str(bundle_dir),
        model_id=model_id,
        version=version,
        config=dict(train_config or {}),
    )
    row = evaluate_model(bundle, str(test_path), str(work / "reports" / ref), name=ref)
    current_row = _current_row(registry, current, test_path, test_fp, work)
    registered = register_candidate(
        str(registry.root), bundle, str(work / "runs" / ref), row, str(test_path), str(train_path)
    )
    decision = _decide(registry, gate_, registered, current.ref, row, current_row, logger)
    after = registry.current(key).ref
    _artifact(key, registered, current.ref, row, current_row, decision, work, test_fp)
    return {
        "candidate": registered,
        "current_before": current.ref,
        "current_after": after,
        "promoted": decision.promote,
        "reasons": list(decision.reasons),
        "candidate_metrics": row,
        "current_metrics": current_row,
        "test_fingerprint": test_fp,
    }


def _datasets(data_root, train_dir, test_dir, key) -> tuple[Path, Path, str]:
    """The training set (given, or the newest complete one for ``key``), its held-out set and that set's fingerprint.

    Raises
    ------
    FileNotFoundError
        No held-out test set: the comparison with the current model needs one.
    """
    train_path = (
        Path(train_dir)
        if train_dir
        else newest_dataset(data_root, material=key.material, hkl=key.hkl, wavelength_angstrom=key.wavelength_angstrom)
    )
    test_path = Path(test_dir) if test_dir else heldout_for(train_path)
    if not (test_path / "manifest.json").is_file():
        raise FileNotFoundError(f"no held-out test set at {test_path}; run regenerate_dataset with test_curves > 0")
    return train_path, test_path, json.loads((test_path / "manifest.json").read_text())["fingerprint"]


def _current_row(registry, current, test_path: Path, test_fp: str, work: Path) -> dict:
    """The current model's Table-2 row on this held-out set: recorded in the registry, else measured once and recorded."""
    current_row = registry.evaluation(current.ref, test_fp)
    if current_row is None:
        current_row = evaluate_model(
            str(current.path), str(test_path), str(work / "reports" / current.ref), name=current.ref
        )
        registry.record_evaluation(current.ref, test_fp, current_row)
    return current_row


def _decide(registry, gate, registered: str, current_ref: str, row: dict, current_row: dict, logger):
    """The gate's decision, applied: promote the candidate, or log why it stays a candidate."""
    decision = gate.decide(row, current_row)
    if decision.promote:
        registry.promote(registered, reason="retrain: " + "; ".join(decision.reasons))
        logger.info("promoted %s (was %s)", registered, current_ref)
    else:
        registry.log_rejection(registered, reasons=decision.reasons)
        logger.info("kept %s as a candidate, not promoted: %s", registered, "; ".join(decision.reasons))
    return decision


def comparison_markdown(
    candidate: str,
    current: str,
    row: dict,
    current_row: dict,
    decision,
    figures: dict[str, Path] | None = None,
    test_fingerprint: str = "",
) -> str:
    """The retrain report: Table 2 for both models, the decision and (inline) figures."""
    from xrd_strain_training.evaluate import markdown_table

    verdict = "**promoted**" if decision.promote else "**not promoted** (kept as a candidate)"
    lines = [
        f"# Retraining: {candidate} vs current {current}",
        "",
        f"Held-out test set `{test_fingerprint[:12]}`. Candidate {verdict}: " + "; ".join(decision.reasons) + ".",
        "",
        markdown_table({f"{candidate} (candidate)": row, f"{current} (current)": current_row}, paper=True),
    ]
    for name, path in (figures or {}).items():
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode()
            lines += ["", f"### {name}", "", f"![{name}](data:image/png;base64,{data})", f"`{path}`"]
    return "\n".join(lines) + "\n"


def _artifact(key, candidate, current, row, current_row, decision, work: Path, test_fp) -> None:
    from prefect.artifacts import create_markdown_artifact

    figures = {
        f"cumulative errors, {candidate}": work / "reports" / candidate / "cumulative_errors.png",
        f"cumulative errors, {current}": work / "reports" / current / "cumulative_errors.png",
    }
    markdown = comparison_markdown(candidate, current, row, current_row, decision, figures, test_fp)
    (work / "reports" / candidate / "comparison.md").write_text(markdown)
    create_markdown_artifact(
        markdown=markdown,
        key=f"retrain-{key.slug.lower().replace('.', '-')}",
        description=f"retrain {candidate} vs {current}",
    )
