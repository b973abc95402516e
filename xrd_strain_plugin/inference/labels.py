"""Network labels <-> physical profiles, and min-max label scaling.

The network predicts ``n_weights + 4`` labels (Boulle & Debelle 2023): the strain B-spline
weights in percent, ``dw_min``, the thickness ``t`` (nm), the resolution FWHM ``H`` (degrees of
2-theta) and the dynamic range ``DR = log10(I_max / I_min)``. The weights carry the strain scale:
``e_max`` is the largest ``|strain|`` of the spline they define (:func:`strain_max_percent`), so
the generator, the evaluation and the inversion all decode labels here, the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xrd_strain_plugin.physics import profiles

__all__ = [
    "DecodedLabels",
    "LabelScaling",
    "decode_labels",
    "strain_max_percent",
    "PAPER",
    "RELATIVE",
    "relative_names",
    "relative_from_paper",
    "paper_from_relative",
    "split_hypotheses",
    "head_outputs",
    "labels_from_output",
]

#: Labels after the weights, in order.
TAIL = ("dw_min", "thickness_nm", "resolution_fwhm_deg", "dynamic_range")


@dataclass(frozen=True, kw_only=True)
class LabelScaling:
    """Min-max scaling of the labels to [0, 1] (fitted on the training set).

    Attributes
    ----------
    names : tuple of str
        Label names, network-output order.
    minimum, maximum : tuple of float
        Per-label minimum and maximum of the training set; ``scaled = (y - min) / (max - min)``.
    """

    names: tuple[str, ...]
    minimum: tuple[float, ...]
    maximum: tuple[float, ...]

    def __post_init__(self):
        if not len(self.names) == len(self.minimum) == len(self.maximum):
            raise ValueError("LabelScaling names, minimum and maximum must have equal lengths")
        if any(not hi > lo for lo, hi in zip(self.minimum, self.maximum)):
            raise ValueError("LabelScaling needs maximum > minimum for every label")

    @classmethod
    def fit(cls, labels, names) -> "LabelScaling":
        """Scaling from the per-column extremes of ``labels``, shape (n_samples, n_labels)."""
        labels = np.asarray(labels, dtype=float)
        lo, hi = labels.min(axis=0), labels.max(axis=0)
        hi = np.where(hi > lo, hi, lo + 1.0)  # a constant column would divide by zero
        return cls(names=tuple(names), minimum=tuple(map(float, lo)), maximum=tuple(map(float, hi)))

    def scale(self, labels) -> np.ndarray:
        """Physical labels (n_samples, n_labels) -> [0, 1] (float32)."""
        lo, hi = np.asarray(self.minimum), np.asarray(self.maximum)
        return ((np.asarray(labels, dtype=float) - lo) / (hi - lo)).astype(np.float32)

    def unscale(self, scaled) -> np.ndarray:
        """Scaled network output (n_samples, n_labels) -> physical labels (float64)."""
        lo, hi = np.asarray(self.minimum), np.asarray(self.maximum)
        return np.asarray(scaled, dtype=float) * (hi - lo) + lo

    def to_dict(self) -> dict:
        return {"names": list(self.names), "minimum": list(self.minimum), "maximum": list(self.maximum)}

    @classmethod
    def from_dict(cls, data: dict) -> "LabelScaling":
        return cls(names=tuple(data["names"]), minimum=tuple(data["minimum"]), maximum=tuple(data["maximum"]))


@dataclass(frozen=True, kw_only=True)
class DecodedLabels:
    """Physical profiles and parameters of a batch of labels.

    Attributes
    ----------
    strain : numpy.ndarray, shape (n_batch, n_slices)
        Strain (plain fraction) per lamella, index 0 at the surface.
    debye_waller : numpy.ndarray, shape (n_batch, n_slices)
        Static Debye-Waller factor per lamella (coupled to the strain).
    strain_max_percent, dw_min, thickness_nm, resolution_fwhm_deg, dynamic_range : numpy.ndarray
        Shape (n_batch,).
    """

    strain: np.ndarray
    debye_waller: np.ndarray
    strain_max_percent: np.ndarray
    dw_min: np.ndarray
    thickness_nm: np.ndarray
    resolution_fwhm_deg: np.ndarray
    dynamic_range: np.ndarray


def strain_max_percent(weights_percent, n_slices: int) -> np.ndarray:
    """Largest ``|strain|`` (percent) over the slices of the spline with these weights.

    Parameters
    ----------
    weights_percent : array_like, shape (n_batch, n_weights)
    n_slices : int

    Returns
    -------
    numpy.ndarray, shape (n_batch,)
    """
    weights = np.atleast_2d(np.asarray(weights_percent, dtype=float))
    shape = weights @ profiles.profile_basis(weights.shape[1], n_slices).T
    return np.abs(shape).max(axis=1)


def decode_labels(
    labels, *, n_weights: int, n_slices: int, clip: bool = True, dw_mode: str = "coupled"
) -> DecodedLabels:
    """Physical labels -> strain and DW profiles plus the scalar parameters.

    Parameters
    ----------
    labels : array_like, shape (n_batch, n_weights + 4)
        Unscaled labels (see the module docstring for the order).
    n_weights : int
        Number of strain weights.
    n_slices : int
        Lamellae of the returned profiles.
    clip : bool
        Keep predicted values physical: ``dw_min`` in [1e-3, 1], ``t`` >= 1 nm, ``H`` >= 1e-4 deg.
    dw_mode : str
        The model card's ``dw_mode``. These labels describe a DW coupled to the strain; a
        ``"decoupled"`` card (no DW-shape labels) is refused rather than decoded as coupled.

    Returns
    -------
    DecodedLabels
    """
    if profiles.check_dw_mode(dw_mode) != "coupled":
        raise ValueError(
            f"dw_mode {dw_mode!r}: these labels carry no DW-shape weights; only 'coupled' "
            "models can be decoded (training/presets.DW_MODES)"
        )
    labels = np.atleast_2d(np.asarray(labels, dtype=float))
    if labels.shape[1] != n_weights + len(TAIL):
        raise ValueError(f"labels must have {n_weights + len(TAIL)} columns, got {labels.shape[1]}")
    weights = labels[:, :n_weights]
    dw_min, thickness, fwhm, dyn = (labels[:, n_weights + i] for i in range(len(TAIL)))
    if clip:
        dw_min = np.clip(dw_min, 1e-3, 1.0)
        thickness = np.maximum(thickness, 1.0)
        fwhm = np.maximum(fwhm, 1e-4)
    e_max = strain_max_percent(weights, n_slices)
    strain = profiles.strain_from_weights(weights, e_max / 100.0, n_slices)
    dw = profiles.dw_coupled(strain, e_max / 100.0, dw_min)
    return DecodedLabels(
        strain=strain,
        debye_waller=dw,
        strain_max_percent=e_max,
        dw_min=dw_min,
        thickness_nm=thickness,
        resolution_fwhm_deg=fwhm,
        dynamic_range=dyn,
    )


# --- Score-aligned targets and the multi-hypothesis head (issue 14) -------------------------
#
# The paper's 14 labels put the strain scale into the weights (absolute percent, min-max scaled
# over 0-8 %), so an error of 2 % of e_max on an 8 % layer costs the loss as much as one of 32 %
# of e_max on a 0.5 % layer, while a(strain) scores sigma_e / e_max. The "relative" targets
# separate shape and scale: the weights divided by e_max (their spline's maximum is 1), then
# ln e_max, ln DW_min, ln t, ln H and DR, so a relative error of a parameter is a difference of
# its target. A network may answer K hypotheses at once (``n_hypotheses``): its output is K
# blocks of the scaled targets followed by K logits (which hypothesis it trusts).

#: Target encodings a bundle's head may use (card ``head["targets"]``).
PAPER, RELATIVE = "paper", "relative"
#: Relative targets after the shape weights, in order.
RELATIVE_TAIL = ("log_strain_max", "log_dw_min", "log_thickness", "log_fwhm", "dynamic_range")


def relative_names(n_weights: int) -> tuple[str, ...]:
    """Names of the relative targets: ``wr0 .. wr{n-1}`` (weights / e_max), then RELATIVE_TAIL."""
    return tuple(f"wr{k}" for k in range(n_weights)) + RELATIVE_TAIL


def relative_from_paper(labels, *, n_weights: int, n_slices: int) -> np.ndarray:
    """The paper's physical labels (n, n_weights + 4) -> relative targets (n, n_weights + 5)."""
    labels = np.atleast_2d(np.asarray(labels, dtype=float))
    weights = labels[:, :n_weights]
    e_max = np.maximum(strain_max_percent(weights, n_slices), 1e-6)
    dw_min, thickness, fwhm, dyn = (labels[:, n_weights + i] for i in range(len(TAIL)))
    return np.column_stack(
        [
            weights / e_max[:, None],
            np.log(e_max),
            np.log(np.clip(dw_min, 1e-3, 1.0)),
            np.log(np.maximum(thickness, 1.0)),
            np.log(np.maximum(fwhm, 1e-4)),
            dyn,
        ]
    )


