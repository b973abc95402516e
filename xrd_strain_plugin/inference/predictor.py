"""Batched network predictor: model-grid curves in, physical labels out.

One curve goes through a compiled call of ``model(x, training=False)`` (about 5 ms on a 2-core
CPU; ``model.predict`` costs ~100 ms of per-call set-up), or through the numpy network of the
bundle (about 3 ms, no framework); batches go through in chunks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Predictor", "EnsemblePredictor"]


class Predictor:
    """Run a bundle's network on model-grid curves.

    Parameters
    ----------
    bundle : ModelBundle
        Loaded bundle (:func:`xrd_strain_plugin.inference.bundle.load_bundle`).
    chunk_size : int
        Curves per forward pass for large batches.
    """

    def __init__(self, bundle, *, chunk_size: int = 1024):
        self.bundle = bundle
        self.chunk_size = int(chunk_size)
        self._call = _compiled_call(bundle.model)

    def predict_scaled(self, x) -> np.ndarray:
        """Raw network output: the scaled targets ([0, 1] over the training set), and for a
        multi-hypothesis head K blocks of them followed by K logits.

        Parameters
        ----------
        x : array_like, shape (n_batch, n_points) or (n_points,)
            ``log10(I / I_max)`` on the bundle's model grid.

        Returns
        -------
        numpy.ndarray, shape (n_batch, card.n_outputs), float32
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[np.newaxis]
        n_points = self.bundle.card.grid.n_points
        if x.ndim != 2 or x.shape[1] != n_points:
            raise ValueError(f"model input must have shape (n_batch, {n_points}), got {x.shape}")
        outputs = [
            np.asarray(self._call(x[i : i + self.chunk_size, :, np.newaxis]))
            for i in range(0, x.shape[0], self.chunk_size)
        ]
        return np.concatenate(outputs).astype(np.float32)

    def predict_labels(self, x) -> np.ndarray:
        """The paper's physical labels (weights in percent, dw_min, t in nm, H in deg, DR),
        (n_batch, n_weights + 4): the network's answer (its most probable hypothesis)."""
        return self.predict_proposals(x)[0][:, 0]

    def predict_proposals(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Every hypothesis of the head, most probable first.

        Returns
        -------
        labels : numpy.ndarray, shape (n_batch, K, n_weights + 4)
            The paper's physical labels of each hypothesis (K = 1 for a one-answer head).
        probability : numpy.ndarray, shape (n_batch, K)
            The head's own probability of each (softmax of its logits; 1 for K = 1).
        """
        from xrd_strain_plugin.inference.labels import labels_from_output

        card = self.bundle.card
        return labels_from_output(
            self.predict_scaled(x),
            scaling=card.labels,
            head=card.head,
            n_weights=card.n_weights,
            n_slices=card.n_slices,
        )


def _compiled_call(model):
    """``model(x, training=False)`` compiled for the active Keras backend where possible; the
    numpy network (:mod:`xrd_strain_plugin.inference.runtime`) is called as it is."""
    from xrd_strain_plugin.inference.runtime import NumpyNetwork

    if isinstance(model, NumpyNetwork):
        return model
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    # Other backends: Keras' own compiled inference step.
    return model.predict_on_batch


class EnsemblePredictor:
    """Several bundles of one key as one predictor whose proposals are every member's answers.

    The first bundle answers (``predict_labels``); ``predict_proposals`` returns each member's
    hypotheses in member order (all K of a multi-hypothesis member), so
    :meth:`~xrd_strain_plugin.inference.invert.Inverter.propose` screens them all. The members'
    probabilities are not comparable across networks: each member's block is weighted equally.

    Parameters
    ----------
    bundles : sequence of ModelBundle
        Same model grid and reflection (checked on the grid).
    """

    def __init__(self, bundles, *, chunk_size: int = 1024):
        bundles = list(bundles)
        if not bundles:
            raise ValueError("an ensemble needs at least one bundle")
        grid = bundles[0].card.grid
        for b in bundles[1:]:
            if b.card.grid != grid:
                raise ValueError(f"{b.path}: model grid {b.card.grid} differs from {grid}")
        self.bundle = bundles[0]
        self.members = [Predictor(b, chunk_size=chunk_size) for b in bundles]

    def predict_labels(self, x) -> np.ndarray:
        return self.members[0].predict_labels(x)

    def predict_proposals(self, x) -> tuple[np.ndarray, np.ndarray]:
        labels, probs = zip(*(m.predict_proposals(x) for m in self.members))
        weight = 1.0 / len(self.members)
        return np.concatenate(labels, axis=1), np.concatenate([p * weight for p in probs], axis=1)
