"""The neighbor convolution: each output pixel sees the 8 neighbours of an input pixel, never the pixel.

Fused form (what the layer runs): a 3×3 convolution with zero "same" padding whose centre tap is
multiplied by zero on every call, so training can never move it. Reference form (what the NCAE
paper describes, kept here to prove the two equal): zero-pad by one pixel, take the 8 shifted
copies that leave the centre out, concatenate them to 8·C channels and apply a 1×1 convolution
with bias. Both end in the same activation (ReLU by default).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

NEIGHBOUR_OFFSETS = tuple((row, column) for row in range(3) for column in range(3) if (row, column) != (1, 1))


def _centre_free_mask(channels: int, filters: int) -> np.ndarray:
    mask = np.ones((3, 3, channels, filters), dtype="float32")
    mask[1, 1] = 0.0
    return mask


@keras.saving.register_keras_serializable(package="residual_lab")
class NeighborConv2D(keras.layers.Layer):
    """3×3 convolution over the 8 neighbours of each pixel, with zero padding at the border.

    Args:
        filters: number of output channels.
        activation: activation applied after the bias (default ``"relu"``).
        use_bias: whether to add a bias per output channel.
        kernel_initializer, bias_initializer: Keras initialisers.
    """

    def __init__(self, filters, activation="relu", use_bias=True, kernel_initializer="he_normal",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"`filters` must be a positive integer, got {filters!r}.")
        self.filters = filters
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"NeighborConv2D expects input of shape (batch, height, width, channels) with known channels, "
                f"got {input_shape}."
            )
        channels = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(3, 3, channels, self.filters),
                                      initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
                     if self.use_bias else None)
        self._centre_mask = ops.convert_to_tensor(_centre_free_mask(channels, self.filters))

    def call(self, inputs):
        outputs = ops.conv(inputs, self.kernel * self._centre_mask, strides=1, padding="same")
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
        )
        return config


def neighbor_conv_reference(inputs, kernel, bias=None, activation="relu"):
    """The paper's formulation, with the fused layer's weights: pad, 8 shifts, concat, 1×1 conv."""
    height, width = inputs.shape[1], inputs.shape[2]
    padded = ops.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]])
    shifted = [padded[:, row:row + height, column:column + width, :] for row, column in NEIGHBOUR_OFFSETS]
    stacked = ops.concatenate(shifted, axis=-1)
    pointwise = ops.concatenate([kernel[row, column] for row, column in NEIGHBOUR_OFFSETS], axis=0)
    outputs = ops.conv(stacked, ops.reshape(pointwise, (1, 1, *pointwise.shape)), padding="valid")
    if bias is not None:
        outputs = outputs + bias
    return keras.activations.get(activation)(outputs)
