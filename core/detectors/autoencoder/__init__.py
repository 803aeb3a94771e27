"""The NCAE and its baseline CAE: reconstruct the image, and judge it by the statistics of the residual.

The detector is in ``detector.py`` and its TensorFlow graph for the exported inspector in ``inspector.py``;
``ENTRIES`` is what the registry (:mod:`core.detectors`) knows of it. Importing this package loads neither.
"""

from core.defaults import DEFAULT_EPOCHS
from core.detectors.common.residuals import SCORE_COLUMNS
from core.detectors.entry import WORKING_SIZES, Entry, TrainingOptions

_TRAINING = TrainingOptions(epochs=DEFAULT_EPOCHS, sizes=WORKING_SIZES, patches=True, network=True, reconstruction=True)
ENTRIES = {
    "ncae": Entry("core.detectors.autoencoder.detector", "ResidualDetector", "NCAE", SCORE_COLUMNS,
                  "neighbour-convolution autoencoder at the images' native size (at most 512 px, on 64 px patches), "
                  "grey or colour: residual statistics and maps; finds 1-2 px pinholes and hairline cracks at 512 px "
                  "(1.00) and colour-only stains in colour (1.00); weak on real photographs (0.61-0.81 at 64 px) and "
                  "no better than chance on real solar-cell electroluminescence images (0.52; the NCAE on features "
                  "0.92, PaDiM and the memory bank 0.93-0.94)",
                  _TRAINING, fixed={"model": "ncae"}),
    "cae": Entry("core.detectors.autoencoder.detector", "ResidualDetector", "CAE", SCORE_COLUMNS,
                 "plain convolutional autoencoder, the NCAE's baseline (demo 0.97; below chance on real solar-cell "
                 "electroluminescence images, 0.34; the CAE on features 0.92)", _TRAINING,
                 fixed={"model": "cae"}, baseline=True),
}
