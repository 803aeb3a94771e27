"""The memory bank in the exported inspector: the graph twin of :meth:`MemoryBankDetector.score` (ImageNet backbone)."""

from __future__ import annotations

import numpy as np

from core.detectors.common.graph import Smoothing, largest
from core.detectors.common.patch_features import PatchFeaturesGraph


class MemoryBankJudge:
    """Memory bank on ImageNet features: each patch's distance to its nearest bank entry (float64, as the
    fitted search computes it), rescaled by its border ring; ``patch_score`` is the largest.

    It searches the whole bank, not the detector's cells: the same image scores (the detector checks its
    image scores against the whole bank), at the exhaustive search's cost of about 4 GFLOP per image."""

    def __init__(self, tf, detector):
        self.tf, self.size = tf, int(detector.input_size)
        self.features = PatchFeaturesGraph(tf, detector.extractor_)
        self.networks = [self.features.network]
        bank = np.asarray(detector.memory_bank_, np.float64)
        self.bank_columns = tf.constant(np.ascontiguousarray(bank.T))   # (dim, entries): a plain matmul
        self.bank_norms = tf.constant((bank ** 2).sum(axis=1))
        self.calibration = detector.border_calibration_
        self.smoothing = Smoothing(tf, detector.map_smoothing())

    def __call__(self, image):
        tf = self.tf
        features = self.features(tf, image)
        height, width, dim = int(features.shape[1]), int(features.shape[2]), int(features.shape[3])

        def nearest(patches):   # one image at a time: its patches × the bank stays a few tens of MB
            patches = tf.cast(patches, tf.float64)
            squared = tf.reduce_sum(patches ** 2, axis=1, keepdims=True) + self.bank_norms[None, :] - \
                2.0 * tf.matmul(patches, self.bank_columns)
            return tf.cast(tf.sqrt(tf.maximum(tf.reduce_min(squared, axis=1), 0.0)), tf.float32)

        distances = tf.map_fn(nearest, tf.reshape(features, [-1, height * width, dim]),
                              fn_output_signature=tf.TensorSpec([height * width], tf.float32))
        mean, spread = (per_position.reshape(-1) for per_position in self.calibration.grids(height, width))
        grid = (distances - mean) / spread
        grid = tf.reshape(grid, [-1, height, width])
        anomaly_map = self.smoothing(tf, tf.image.resize(grid[..., None], (self.size, self.size), "bilinear")[..., 0])
        return largest(tf, grid), anomaly_map
