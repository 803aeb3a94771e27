"""The NCAE (and its baseline CAE) in feature space: reconstruct ImageNet feature maps, not pixels.

The detector is in ``detector.py`` and its TensorFlow graph for the exported inspector in ``inspector.py``;
``ENTRIES`` is what the registry (:mod:`core.detectors`) knows of it. Importing this package loads neither.
WORK IN PROGRESS on this branch: the settings are not yet chosen across data sets.
"""

from core.defaults import IMAGENET_INPUT_SIZE
from core.detectors.common.residuals import SCORE_COLUMNS
from core.detectors.entry import Entry, TrainingOptions

_TRAINING = TrainingOptions(epochs=30, size=IMAGENET_INPUT_SIZE, colour="imagenet")
ENTRIES = {
    "ncae_features": Entry("core.detectors.feature_autoencoder.detector", "FeatureResidualDetector", "NCAE on features",
                           SCORE_COLUMNS, "the NCAE reconstructing EfficientNet-Lite0 feature maps, 224 px colour: "
                           "residual statistics over the feature residual (work in progress)", _TRAINING, feature_residual=True, fixed={"model": "ncae"}),
    "cae_features": Entry("core.detectors.feature_autoencoder.detector", "FeatureResidualDetector", "CAE on features",
                          SCORE_COLUMNS, "the CAE baseline of the NCAE on features (work in progress)", _TRAINING, feature_residual=True,
                          fixed={"model": "cae"}),
}
