"""The NCAE / CAE in the exported inspector: the graph twin of :meth:`ResidualDetector.score`'s ``map_max``."""

from __future__ import annotations

from core.detectors.common.graph import Smoothing, largest


class ResidualJudge:
    """NCAE / CAE: the reconstruction's residual (RMS over colour channels, signed), smoothed; ``map_max``."""

    def __init__(self, tf, detector):
        self.tf, self.network, self.size, self.channels = tf, detector.model_, int(detector.input_size), \
            int(detector.channels)
        self.networks = [self.network]
        self.stride = 2 ** len(tuple(detector.widths)) if detector.trains_on_patches else 1
        self.fixed_input = not detector.trains_on_patches
        self.smoothing = Smoothing(tf, detector.map_smoothing())

    def __call__(self, image):
        tf = self.tf
        if self.fixed_input:
            reconstruction = self.network(image, training=False)
        else:
            padding = (-self.size) % self.stride
            padded = tf.pad(image, [[0, 0], [0, padding], [0, padding], [0, 0]], mode="REFLECT") if padding else image
            reconstruction = self.network(padded, training=False)[:, :self.size, :self.size, :]
        difference = image - reconstruction
        if self.channels == 1:
            residual = difference[..., 0]
        else:
            magnitude = tf.sqrt(tf.reduce_mean(tf.square(difference), axis=-1))
            residual = tf.where(tf.reduce_mean(difference, axis=-1) < 0, -magnitude, magnitude)
        anomaly_map = self.smoothing(tf, tf.abs(residual))
        return largest(tf, anomaly_map), anomaly_map
