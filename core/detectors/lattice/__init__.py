"""The lattice detector: each image compared with itself shifted by its weave's period.

The detector is in ``detector.py`` and its TensorFlow graph for the exported inspector in ``inspector.py``;
``ENTRIES`` is what the registry (:mod:`core.detectors`) knows of it. Importing this package loads neither.
"""

from core.detectors.entry import WORKING_SIZES, Entry, TrainingOptions

DEFAULT_LATTICE_INPUT_SIZE = 128   # grey
MIN_LATTICE_INPUT_SIZE = 32        # below it a weave has too few periods across to compare
ENTRIES = {
    "lattice": Entry("core.detectors.lattice.detector", "LatticeDetector", "Lattice", ("lattice_score",),
                     "compares each image with itself shifted by its weave's period, no network, 128 px grey: for "
                     "strictly periodic surfaces (woven texture 1.00, with the broken threads no other detector "
                     "sees); no use on stone, wood, brick or parts on a background (0.44-0.80, and it refuses the "
                     "demo castings); 160-250 images/s",
                     TrainingOptions(size=DEFAULT_LATTICE_INPUT_SIZE, min_size=MIN_LATTICE_INPUT_SIZE, colour="grey",
                                     sizes=tuple(size for size in WORKING_SIZES if 64 <= size <= 512))),
}
