"""Automatic choice of a low-strain specialist: the general model answers first, and where its
answer falls in the specialist's range, the specialist answers instead.

The paper trains CNN3 on e_max <= 2 % only and reports it better there than the general CNN2
(a(strain) 76 % vs CNN2's on the same curves). :class:`RoutedPredictor` has the interface of
:class:`~xrd_strain_plugin.inference.predictor.Predictor` (``predict_scaled``,
``predict_labels``) and says, per curve, which bundle answered (``last_models``), so an
inversion result can record it.

Both bundles must read the same model grid and predict the same labels; the specialist's range
is read from its card's preset (``strain_max_percent`` and ``thickness_nm``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xrd_strain_plugin.inference.labels import decode_labels

__all__ = ["SpecialistRange", "RoutedPredictor"]


@dataclass(frozen=True, kw_only=True)
class SpecialistRange:
    """Where the specialist takes over, judged on the general model's answer.

    Attributes
    ----------
    strain_max_percent : tuple of float
        e_max range (percent) of the specialist's training set.
    thickness_nm : tuple of float
        Thickness range (nm) of the specialist's training set.
    margin : float
        Relative margin inside the upper e_max limit: the general answer must be below
        ``high * (1 - margin)`` (its e_max is uncertain by about 10 %; near the limit the general
        model, trained across it, is the safer answer).
    """

    strain_max_percent: tuple[float, float]
    thickness_nm: tuple[float, float]
    margin: float = 0.05

    @classmethod
    def from_card(cls, card, *, margin: float = 0.05) -> "SpecialistRange":
        """The range of a specialist bundle's training preset.

        Raises
        ------
        ValueError
            If the card's preset does not give the ranges.
        """
        preset = card.preset or {}
        try:
            return cls(
                strain_max_percent=tuple(map(float, preset["strain_max_percent"])),
                thickness_nm=tuple(map(float, preset["thickness_nm"])),
                margin=margin,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"model {card.model_id}: its card gives no training ranges "
                f"(preset.strain_max_percent, preset.thickness_nm)"
            ) from exc

    def contains(self, strain_max_percent, thickness_nm) -> np.ndarray:
        """Boolean mask of the answers inside the range."""
        e = np.asarray(strain_max_percent, dtype=float)
        t = np.asarray(thickness_nm, dtype=float)
        lo, hi = self.strain_max_percent
        return (e >= lo) & (e <= hi * (1 - self.margin)) & (t >= self.thickness_nm[0]) & (t <= self.thickness_nm[1])


class RoutedPredictor:
    """General model first; the specialist where the general answer falls in its range.

    Parameters
    ----------
    general, specialist : ModelBundle
        Loaded bundles with the same grid and label names.
    margin : float
        See :class:`SpecialistRange`.

    Attributes
    ----------
    last_models : list of dict
        After each call, one ``{"id", "version", "sha256", "role"}`` per curve: the bundle whose
        answer was returned (``role`` "general" or "specialist").
    """

    def __init__(self, general, specialist, *, margin: float = 0.05):
        from xrd_strain_plugin.inference.predictor import Predictor

        g, s = general.card, specialist.card
        if (g.grid != s.grid) or tuple(g.labels.names) != tuple(s.labels.names):
            raise ValueError(
                f"specialist {s.model_id} reads another grid or predicts other labels "
                f"than {g.model_id}; they cannot be combined"
            )
        if g.n_slices != s.n_slices or g.dw_mode != s.dw_mode:
            raise ValueError(
                f"specialist {s.model_id} decodes profiles differently (n_slices, dw_mode) from {g.model_id}"
            )
        self.general, self.specialist = Predictor(general), Predictor(specialist)
        self.bundle = general  # grid, labels, card of the combined predictor
        self.range = SpecialistRange.from_card(s, margin=margin)
        self.last_models: list[dict] = []

    def predict_labels(self, x) -> np.ndarray:
        """Physical labels, shape (n_batch, n_labels); see :attr:`last_models`."""
        x = np.asarray(x, dtype=np.float32)
        x = x[np.newaxis] if x.ndim == 1 else x
        labels = self.general.predict_labels(x)
        card = self.general.bundle.card
        decoded = decode_labels(labels, n_weights=card.n_weights, n_slices=card.n_slices, dw_mode=card.dw_mode)
        use = self.range.contains(decoded.strain_max_percent, decoded.thickness_nm)
        if np.any(use):
            labels[use] = self.specialist.predict_labels(x[use])
        self.last_models = [
            _describe(self.specialist.bundle if u else self.general.bundle, "specialist" if u else "general")
            for u in use
        ]
        return labels

    def predict_scaled(self, x) -> np.ndarray:
        """Labels scaled with the *general* model's scaling (for a common MSE)."""
        return self.general.bundle.card.labels.scale(self.predict_labels(x))


def _describe(bundle, role: str) -> dict:
    card = bundle.card
    return {"id": card.model_id, "version": card.version, "sha256": card.weights_sha256, "role": role}
