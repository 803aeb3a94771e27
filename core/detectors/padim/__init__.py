"""PaDiM: per-position Gaussians over ImageNet patch features.

The detector is in ``detector.py`` and its TensorFlow graph for the exported inspector in ``inspector.py``;
``ENTRIES`` is what the registry (:mod:`core.detectors`) knows of it. Importing this package loads neither.
"""

from core.defaults import IMAGENET_INPUT_SIZE
from core.detectors.entry import Entry, TrainingOptions

ENTRIES = {
    "padim": Entry("core.detectors.padim.detector", "PadimDetector", "PaDiM", ("padim_score",),
                   "per-position Gaussians on the same network's stage-3 features: for parts that sit in the same "
                   "place in every image (generated sets 0.95-1.00), weaker on randomly placed surfaces (0.86-0.98); "
                   "6x the bank's speed",
                   TrainingOptions(size=IMAGENET_INPUT_SIZE, colour="imagenet", fitted_on_the_spot=True)),
}
