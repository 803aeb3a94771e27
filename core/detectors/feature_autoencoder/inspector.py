"""The NCAE in feature space in the exported inspector: the graph twin of :meth:`FeatureResidualDetector.score`'s
``map_max`` (features, standardised, reconstructed; the signed RMS residual over the channels, smoothed on the
feature grid; its maximum)."""

from __future__ import annotations

from core.detectors.common.graph import Smoothing, largest
from core.detectors.common.patch_features import PatchFeaturesGraph


class FeatureResidualJudge:
    def __init__(self, tf, detector):
        self.tf, self.size = tf, int(detector.input_size)
        self.features = PatchFeaturesGraph(tf, detector.extractor_)
        self.network = detector.model_
        self.networks = [self.features.network, self.network]
        self.mean = tf.constant(detector.feature_mean_, tf.float32)
        self.scale = tf.constant(detector.feature_scale_, tf.float32)
        self.smoothing = Smoothing(tf, detector.map_smoothing())

    def __call__(self, image):
        tf = self.tf
        standard = (self.features(tf, image) - self.mean) / self.scale
        difference = standard - self.network(standard, training=False)
        residual = tf.sqrt(tf.reduce_mean(tf.square(difference), axis=-1))   # |signed RMS|: the map's size
        grid = self.smoothing(tf, residual)
        anomaly_map = tf.image.resize(grid[..., None], (self.size, self.size), "bilinear")[..., 0]
        return largest(tf, grid), anomaly_map
