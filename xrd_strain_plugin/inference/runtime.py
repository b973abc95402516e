"""A light runtime: the bundle's network as a pure-numpy forward pass (no TensorFlow, no Keras).

Importing TensorFlow and loading a ``.keras`` file cost seconds; the network itself (about
1.1 M parameters, convolutions on a 1001-point curve) runs in milliseconds in numpy. A bundle
therefore also carries ``network.npz``: every layer's weights in network order plus a JSON
description of the layers, written by :func:`export_network` from the Keras model and checked
against it (:func:`check_against_keras`). Its sha256 is in the card (``runtime.numpy``), and
:func:`xrd_strain_plugin.inference.bundle.load_bundle` verifies it before use, as it verifies
``model.keras``. Keras stays the training and reference path.

Supported layers (those of :func:`xrd_strain_training.networks.build_cnn`): InputLayer, Conv1D (stride,
'same'/'valid' padding), BatchNormalization (inference form), ReLU, MaxPooling1D,
AveragePooling1D ('same' averages only the points inside), Flatten, Dense (linear or ReLU), and
Activation ('linear', 'relu'). A network with any other layer gets no numpy runtime and loads
with Keras.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["NumpyNetwork", "export_network", "check_against_keras", "UnsupportedLayer", "NETWORK_FILE", "FORMAT"]

NETWORK_FILE = "network.npz"
FORMAT = 1
_SPEC_KEY = "__layers__"


class UnsupportedLayer(ValueError):
    """The network has a layer the numpy runtime does not implement."""


def _layer_spec(layer) -> dict:
    """JSON description of one Keras layer (weights go separately)."""
    kind = type(layer).__name__
    cfg = layer.get_config()
    spec = {"kind": kind, "name": layer.name}
    if kind == "InputLayer":
        return spec
    if kind == "Conv1D":
        if cfg.get("dilation_rate", (1,)) not in ((1,), [1], 1) or cfg.get("groups", 1) != 1:
            raise UnsupportedLayer(f"{layer.name}: dilated or grouped Conv1D")
        if cfg["padding"] not in ("same", "valid") or cfg.get("data_format") != "channels_last":
            raise UnsupportedLayer(f"{layer.name}: Conv1D padding {cfg['padding']!r}")
        spec.update(
            stride=int(np.ravel(cfg["strides"])[0]),
            padding=cfg["padding"],
            activation=cfg["activation"],
            use_bias=bool(cfg["use_bias"]),
        )
    elif kind == "BatchNormalization":
        if cfg["axis"] not in (-1, [-1]) and np.ravel(cfg["axis"])[0] != len(layer.input.shape) - 1:
            raise UnsupportedLayer(f"{layer.name}: BatchNormalization on axis {cfg['axis']}")
        spec.update(epsilon=float(cfg["epsilon"]), center=bool(cfg["center"]), scale=bool(cfg["scale"]))
    elif kind == "ReLU":
        if cfg.get("max_value") is not None or cfg.get("negative_slope", 0) or cfg.get("threshold", 0):
            raise UnsupportedLayer(f"{layer.name}: ReLU with options")
    elif kind in ("MaxPooling1D", "AveragePooling1D"):
        spec.update(
            pool=int(np.ravel(cfg["pool_size"])[0]),
            stride=int(np.ravel(cfg["strides"] or cfg["pool_size"])[0]),
            padding=cfg["padding"],
        )
    elif kind == "Flatten":
        pass
    elif kind == "Dense":
        spec.update(activation=cfg["activation"], use_bias=bool(cfg["use_bias"]))
    elif kind == "Activation":
        spec.update(activation=cfg["activation"])
    else:
        raise UnsupportedLayer(f"layer {layer.name} of type {kind}")
    if spec.get("activation", "linear") not in ("linear", "relu"):
        raise UnsupportedLayer(f"{layer.name}: activation {spec['activation']!r}")
    return spec


def export_network(model, path) -> None:
    """Write ``model``'s layers and weights as a numpy network file (``network.npz``).

    Raises
    ------
    UnsupportedLayer
        If the network is not a chain of the supported layers.
    """
    specs, arrays = [], {}
    previous = None
    for index, layer in enumerate(model.layers):
        spec = _layer_spec(layer)
        if index:
            inbound = layer.input
            if isinstance(inbound, (list, tuple)) or inbound is not previous.output:
                raise UnsupportedLayer(f"{layer.name}: the network is not a plain chain")
        previous = layer
        names = []
        for k, weight in enumerate(layer.weights):
            key = f"{index:03d}_{k}"
            arrays[key] = np.asarray(weight.numpy(), dtype=np.float32)
            names.append((weight.path if hasattr(weight, "path") else weight.name).split("/")[-1])
        spec["weights"] = names
        specs.append(spec)
    header = {
        "format": FORMAT,
        "input_shape": list(model.input_shape[1:]),
        "output_shape": list(model.output_shape[1:]),
        "layers": specs,
    }
    arrays[_SPEC_KEY] = np.array(json.dumps(header))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


class NumpyNetwork:
    """A network read from ``network.npz``, evaluated with numpy (float32, inference mode).

    Attributes
    ----------
    input_shape, output_shape : tuple
        ``(None, n_points, 1)`` and ``(None, n_labels)``, as Keras reports them.
    """

    def __init__(self, layers: list[tuple[dict, list[np.ndarray]]], input_shape, output_shape):
        self._layers = layers
        self.input_shape = (None, *input_shape)
        self.output_shape = (None, *output_shape)

    @classmethod
    def load(cls, path) -> "NumpyNetwork":
        """Read a network file.

        Raises
        ------
        ValueError
            If the file is not a network file of a supported format.
        """
        with np.load(Path(path), allow_pickle=False) as data:
            if _SPEC_KEY not in data:
                raise ValueError(f"{path} is not a numpy network file")
            header = json.loads(str(data[_SPEC_KEY]))
            if header.get("format") != FORMAT:
                raise ValueError(
                    f"{path}: network format {header.get('format')!r} is not supported (this code reads {FORMAT})"
                )
            layers = []
            for index, spec in enumerate(header["layers"]):
                weights = [data[f"{index:03d}_{k}"] for k in range(len(spec["weights"]))]
                layers.append((spec, _prepare(spec, weights)))
        return cls(layers, header["input_shape"], header["output_shape"])

    def __call__(self, x) -> np.ndarray:
        """Outputs for inputs ``x`` of shape ``(n_batch, n_points, 1)`` (float32)."""
        x = np.asarray(x, dtype=np.float32)
        for spec, weights in self._layers:
            x = _FORWARD[spec["kind"]](x, spec, weights)
        return x


def _prepare(spec, weights):
    """Precompute what the forward pass needs (folded batch norm, reshaped kernels)."""
    kind = spec["kind"]
    if kind == "BatchNormalization":
        it = iter(weights)
        gamma = next(it) if spec["scale"] else None
        beta = next(it) if spec["center"] else None
        mean, var = next(it), next(it)
        mult = 1.0 / np.sqrt(var.astype(np.float64) + spec["epsilon"])
        if gamma is not None:
            mult = mult * gamma
        shift = -mean * mult + (beta if beta is not None else 0.0)
        return [mult.astype(np.float32), shift.astype(np.float32)]
    if kind == "Conv1D":
        kernel = weights[0]  # (k, c_in, c_out)
        k, c_in, c_out = kernel.shape
        bias = weights[1] if spec["use_bias"] else np.zeros(c_out, np.float32)
        # rows ordered (c_in, k): the layout of numpy's sliding windows, so no transpose
        return [np.ascontiguousarray(kernel.transpose(1, 0, 2).reshape(c_in * k, c_out)), bias, k]
    if kind == "Dense":
        bias = weights[1] if spec["use_bias"] else np.zeros(weights[0].shape[1], np.float32)
        return [weights[0], bias]
    return weights


def _same_padding(n, k, stride):
    """Keras/TensorFlow 'same' padding: (left, right, n_out)."""
    n_out = -(-n // stride)
    total = max((n_out - 1) * stride + k - n, 0)
    return total // 2, total - total // 2, n_out


def _activate(x, name):
    return np.maximum(x, 0.0) if name == "relu" else x


def _conv1d(x, spec, weights):
    kernel, bias, k = weights
    stride = spec["stride"]
    n = x.shape[1]
    if spec["padding"] == "same":
        left, right, n_out = _same_padding(n, k, stride)
        x = np.pad(x, ((0, 0), (left, right), (0, 0)))
    else:
        n_out = (n - k) // stride + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, k, axis=1)[:, ::stride][:, :n_out]
    patches = windows.reshape(x.shape[0] * n_out, -1)  # (b n_out, c_in k), one copy
    out = (patches @ kernel).reshape(x.shape[0], n_out, -1)
    out += bias
    return _activate(out, spec["activation"])


def _pool(x, spec, weights, reduce):
    pool, stride = spec["pool"], spec["stride"]
    n = x.shape[1]
    if spec["padding"] == "same":
        left, right, n_out = _same_padding(n, pool, stride)
        fill = -np.inf if reduce is np.max else np.nan
        x = np.pad(x, ((0, 0), (left, right), (0, 0)), constant_values=fill)
    else:
        n_out = (n - pool) // stride + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, pool, axis=1)[:, ::stride][:, :n_out]
    if reduce is np.max:
        return windows.max(axis=-1)
    if spec["padding"] != "same":
        return windows.mean(axis=-1)
    return np.nanmean(windows, axis=-1)  # 'same' averages only the points inside


def _batch_norm(x, spec, weights):
    return x * weights[0] + weights[1]


def _dense(x, spec, weights):
    return _activate(x @ weights[0] + weights[1], spec["activation"])


_FORWARD = {
    "InputLayer": lambda x, spec, w: x,
    "Conv1D": _conv1d,
    "BatchNormalization": _batch_norm,
    "ReLU": lambda x, spec, w: np.maximum(x, 0.0),
    "MaxPooling1D": lambda x, spec, w: _pool(x, spec, w, np.max),
    "AveragePooling1D": lambda x, spec, w: _pool(x, spec, w, np.mean),
    "Flatten": lambda x, spec, w: x.reshape(x.shape[0], -1),
    "Dense": _dense,
    "Activation": lambda x, spec, w: _activate(x, spec["activation"]),
}


def check_against_keras(model, network: NumpyNetwork, x, *, atol: float = 1e-4) -> float:
    """Largest absolute difference of the two forward passes on ``x`` (n, n_points, 1).

    Raises
    ------
    ValueError
        If it exceeds ``atol`` (in the network's output units: scaled labels in [0, 1]).
    """
    ref = np.asarray(model(np.asarray(x, dtype=np.float32), training=False))
    diff = float(np.max(np.abs(ref - network(x))))
    if not diff <= atol:
        raise ValueError(f"numpy forward pass differs from Keras by {diff:.2e} (> {atol:g})")
    return diff
