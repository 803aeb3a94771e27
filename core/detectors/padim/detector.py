"""PaDiM ("a Patch Distribution Modeling Framework"), the memory bank's cheaper sibling.

Instead of keeping good patches, PaDiM keeps one Gaussian per patch position: the mean and
covariance of the good images' patch features there. A test patch's score is its Mahalanobis
distance to its position's Gaussian; the image score is the largest one, the pixel map the score
grid upsampled and smoothed. Fitting is one pass over the good images (no coreset search), and
scoring is a fixed amount of arithmetic per patch, whatever the number of training images.

Features come from the memory bank's EfficientNet-Lite0 ImageNet network at 224 px
(:mod:`core.detectors.memory_bank.detector`), but from one layer: the end of stage 3 (stride 8, 40 channels,
each position averaged over its 3×3 neighbours, on its own 28×28 grid). See
:data:`PADIM_FEATURE_LAYERS` for how that was chosen. Each position's Gaussian pools the features
of its 3×3 neighbourhood of positions: with 50–200 training images, covariances from one position
alone are too noisy to invert. The border needs no calibration here: every position has its own
Gaussian, padding effects included.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.detectors.base import BaseDetector, ScoreResult, saved_parameters, smoothed_maps
from core.detectors.common.patch_features import (PACKAGED_BACKBONE, backbone_weights_digest, check_backbone_weights,
                                                  imagenet_features, upsample_maps)

PADIM_COLUMN = "padim_score"
# The end of EfficientNet-Lite0's stage 3 alone (stride 8), on its own grid. Chosen across data sets, never on
# the set it is judged on: over 3 seeds it had the best mean image AUROC on the six sets other than the generated
# woven texture (demo 1.000, object 0.998, brick 0.862, burlap 0.911, granite 0.871, walnut 0.980), against the
# memory bank's stages 2+3 on the stride-4 grid (the earlier default: brick 0.738, burlap 0.866, granite 0.850,
# walnut 0.969), the same two on the stride-8 grid, stage 2, 4 or 5 alone, and stages 3+4. Only then was it
# measured on the texture: 0.953 against 0.944. On woven textures generated with seeds 3-5 (used for no choice;
# benchmarks/texture_seeds.py) it gives 0.888-0.895 against the earlier layers' 0.887-0.904: neither sees broken
# threads there (0.55-0.62); the lattice detector does.
# Smaller too: 40-dimensional Gaussians on 28x28 positions, not 64 on 56x56.
PADIM_FEATURE_LAYERS = ("block_4_out",)
# what runs saved before the layer was a parameter were fitted on
EARLIER_PADIM_FEATURE_LAYERS = ("block_2_out", "block_4_out")


class PadimDetector(BaseDetector):
    """Per-position Gaussians over ImageNet patch features; ``fit(good_images)``, ``score(images)``.

    Parameters:
        regularisation: added to each covariance's diagonal (the paper's ε), as a share of the
            features' mean variance.
        feature_layers: the EfficientNet-Lite0 layers whose features are modelled (see
            :data:`PADIM_FEATURE_LAYERS`).
        map_sigma: Gaussian smoothing of the pixel map in input pixels (``None``: σ = 4 at 224 px).
    """

    kind = "padim"
    primary_score = PADIM_COLUMN
    score_columns = (PADIM_COLUMN,)
    fitted_attribute = "precision_"
    def __init__(self, regularisation=0.01, map_sigma=None, seed=0, channels=3, feature_layers=PADIM_FEATURE_LAYERS):
        self.channels = channels  # ImageNet features see colour; 1 reads grey, repeated to RGB
        self.regularisation = regularisation
        self.feature_layers = tuple(feature_layers)
        self.map_sigma = map_sigma
        self.seed = seed
        self._lock = threading.Lock()

    @property
    def input_size(self) -> int:
        from core.detectors.features.efficientnet_lite import NATIVE_INPUT_SIZE

        return NATIVE_INPUT_SIZE

    def fit(self, good_images: np.ndarray, image_sizes=None, progress=None, should_stop=None) -> "PadimDetector":
        """Fit the Gaussians on the good images, holding out 15 % (as the other detectors do) to set the
        default decision from good images only."""
        from scipy import ndimage

        started = time.perf_counter()
        images = np.asarray(good_images, dtype=np.float32)
        if len(images) < 2:
            raise ValueError(f"PaDiM needs at least 2 good images, got {len(images)}.")
        split = self._split(len(images))
        held_out, fitting = images[split.calibration], images[split.training]
        held_out_count = len(held_out)
        self.extractor_ = imagenet_features(PACKAGED_BACKBONE, self.feature_layers)
        with self._lock:
            features = self.extractor_(fitting, should_stop=should_stop).astype(np.float64)
        self.n_train_images_, self.n_held_out_images_ = len(fitting), held_out_count
        count, height, width, dim = features.shape
        # moments pooled over each position's 3x3 neighbourhood of positions, over all images
        mean = ndimage.uniform_filter(features.mean(axis=0), size=(3, 3, 1), mode="nearest")
        second = np.einsum("nhwi,nhwj->hwij", features, features) / count
        second = ndimage.uniform_filter(second, size=(3, 3, 1, 1), mode="nearest")
        covariance = second - np.einsum("hwi,hwj->hwij", mean, mean)
        ridge = float(self.regularisation) * float(np.mean(np.diagonal(covariance, axis1=2, axis2=3)))
        covariance += ridge * np.eye(dim)
        self.mean_ = mean.astype(np.float32)
        self.precision_ = np.linalg.inv(covariance).astype(np.float32)
        self.grid_shape_ = (height, width)
        self._calibrate(images, image_sizes, self.score(held_out).table[PADIM_COLUMN] if held_out_count else [])
        self.training_seconds_ = time.perf_counter() - started
        return self

    def score(self, images: np.ndarray, with_maps: bool = False, batch_size: int = 32) -> ScoreResult:
        self._check_fitted()
        images = np.asarray(images, dtype=np.float32)
        grids = [self._distance_grid(images[start:start + batch_size]) for start in range(0, len(images), batch_size)]
        grids = np.concatenate(grids) if grids else np.zeros((0, *self.grid_shape_), np.float32)
        table = pd.DataFrame({PADIM_COLUMN: grids.reshape(len(grids), -1).max(axis=1).astype(np.float64)
                              if len(grids) else np.zeros(0)})
        if not with_maps:
            return ScoreResult(table)
        return ScoreResult(table, smoothed_maps(upsample_maps(grids, self.input_size), self.map_smoothing()))

    def map_smoothing(self) -> float:
        return 4.0 * self.input_size / 224 if self.map_sigma is None else float(self.map_sigma)

    def inspector_judge(self, tf):
        from core.detectors.padim.inspector import PadimJudge

        return PadimJudge(tf, self)

    def bundle_state(self, directory: Path) -> dict:
        """Write each position's mean and precision matrix (``.npy``); the manifest fields that rebuild the rest."""
        from core.detectors.saving import save_array

        self._check_fitted()
        return {"model_file": save_array(directory, "padim_mean.npy", self.mean_),
                "files": [save_array(directory, "padim_precision.npy", self.precision_)],
                "feature_extractor": self.extractor_.state(), "grid_shape": list(self.grid_shape_),
                "backbone_weights_sha256": backbone_weights_digest(PACKAGED_BACKBONE)}

    @classmethod
    def from_bundle(cls, directory: Path, manifest: dict) -> "PadimDetector":
        from core.detectors.saving import load_array

        # "backbone" is recorded, not a parameter; a run saved before the layers were recorded used the earlier ones
        detector = cls(**({"feature_layers": EARLIER_PADIM_FEATURE_LAYERS} | saved_parameters(cls, manifest)))
        channels = _packaged_layer_channels()
        unknown = set(detector.feature_layers) - set(channels)
        if not detector.feature_layers or unknown:
            raise ValueError(f"unknown feature layers {sorted(unknown) or '(none)'}")
        check_backbone_weights(PACKAGED_BACKBONE, manifest.get("backbone_weights_sha256"))
        detector.extractor_ = imagenet_features(PACKAGED_BACKBONE, detector.feature_layers)
        detector.extractor_.restore(manifest["feature_extractor"])
        detector.mean_ = load_array(directory, manifest, manifest["model_file"], ndim=3)
        detector.precision_ = load_array(directory, manifest, "padim_precision.npy", ndim=4)
        detector.grid_shape_ = tuple(int(value) for value in manifest["grid_shape"])
        height, width, dim = detector.mean_.shape
        if detector.grid_shape_ != (height, width) or detector.precision_.shape != (height, width, dim, dim):
            raise ValueError("the Gaussians' shapes do not match each other")
        if dim != sum(channels[name] for name in detector.feature_layers):
            raise ValueError("the Gaussians do not match the recorded feature layers")
        return detector

    def _distance_grid(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            features = self.extractor_(images)
        difference = features - self.mean_
        squared = np.einsum("nhwi,hwij,nhwj->nhw", difference, self.precision_, difference, optimize=True)
        return np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)


def _packaged_layer_channels() -> dict[str, int]:
    """The EfficientNet-Lite0 block outputs a saved PaDiM may name, and their channels (checked before any
    network is built)."""
    from core.detectors.features.efficientnet_lite import BLOCKS

    return {f"block_{index}_out": block.outputs for index, block in enumerate(BLOCKS)}
