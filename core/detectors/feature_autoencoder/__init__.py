"""The NCAE (and its baseline CAE) in feature space: reconstruct ImageNet feature maps, not pixels.

The detector is in ``detector.py`` and its TensorFlow graph for the exported inspector in ``inspector.py``;
``ENTRIES`` is what the registry (:mod:`core.detectors`) knows of it. Importing this package loads neither.
"""

from core.defaults import IMAGENET_INPUT_SIZE
from core.detectors.common.residuals import SCORE_COLUMNS
from core.detectors.entry import Entry, TrainingOptions

_TRAINING = TrainingOptions(epochs=30, size=IMAGENET_INPUT_SIZE, colour="imagenet")
_DETECTOR = ("core.detectors.feature_autoencoder.detector", "FeatureResidualDetector")
ENTRIES = {
    "ncae_features": Entry(
        *_DETECTOR, "NCAE on features", SCORE_COLUMNS,
        "the NCAE reconstructing EfficientNet-Lite0 ImageNet feature maps, 224 px colour, judged by the spread of "
        "the border-calibrated feature residual (std): real solar-cell electroluminescence images 0.92 (the pixel "
        "NCAE 0.52), real photographs 0.93-1.00, the demo 1.00; every residual statistic as for the pixel NCAE",
        _TRAINING, feature_residual=True, fixed={"model": "ncae"}, primary_score="std"),
    "cae_features": Entry(
        *_DETECTOR, "CAE on features", SCORE_COLUMNS,
        "the plain convolutional autoencoder on the same features, the baseline of the NCAE on features",
        _TRAINING, feature_residual=True, fixed={"model": "cae"}, primary_score="std", baseline=True),
}
