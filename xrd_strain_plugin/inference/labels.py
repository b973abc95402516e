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

__all__ = ["DecodedLabels", "LabelScaling", "decode_labels", "strain_max_percent"]

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
        return {"names": list(self.names), "minimum": list(self.minimum),
                "maximum": list(self.maximum)}

    @classmethod
    def from_dict(cls, data: dict) -> "LabelScaling":
        return cls(names=tuple(data["names"]), minimum=tuple(data["minimum"]),
                   maximum=tuple(data["maximum"]))


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


def decode_labels(labels, *, n_weights: int, n_slices: int, clip: bool = True,
                  dw_mode: str = "coupled") -> DecodedLabels:
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
        raise ValueError(f"dw_mode {dw_mode!r}: these labels carry no DW-shape weights; only 'coupled' "
                         "models can be decoded (training/presets.DW_MODES)")
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
    return DecodedLabels(strain=strain, debye_waller=dw, strain_max_percent=e_max, dw_min=dw_min,
                         thickness_nm=thickness, resolution_fwhm_deg=fwhm, dynamic_range=dyn)
