"""DRAEM-style: an NCAE plus a judge network trained on synthetic defects.

The detector is in ``detector.py`` and its TensorFlow graph for the exported inspector in ``inspector.py``;
``ENTRIES`` is what the registry (:mod:`core.detectors`) knows of it. Importing this package loads neither.
"""

from core.detectors.entry import Entry, TrainingOptions

DEFAULT_DRAEM_INPUT_SIZE = 64   # the autoencoders' 64 px; 96 px costs 2.2x the time per epoch
DEFAULT_DRAEM_EPOCHS = 40
ENTRIES = {
    "draem": Entry("core.detectors.draem.detector", "DraemDetector", "DRAEM", ("draem_score",),
                   "NCAE plus a segmentation network trained on synthetic defects (DRAEM-style), no pretrained "
                   "weights: better than the autoencoders on most real photographs (0.78-0.91), about 2 minutes to "
                   "train", TrainingOptions(epochs=DEFAULT_DRAEM_EPOCHS, size=DEFAULT_DRAEM_INPUT_SIZE,
                                            sizes=(64, 96, 128), network=True, anomaly_source=True)),
}
