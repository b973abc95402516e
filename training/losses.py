"""A loss that scores what Table 2 scores (issue 14), with a multi-hypothesis head.

Targets are the "relative" ones of :mod:`xrd_strain_plugin.inference.labels` (shape weights
divided by e_max, ln e_max, ln DW_min, ln t, ln H, DR), min-max scaled. For one hypothesis:

    L = w_p mean_z (r S_pred(z) / max|S_pred| - S_true(z))^2      profile, relative to e_max
        + (d ln e_max)^2 + (d ln DW_min)^2 + (d ln t)^2 + (d ln H)^2 + (d DR / DR)^2

with ``S(z) = B(z) w`` the linear B-spline map of the shape weights read at ``n_z`` reduced
depths and ``r = e_max,pred / e_max,true``: the first term is (sigma_e / e_max)^2 in reduced
depth (weighted by ``profile_weight`` w_p), the others are squared relative errors, the quantities whose 10 % thresholds define
a(strain), a(e_max), a(DW), a(t), a(H) and a(DR). Every term is differentiable (the spline map
is linear; the max is a sub-gradient).

With K hypotheses (output: K blocks of targets, then K logits) the loss is relaxed
winner-takes-all: the hypothesis with the lowest L gets weight 1 - eps, the others eps / (K - 1),
plus ``logit_weight`` x the cross-entropy of the logits against the winner, so the head also
says which of its answers it trusts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ProfileLoss"]


def _register(cls):
    import keras

    return keras.saving.register_keras_serializable(package="xrd_strain")(cls)


def _make():
    import keras
    from keras import ops

    from xrd_strain_plugin.physics import profiles

    @_register
    class ProfileLoss(keras.losses.Loss):
        """Score-aligned loss on relative targets (module docstring).

        Parameters
        ----------
        minimum, maximum : sequence of float
            The target scaling (``LabelScaling`` of the relative targets).
        n_weights : int
            Shape weights among the targets.
        n_hypotheses : int
            K (1: a plain head of ``len(minimum)`` outputs).
        n_z : int
            Reduced depths at which the profiles are compared.
        eps, logit_weight : float
            Relaxed winner-takes-all share of the losers; weight of the logits' cross-entropy.
        profile_weight : float
            Weight of the profile term against the five scalar terms (1: equal per term; the
            paper's MSE gives the 10 shape weights 10 of its 14 terms).
        """

        def __init__(
            self,
            minimum,
            maximum,
            n_weights: int = 10,
            n_hypotheses: int = 1,
            n_z: int = 64,
            eps: float = 0.05,
            logit_weight: float = 0.05,
            profile_weight: float = 1.0,
            name: str = "profile_loss",
            **kwargs,
        ):
            super().__init__(name=name, **kwargs)
            self.minimum = [float(v) for v in minimum]
            self.maximum = [float(v) for v in maximum]
            self.n_weights = int(n_weights)
            self.n_hypotheses = int(n_hypotheses)
            self.n_z = int(n_z)
            self.eps = float(eps)
            self.logit_weight = float(logit_weight)
            self.profile_weight = float(profile_weight)
            self._lo = np.asarray(self.minimum, dtype="float32")
            self._span = (np.asarray(self.maximum) - np.asarray(self.minimum)).astype("float32")
            self._basis = profiles.profile_basis(self.n_weights, self.n_z).T.astype("float32")

        def per_hypothesis(self, y_true, y_pred):
            """Loss of every hypothesis, shape (n, K)."""
            return _per_hypothesis(ops, self, y_true, y_pred)

        def call(self, y_true, y_pred):
            losses = self.per_hypothesis(y_true, y_pred)
            k = self.n_hypotheses
            if k == 1:
                return losses[:, 0]
            logits = ops.cast(y_pred[:, k * len(self.minimum) :], "float32")
            return _relaxed_winner_takes_all(ops, losses, logits, eps=self.eps, logit_weight=self.logit_weight)

        def get_config(self):
            return {**super().get_config(), **{name: getattr(self, name) for name in _CONFIG}}

    return ProfileLoss


#: The constructor's arguments that a saved loss carries (``get_config``).
_CONFIG = ("minimum", "maximum", "n_weights", "n_hypotheses", "n_z", "eps", "logit_weight", "profile_weight")


def _per_hypothesis(ops, loss, y_true, y_pred):
    """Loss of every hypothesis, shape (n, K): the terms of the module docstring.

    ``loss`` carries the scaling (``_lo``, ``_span``), ``n_weights``, ``n_hypotheses``, the spline
    map ``_basis`` (n_weights, n_z) and ``profile_weight``. The profile term compares shapes
    normalised by their largest magnitude, the prediction's rescaled by r = e_max,pred / e_max,true:
    (sigma_e / e_max)^2 in reduced depth; the scalar terms are squared relative errors (logs of
    e_max, DW_min, t, H; DR divided by the true DR).
    """
    n_t, k = len(loss.minimum), loss.n_hypotheses
    lo, span = ops.convert_to_tensor(loss._lo), ops.convert_to_tensor(loss._span)
    basis = ops.convert_to_tensor(loss._basis)
    true = ops.cast(y_true, "float32") * span + lo  # (n, T)
    pred = ops.reshape(ops.cast(y_pred[:, : k * n_t], "float32"), (-1, k, n_t)) * span + lo
    nw = loss.n_weights
    s_true = ops.matmul(true[:, :nw], basis)  # (n, Z)
    s_true = s_true / ops.maximum(ops.max(ops.abs(s_true), axis=-1, keepdims=True), 1e-3)
    s_pred = ops.matmul(pred[:, :, :nw], basis)  # (n, K, Z)
    s_pred = s_pred / ops.maximum(ops.max(ops.abs(s_pred), axis=-1, keepdims=True), 0.05)
    d = pred[:, :, nw:] - true[:, None, nw:]  # (n, K, 5)
    ratio = ops.exp(ops.clip(d[:, :, 0], -3.0, 3.0))
    profile = ops.mean(ops.square(ratio[:, :, None] * s_pred - s_true[:, None, :]), axis=-1)
    dr = d[:, :, 4] / ops.maximum(true[:, None, nw + 4], 0.5)
    return loss.profile_weight * profile + ops.sum(ops.square(d[:, :, :4]), axis=-1) + ops.square(dr)


def _relaxed_winner_takes_all(ops, losses, logits, *, eps: float, logit_weight: float):
    """Relaxed winner-takes-all over K hypotheses, shape (n,).

    The hypothesis with the lowest loss weighs 1 - eps, each other eps / (K - 1); plus
    ``logit_weight`` x the cross-entropy of the logits against the winner (the head learns which
    answer to trust). ``losses``: (n, K); ``logits``: (n, K).
    """
    k = losses.shape[-1]
    winner = ops.argmin(ops.stop_gradient(losses), axis=-1)
    onehot = ops.one_hot(winner, k)
    share = onehot * (1.0 - eps) + (1.0 - onehot) * (eps / (k - 1))
    ce = -ops.sum(onehot * ops.log_softmax(logits, axis=-1), axis=-1)
    return ops.sum(share * losses, axis=-1) + logit_weight * ce


_CLASS = None


def __getattr__(name):
    global _CLASS
    if name == "ProfileLoss":
        if _CLASS is None:
            _CLASS = _make()
        return _CLASS
    raise AttributeError(name)
