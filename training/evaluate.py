"""Evaluation: the paper's Table 2 (train/test MSE and six accuracies), by bands, as markdown and PNG.

An accuracy ``a(p)`` is the fraction of test curves whose relative error on ``p`` is below 0.1
(Boulle & Debelle 2023). ``a(strain)`` is the fraction whose strain-profile rms error, normalised
by the true ``e_max``, is below 0.1; the rms is taken over depth, the shorter profile padded with
zero strain down to the deeper one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xrd_strain_plugin.inference.labels import decode_labels

__all__ = [
    "Evaluation",
    "accuracies",
    "evaluate_predictions",
    "profile_rms_error",
    "markdown_table",
    "THRESHOLD",
    "BANDS",
]

THRESHOLD = 0.1
ACCURACY_KEYS = ("a_t", "a_emax", "a_dw", "a_h", "a_dr", "a_strain")
#: The paper's failure regions, and their complements, for the a(strain) breakdown.
BANDS = {
    "strain_max_percent": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0001),
    "thickness_nm": (0.0, 100.0, 300.0, 600.0, 1000.0001),
    "dw_min": (0.0, 0.05, 0.3, 0.6, 1.0001),
}


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """Per-curve errors and summary figures of a set of predictions.

    Attributes
    ----------
    relative_errors : dict of numpy.ndarray, each shape (n,)
        ``|pred - true| / true`` of t, e_max, DW_min, H, DR, and the normalised profile rms.
    accuracies : dict of float
        ``a_t, a_emax, a_dw, a_h, a_dr, a_strain`` (fractions).
    mse : float
        Mean squared error of the scaled labels.
    true, predicted : dict of numpy.ndarray
        Scalar parameters (``thickness_nm``, ``strain_max_percent``, ``dw_min``,
        ``resolution_fwhm_deg``, ``dynamic_range``).
    """

    relative_errors: dict
    accuracies: dict
    mse: float
    true: dict = field(repr=False)
    predicted: dict = field(repr=False)

    @property
    def n(self) -> int:
        return self.relative_errors["thickness_nm"].size

    def by_band(self, key: str, edges=None) -> list[dict]:
        """a(strain) (and the other accuracies) for bands of a true parameter.

        Returns
        -------
        list of dict
            One per band: ``low``, ``high``, ``n`` and the six accuracies (NaN where empty).
        """
        edges = BANDS[key] if edges is None else edges
        values = self.true[key]
        rows = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            mask = (values >= lo) & (values < hi)
            row = {"low": lo, "high": hi, "n": int(mask.sum())}
            row.update(accuracies(self.relative_errors, mask=mask))
            rows.append(row)
        return rows


def profile_rms_error(strain_true, thickness_true, strain_pred, thickness_pred, *, n_depth: int = 400) -> np.ndarray:
    """Rms over depth of the difference of two strain profiles with their own thicknesses.

    Both profiles are read at the same depths from the surface down to the deeper interface;
    below its own interface a profile is zero (the shorter one is padded with zero strain).

    Parameters
    ----------
    strain_true, strain_pred : numpy.ndarray, shape (n, n_slices_*)
        Strain per lamella (any unit; the result has the same), index 0 at the surface.
    thickness_true, thickness_pred : numpy.ndarray, shape (n,)
        Thicknesses in nm.
    n_depth : int
        Depth samples.

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    depth_max = np.maximum(thickness_true, thickness_pred)[:, None]
    depth = (np.arange(n_depth) + 0.5) / n_depth * depth_max
    a = _sample(strain_true, thickness_true, depth)
    b = _sample(strain_pred, thickness_pred, depth)
    return np.sqrt(np.mean((a - b) ** 2, axis=1))


def _sample(strain, thickness, depth):
    """Lamella values at ``depth`` (n, m): the lamella containing it, zero below the layer."""
    n_slices = strain.shape[1]
    index = np.floor(depth / thickness[:, None] * n_slices).astype(int)
    inside = index < n_slices
    picked = np.take_along_axis(strain, np.minimum(index, n_slices - 1), axis=1)
    return np.where(inside, picked, 0.0)


def accuracies(relative_errors: dict, *, mask=None, threshold: float = THRESHOLD) -> dict:
    """Fractions of relative errors below ``threshold`` (NaN for an empty mask)."""
    names = {
        "a_t": "thickness_nm",
        "a_emax": "strain_max_percent",
        "a_dw": "dw_min",
        "a_h": "resolution_fwhm_deg",
        "a_dr": "dynamic_range",
        "a_strain": "strain_profile",
    }
    out = {}
    for key, name in names.items():
        err = relative_errors[name] if mask is None else relative_errors[name][mask]
        out[key] = float(np.mean(err < threshold)) if err.size else float("nan")
    return out


def evaluate_predictions(labels_true, labels_pred, *, scaling, n_weights: int, n_slices: int) -> Evaluation:
    """Compare predicted with true labels (both physical, shape (n, n_weights + 4)).

    Parameters
    ----------
    labels_true, labels_pred : array_like, shape (n, n_labels)
    scaling : LabelScaling
        For the MSE in scaled units (the training loss).
    n_weights, n_slices : int
        Profile decoding (see :func:`xrd_strain_plugin.inference.labels.decode_labels`).
    """
    labels_true = np.asarray(labels_true, dtype=float)
    labels_pred = np.asarray(labels_pred, dtype=float)
    mse = float(np.mean((scaling.scale(labels_true) - scaling.scale(labels_pred)) ** 2))
    t = decode_labels(labels_true, n_weights=n_weights, n_slices=n_slices, clip=False)
    p = decode_labels(labels_pred, n_weights=n_weights, n_slices=n_slices)
    keys = ("thickness_nm", "strain_max_percent", "dw_min", "resolution_fwhm_deg", "dynamic_range")
    true = {k: getattr(t, k) for k in keys}
    pred = {k: getattr(p, k) for k in keys}
    rel = {k: np.abs(pred[k] - true[k]) / np.abs(true[k]) for k in keys}
    rms = profile_rms_error(t.strain, t.thickness_nm, p.strain, p.thickness_nm)
    rel["strain_profile"] = rms / (true["strain_max_percent"] / 100.0)
    return Evaluation(relative_errors=rel, accuracies=accuracies(rel), mse=mse, true=true, predicted=pred)


def markdown_table(rows: dict, *, paper: bool = True) -> str:
    """Table-2 style markdown: one row per named evaluation.

    Parameters
    ----------
    rows : dict
        ``name -> dict`` with ``mse_train`` (optional), ``mse_test`` and the six accuracies.
    paper : bool
        Add the paper's CNN2 row for comparison.
    """
    head = (
        "| model | n test | train MSE | test MSE | a(t) | a(e_max) | a(DW) | a(H) | a(DR) | "
        "a(strain) |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, r in rows.items():
        mse_train = f"{r['mse_train']:.2e}" if r.get("mse_train") is not None else "-"
        accs = " | ".join(f"{100 * r[k]:.0f} %" for k in ACCURACY_KEYS)
        lines.append(f"| {name} | {r.get('n_test', '-')} | {mse_train} | {r['mse_test']:.2e} | {accs} |")
    if paper:
        lines.append(
            "| paper CNN2 (Table 2, 1.5e5 test curves) | 150000 | - | - | 91 % | 94 % | 90 % | 93 % | 100 % | 82 % |"
        )
    return head + "\n".join(lines) + "\n"
