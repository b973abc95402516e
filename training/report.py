"""Evaluate a bundle on a held-out test set: Table-2 markdown, band breakdown, PNG figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from xrd_strain_training.evaluate import ACCURACY_KEYS, BANDS, Evaluation, evaluate_predictions, markdown_table

__all__ = ["evaluate_bundle", "write_report"]

_PARAMS = (
    ("thickness_nm", "t (nm)"),
    ("strain_max_percent", "e_max (%)"),
    ("dw_min", "DW_min"),
    ("resolution_fwhm_deg", "H (deg)"),
    ("dynamic_range", "DR"),
)


def evaluate_bundle(bundle, dataset, *, max_curves: int | None = None, indices=None) -> tuple[Evaluation, np.ndarray]:
    """Predict a dataset (or the rows ``indices`` of it) with a bundle; compare with its labels.

    Returns
    -------
    Evaluation
    numpy.ndarray, shape (n, n_labels)
        The predicted (physical) labels.
    """
    from xrd_strain_plugin.inference.labels import LabelScaling
    from xrd_strain_plugin.inference.predictor import Predictor

    x, labels = dataset.x, dataset.labels
    if indices is not None:
        x, labels = x[indices], labels[indices]
    if max_curves is not None:
        x, labels = x[:max_curves], labels[:max_curves]
    card = bundle.card
    n_paper = card.n_weights + 4
    if len(dataset.label_names) != n_paper or (
        not card.head and tuple(dataset.label_names) != tuple(card.labels.names)
    ):
        raise ValueError("the dataset's labels differ from the model's")
    pred = Predictor(bundle).predict_labels(x)
    # MSE in the paper's scaled labels: the bundle's own scaling for a paper head; for another
    # head, the paper labels' scaling of its training set (card head "paper_labels"), else one
    # fitted on these true labels.
    if not card.head or card.head.get("targets", "paper") == "paper":
        scaling = card.labels
    elif "paper_labels" in card.head:
        scaling = LabelScaling.from_dict(card.head["paper_labels"])
    else:
        scaling = LabelScaling.fit(labels, dataset.label_names)
    ev = evaluate_predictions(labels, pred, scaling=scaling, n_weights=card.n_weights, n_slices=card.n_slices)
    return ev, pred


def table_row(ev: Evaluation, *, mse_train: float | None = None) -> dict:
    """Row for :func:`xrd_strain_training.evaluate.markdown_table` and the bundle card."""
    return {"n_test": ev.n, "mse_train": mse_train, "mse_test": ev.mse, **ev.accuracies}


def write_report(
    out, *, name: str, ev: Evaluation, row: dict, bundle=None, dataset=None, predicted=None, n_examples: int = 4
) -> Path:
    """Write ``report.md``, ``metrics.json`` and figures into directory ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Evaluation of {name}\n", markdown_table({name: row}), ""]
    for key in BANDS:
        lines.append(f"\n## By true {key}\n")
        lines.append("| band | n | " + " | ".join(ACCURACY_KEYS) + " |")
        lines.append("|---|---|" + "---|" * len(ACCURACY_KEYS))
        for band in ev.by_band(key):
            accs = " | ".join("-" if np.isnan(band[k]) else f"{100 * band[k]:.0f} %" for k in ACCURACY_KEYS)
            lines.append(f"| [{band['low']:g}, {band['high']:g}) | {band['n']} | {accs} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    metrics = {"table2": row, "bands": {k: ev.by_band(k) for k in BANDS}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    _figures(out, ev)
    if bundle is not None and dataset is not None and predicted is not None:
        _example_curves(out, bundle, dataset, predicted, n_examples)
    return out / "report.md"


def _figures(out: Path, ev: Evaluation) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(17, 3.4), constrained_layout=True)
    for ax, (key, label) in zip(axes, _PARAMS):
        t, p = ev.true[key], ev.predicted[key]
        ax.plot(t, p, ".", ms=1.5, alpha=0.4)
        lim = [min(t.min(), p.min()), max(t.max(), p.max())]
        ax.plot(lim, lim, "k-", lw=0.8)
        ax.set_xlabel(f"true {label}")
        ax.set_ylabel(f"predicted {label}")
    fig.savefig(out / "predicted_vs_true.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    names = {
        "thickness_nm": "t",
        "strain_max_percent": "e_max",
        "dw_min": "DW_min",
        "resolution_fwhm_deg": "H",
        "dynamic_range": "DR",
        "strain_profile": "strain",
    }
    for key, label in names.items():
        err = np.sort(ev.relative_errors[key])
        ax.semilogx(np.maximum(err, 1e-5), np.arange(1, err.size + 1) / err.size, label=label)
    ax.axvline(0.1, color="k", lw=0.8, ls="--")
    ax.set_xlabel("relative error")
    ax.set_ylabel("cumulative fraction")
    ax.legend(fontsize=8)
    fig.savefig(out / "cumulative_errors.png", dpi=100)
    plt.close(fig)


