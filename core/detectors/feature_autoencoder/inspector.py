"""The NCAE in feature space in the exported inspector: the graph twin of :meth:`FeatureResidualDetector.score`'s
primary score, ``std`` (features, standardised, reconstructed; the RMS residual over the channels at each position of
the feature grid, as far as it exceeds what good images show in its ring of positions from the border; its spread over
the grid), and of its heat map (that residual, smoothed, resized to the image). A run saved before border calibration
keeps its uncalibrated graph."""

from __future__ import annotations

from core.detectors.common.graph import Smoothing
from core.detectors.common.patch_features import PatchFeaturesGraph


class FeatureResidualJudge:
    def __init__(self, tf, detector):
        if detector.primary_score != "std":
            raise ValueError(f"the inspector computes std, not {detector.primary_score}")
        self.tf, self.size = tf, int(detector.input_size)
        self.features = PatchFeaturesGraph(tf, detector.extractor_)
        self.network = detector.model_
        self.networks = [self.features.network, self.network]
        self.mean = tf.constant(detector.feature_mean_, tf.float32)
        self.scale = tf.constant(detector.feature_scale_, tf.float32)
        self.smoothing = Smoothing(tf, detector.map_smoothing())
        self.calibration = getattr(detector, "border_calibration_", None)

    def __call__(self, image):
        tf = self.tf
        standard = (self.features(tf, image) - self.mean) / self.scale
        difference = standard - self.network(standard, training=False)
        residual = tf.sqrt(tf.reduce_mean(tf.square(difference), axis=-1))   # |signed RMS| at each grid position
        if self.calibration is not None:   # each position's ring mean and spread, as grids of the feature grid's shape
            mean, spread = (tf.constant(grid, tf.float32)
                            for grid in self.calibration.grids(int(residual.shape[1]), int(residual.shape[2])))
            residual = tf.maximum((residual - mean) / spread, 0.0)
        flat = tf.reshape(residual, (tf.shape(residual)[0], -1))
        spread = tf.sqrt(tf.reduce_mean(tf.square(flat - tf.reduce_mean(flat, axis=1, keepdims=True)), axis=1))
        grid = self.smoothing(tf, residual)
        anomaly_map = tf.image.resize(grid[..., None], (self.size, self.size), "bilinear")[..., 0]
        return spread, anomaly_map