def paper_from_relative(targets, *, n_weights: int, n_slices: int) -> np.ndarray:
    """Relative targets -> the paper's physical labels; the weights are rescaled so that their
    spline's maximum is exactly ``exp(log_strain_max)`` (the predicted e_max)."""
    targets = np.atleast_2d(np.asarray(targets, dtype=float))
    shape = targets[:, :n_weights]
    peak = strain_max_percent(shape, n_slices)
    e_max = np.exp(targets[:, n_weights])
    weights = shape / np.where(peak > 1e-9, peak, 1.0)[:, None] * e_max[:, None]
    tail = np.exp(targets[:, n_weights + 1 : n_weights + 4])
    return np.column_stack([weights, tail, targets[:, n_weights + 4]])


def split_hypotheses(output, n_targets: int, n_hypotheses: int) -> tuple[np.ndarray, np.ndarray]:
    """A head's raw output (n, K * (n_targets + 1), or n_targets for K = 1) -> scaled targets
    (n, K, n_targets) and the probabilities of the hypotheses (n, K), softmax of the logits."""
    output = np.atleast_2d(np.asarray(output, dtype=float))
    k = int(n_hypotheses)
    if k == 1 and output.shape[1] == n_targets:
        return output[:, None, :], np.ones((output.shape[0], 1))
    if output.shape[1] != k * (n_targets + 1):
        raise ValueError(
            f"a head of {k} hypotheses of {n_targets} targets has {k * (n_targets + 1)} outputs, got {output.shape[1]}"
        )
    hyp = output[:, : k * n_targets].reshape(-1, k, n_targets)
    logits = output[:, k * n_targets :]
    logits = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    return hyp, prob / prob.sum(axis=1, keepdims=True)


