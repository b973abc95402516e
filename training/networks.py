"""The paper's 1D convolutional network (Boulle & Debelle 2023, figure 3), in Keras 3.

Only ``keras`` layers are used, no backend-specific ops, so the same code trains under the
TensorFlow backend (default here) and the JAX backend (the GPU machine has no TensorFlow).
"""

from __future__ import annotations

__all__ = ["build_cnn", "N_INPUT", "FILTERS"]

N_INPUT = 1001
FILTERS = (16, 32, 64, 128)


def build_cnn(
    *,
    n_input: int = N_INPUT,
    n_labels: int = 14,
    filters: tuple[int, ...] = FILTERS,
    kernel_size: int = 15,
    dense_units: tuple[int, ...] = (1000, 100),
    name: str = "xrd_strain_cnn",
):
    """Build the paper's network (about 1.1 M parameters with the defaults).

    Four blocks of two ``Conv1D`` layers (kernel 15, 'same' padding, the first of each block with
    stride 2), each conv followed by batch normalisation and ReLU, each block ending in max-pooling
    by 2; flatten (4 x 128 = 512 features for a 1001-point input); Dense 1000, BN, ReLU; Dense 100,
    BN, ReLU; Dense ``n_labels`` linear.

    Parameters
    ----------
    n_input : int
        Points of the model input, shape of one sample ``(n_input, 1)`` (log10 of the normalised
        intensity on the model grid).
    n_labels : int
        Number of outputs (min-max scaled labels).
    filters : tuple of int
        Filters of each conv block.
    kernel_size : int
        Kernel length of every conv layer, in grid points.
    dense_units : tuple of int
        Widths of the hidden dense layers; the widening to 1000 was essential in the paper.
    name : str
        Keras model name.

    Returns
    -------
    keras.Model
        Uncompiled model mapping ``(n_batch, n_input, 1)`` to ``(n_batch, n_labels)``.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(n_input, 1), name="log_intensity")
    x = inputs
    for block, n_filters in enumerate(filters):
        for conv in range(2):
            x = layers.Conv1D(
                n_filters,
                kernel_size,
                strides=2 if conv == 0 else 1,
                padding="same",
                use_bias=True,
                name=f"conv{block + 1}_{conv + 1}",
            )(x)
            x = layers.BatchNormalization(name=f"bn{block + 1}_{conv + 1}")(x)
            x = layers.ReLU(name=f"relu{block + 1}_{conv + 1}")(x)
        x = layers.MaxPooling1D(2, name=f"pool{block + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units):
        x = layers.Dense(units, name=f"dense{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn_dense{i + 1}")(x)
        x = layers.ReLU(name=f"relu_dense{i + 1}")(x)
    outputs = layers.Dense(n_labels, activation="linear", name="labels")(x)
    return keras.Model(inputs, outputs, name=name)
