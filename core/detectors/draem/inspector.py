"""DRAEM in the exported inspector: the graph twin of :meth:`DraemDetector.score`."""

from __future__ import annotations

from core.detectors.common.graph import Smoothing, largest


class DraemJudge:
    """DRAEM: the judge network's defect probability, smoothed; ``draem_score`` is its maximum."""

    def __init__(self, tf, detector):
        self.tf, self.network = tf, detector.model_
        self.networks = [self.network]
        self.smoothing = Smoothing(tf, detector.map_smoothing())

    def __call__(self, image):
        _, probability = self.network(image, training=False)
        anomaly_map = self.smoothing(self.tf, probability[..., 0])
        return largest(self.tf, anomaly_map), anomaly_map
