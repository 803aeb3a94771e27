"""PaDiM in the exported inspector: the graph twin of :meth:`PadimDetector.score`."""

from __future__ import annotations

from core.detectors.common.graph import Smoothing, largest
from core.detectors.common.patch_features import PatchFeaturesGraph


class PadimJudge:
    """PaDiM: each patch's Mahalanobis distance to its position's Gaussian; ``padim_score`` is the largest."""

    def __init__(self, tf, detector):
        self.tf, self.size = tf, int(detector.input_size)
        self.features = PatchFeaturesGraph(tf, detector.extractor_)
        self.networks = [self.features.network]
        self.mean = tf.constant(detector.mean_, tf.float32)
        self.precision = tf.constant(detector.precision_, tf.float32)
        self.smoothing = Smoothing(tf, detector.map_smoothing())

    def __call__(self, image):
        tf = self.tf
        difference = self.features(tf, image) - self.mean
        squared = tf.einsum("nhwi,hwij,nhwj->nhw", difference, self.precision, difference)
        grid = tf.sqrt(tf.maximum(squared, 0.0))
        anomaly_map = self.smoothing(tf, tf.image.resize(grid[..., None], (self.size, self.size), "bilinear")[..., 0])
        return largest(tf, grid), anomaly_map