def head_outputs(n_targets: int, n_hypotheses: int) -> int:
    """Width of the network's last layer for a head of ``n_hypotheses`` hypotheses."""
    return n_targets if n_hypotheses == 1 else n_hypotheses * (n_targets + 1)


def labels_from_output(
    output, *, scaling: LabelScaling, head: dict, n_weights: int, n_slices: int
) -> tuple[np.ndarray, np.ndarray]:
    """Raw network output -> the paper's physical labels of every hypothesis.

    Parameters
    ----------
    output : array_like, shape (n, n_outputs)
    scaling : LabelScaling
        The card's target scaling (names of the targets).
    head : dict
        The card's ``head`` (``targets``: "paper" or "relative", ``n_hypotheses``); {} is the
        paper's head.
    n_weights, n_slices : int

    Returns
    -------
    labels : numpy.ndarray, shape (n, K, n_weights + 4)
        Hypotheses in decreasing probability (index 0 is the network's answer).
    probability : numpy.ndarray, shape (n, K)
    """
    encoding = (head or {}).get("targets", PAPER)
    k = int((head or {}).get("n_hypotheses", 1))
    hyp, prob = split_hypotheses(output, len(scaling.names), k)
    n = hyp.shape[0]
    physical = scaling.unscale(hyp.reshape(n * k, -1))
    if encoding == RELATIVE:
        physical = paper_from_relative(physical, n_weights=n_weights, n_slices=n_slices)
    elif encoding != PAPER:
        raise ValueError(f"unknown target encoding {encoding!r}")
    physical = physical.reshape(n, k, -1)
    order = np.argsort(-prob, axis=1, kind="stable")
    return (np.take_along_axis(physical, order[:, :, None], axis=1), np.take_along_axis(prob, order, axis=1))
