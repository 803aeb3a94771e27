"""The PatchCore-style memory bank: each patch's distance to the nearest good patch.

The detector is in ``detector.py`` and its TensorFlow graph for the exported inspector in ``inspector.py``;
``ENTRIES`` is what the registry (:mod:`core.detectors`) knows of it. Importing this package loads neither.
"""

from core.defaults import IMAGENET_INPUT_SIZE
from core.detectors.entry import Entry, TrainingOptions

ENTRIES = {
    "memory_bank": Entry("core.detectors.memory_bank.detector", "MemoryBankDetector", "Memory bank", ("patch_score",),
                         "PatchCore-style memory bank on ImageNet EfficientNet-Lite0 features, 224 px: the best on "
                         "real photographs (0.98-1.00) and on the demo (1.00); about 12 images/s",
                         TrainingOptions(size=IMAGENET_INPUT_SIZE, colour="imagenet", backbone=True,
                                         fitted_on_the_spot=True),
                         fixed={"backbone": "efficientnet_lite0"}),
}
