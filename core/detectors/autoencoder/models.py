"""The networks: the Neighbor Convolution AutoEncoder (NCAE) and the plain CAE baseline.

Both are the same encoder–decoder; only the first layer differs. The NCAE's first layer is a
:class:`~core.detectors.autoencoder.layers.NeighborConv2D`, so no pixel can pass straight through to its own
reconstruction; the CAE's is an ordinary 3×3 convolution.
"""

from __future__ import annotations

import keras
from keras import layers

from core.defaults import DEFAULT_BOTTLENECK, DEFAULT_INPUT_SIZE, DEFAULT_WIDTHS
from core.detectors.autoencoder import ENTRIES
from core.detectors.autoencoder.layers import NeighborConv2D


def build_autoencoder(kind: str = "ncae", input_size: int = DEFAULT_INPUT_SIZE, widths=DEFAULT_WIDTHS,
                      bottleneck: int = DEFAULT_BOTTLENECK, noise_std: float = 0.0, channels: int = 1,
                      any_size: bool = False) -> keras.Model:
    """Build an NCAE or CAE for ``input_size``×``input_size`` images in [0, 1] with ``channels`` channels.

    Args:
        kind: ``"ncae"`` (neighbour-convolution first layer) or ``"cae"`` (ordinary first layer).
        input_size: side of the square input (of the training patch when ``any_size``); must be
            divisible by ``2 ** len(widths)``.
        widths: channels of each stride-2 encoder stage (mirrored by the decoder).
        bottleneck: channels of the code at ``input_size / 2 ** len(widths)`` resolution.
        noise_std: standard deviation of Gaussian noise added to the input during training only
            (denoising training: noisy input, clean target). 0 turns it off.
        channels: 1 (grey) or 3 (RGB); the reconstruction has as many.
        any_size: build the network fully convolutional (input ``(None, None, channels)``), so it can
            be trained on patches and run on whole images whose sides are multiples of
            ``2 ** len(widths)``.
    """
    if kind not in ENTRIES:
        raise ValueError(f"`kind` must be one of {', '.join(ENTRIES)}, got {kind!r}.")
    widths = tuple(int(width) for width in widths)
    if not widths or any(width < 1 for width in widths):
        raise ValueError(f"`widths` must be a non-empty sequence of positive integers, got {widths!r}.")
    if bottleneck < 1:
        raise ValueError(f"`bottleneck` must be a positive integer, got {bottleneck!r}.")
    stride_total = 2 ** len(widths)
    if input_size < stride_total or input_size % stride_total:
        raise ValueError(f"`input_size` must be a positive multiple of {stride_total} for {len(widths)} "
                         f"encoder stages, got {input_size!r}.")
    if noise_std < 0:
        raise ValueError(f"`noise_std` must be zero or positive, got {noise_std!r}.")
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3, got {channels!r}.")

    side = None if any_size else input_size
    inputs = keras.Input(shape=(side, side, channels), name="image")
    features = layers.GaussianNoise(noise_std, name="denoising_noise")(inputs) if noise_std > 0 else inputs
    if kind == "ncae":
        features = NeighborConv2D(widths[0], name="neighbor_conv")(features)
    else:
        features = layers.Conv2D(widths[0], 3, padding="same", activation="relu", name="first_conv")(features)
    for stage, width in enumerate(widths):
        features = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu",
                                 name=f"encoder_{stage}")(features)
    code = layers.Conv2D(bottleneck, 1, activation="relu", name="bottleneck")(features)
    features = code
    for stage, width in reversed(list(enumerate(widths))):
        features = layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu",
                                          name=f"decoder_{stage}")(features)
    outputs = layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name="reconstruction")(features)
    return keras.Model(inputs, outputs, name=kind)


def build_ncae(input_size: int = DEFAULT_INPUT_SIZE, widths=DEFAULT_WIDTHS, bottleneck: int = DEFAULT_BOTTLENECK,
               noise_std: float = 0.0) -> keras.Model:
    return build_autoencoder("ncae", input_size, widths, bottleneck, noise_std)


def build_cae(input_size: int = DEFAULT_INPUT_SIZE, widths=DEFAULT_WIDTHS, bottleneck: int = DEFAULT_BOTTLENECK,
              noise_std: float = 0.0) -> keras.Model:
    return build_autoencoder("cae", input_size, widths, bottleneck, noise_std)