def _example_curves(out: Path, bundle, dataset, predicted, n_examples: int) -> None:
    """A few test curves with the curve computed from the prediction overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xrd_strain_plugin.inference.labels import decode_labels
    from xrd_strain_plugin.physics.instrument import simulate_scan
    from xrd_strain_plugin.physics.misfit import fit_scale_background, sigma_i
    from xrd_strain_plugin.physics.qspace import grid_two_theta_deg
    from xrd_strain_plugin.reflection_cache import cached_reflection

    card = bundle.card
    refl = cached_reflection(card.material, card.hkl, card.wavelength_angstrom)
    two_theta = grid_two_theta_deg(
        card.grid, wavelength_angstrom=refl.wavelength_angstrom, q_bragg_inv_angstrom=refl.q_bragg_inv_angstrom
    )[::-1]
    fig, axes = plt.subplots(2, n_examples, figsize=(4 * n_examples, 6), constrained_layout=True)
    rng = np.random.default_rng(0)
    for col, i in enumerate(rng.choice(dataset.n, size=n_examples, replace=False)):
        measured = 10.0 ** dataset.x[i][::-1].astype(float)
        inside = dataset.x[i][::-1] > dataset.x[i].min()
        lo, hi = np.flatnonzero(inside)[[0, -1]]
        angles, meas = two_theta[lo : hi + 1], measured[lo : hi + 1]
        decoded = decode_labels(
            predicted[i : i + 1], n_weights=card.n_weights, n_slices=card.n_slices, dw_mode=card.dw_mode
        )
        true = decode_labels(
            dataset.labels[i : i + 1],
            n_weights=card.n_weights,
            n_slices=card.n_slices,
            clip=False,
            dw_mode=card.dw_mode,
        )
        refl_curve = np.asarray(
            simulate_scan(
                angles,
                decoded.strain,
                decoded.debye_waller,
                decoded.thickness_nm,
                refl,
                resolution_fwhm_deg=decoded.resolution_fwhm_deg,
                check_layer_in_scan=False,
            )
        )[0]
        log_scale, log_bg = fit_scale_background(meas, refl_curve)
        scale, bg = 10.0 ** log_scale[0], 10.0 ** log_bg[0]
        model = scale * refl_curve + bg
        ax = axes[0, col]
        ax.semilogy(angles, meas, ".", ms=2, color="k", label="test curve")
        ax.semilogy(angles, model, color="C3", lw=1, label=f"from prediction, sigma_I {sigma_i(meas, model):.2f}")
        ax.set_xlabel("2theta (deg)")
        ax.legend(fontsize=7)
        ax = axes[1, col]
        for dec, style, label in ((true, "k-", "true"), (decoded, "C3--", "predicted")):
            depth = (np.arange(200) + 0.5) / 200 * dec.thickness_nm[0]
            ax.plot(depth, 100 * dec.strain[0], style, label=label)
        ax.set_xlabel("depth (nm)")
        ax.set_ylabel("strain (%)")
        ax.legend(fontsize=7)
    fig.savefig(out / "example_curves.png", dpi=90)
    plt.close(fig)
