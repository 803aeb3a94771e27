"""Every detector behind one interface (:class:`core.detectors.base.Detector`), by the name
``python -m core train --model NAME`` knows it by. Importing this package loads no Keras.
"""

from __future__ import annotations

import importlib

from core.detectors.residuals import SCORE_COLUMNS as RESIDUAL_SCORE_COLUMNS

# name -> (module, class, the score columns its runs write, what it is good for). The notes come from the
# measured tables in the README ("Which detector?": benchmarks/recorded/real_surfaces*.json, 3 seeds).
_REGISTRY = {
    "ncae": ("core.detectors.autoencoder", "ResidualDetector", RESIDUAL_SCORE_COLUMNS,
             "neighbour-convolution autoencoder at the images' native size (at most 512 px, on 64 px patches), "
             "grey or colour: residual statistics and maps; finds 1-2 px pinholes and hairline cracks at 512 px "
             "(1.00) and colour-only stains in colour (1.00); weak on real photographs (0.61-0.81 at 64 px)"),
    "cae": ("core.detectors.autoencoder", "ResidualDetector", RESIDUAL_SCORE_COLUMNS,
            "plain convolutional autoencoder, the NCAE's baseline (demo 0.97)"),
    "memory_bank": ("core.detectors.memory_bank", "MemoryBankDetector", ("patch_score",),
                    "PatchCore-style memory bank on ImageNet EfficientNet-Lite0 features, 224 px: the best on "
                    "real photographs (0.98-1.00) and on the demo (1.00); about 12 images/s"),
    "padim": ("core.detectors.padim", "PadimDetector", ("padim_score",),
              "per-position Gaussians on the same network's stage-3 features: for parts that sit in the same place "
              "in every image (generated sets 0.95-1.00), weaker on randomly placed "
              "surfaces (0.86-0.98); 6x the bank's speed"),
    "lattice": ("core.detectors.lattice", "LatticeDetector", ("lattice_score",),
                "compares each image with itself shifted by its weave's period, no network, 128 px grey: for "
                "strictly periodic surfaces (woven texture 1.00, with the broken threads no other detector sees); "
                "no use on stone, wood, brick or parts on a background (0.44-0.80, and it refuses the demo "
                "castings); 160-250 images/s"),
    "draem": ("core.detectors.draem", "DraemDetector", ("draem_score",),
              "NCAE plus a segmentation network trained on synthetic defects (DRAEM-style), no pretrained "
              "weights: better than the autoencoders on most real photographs (0.78-0.91), about 2 minutes to train"),
}
DETECTOR_NAMES = tuple(_REGISTRY)
# The detector offered first when training, and why, in words (the README's "Which detector?" table: the best
# image AUROC on each of the four real photographs and on the demo castings, measured over 3 seeds).
RECOMMENDED_DETECTOR = "memory_bank"
RECOMMENDATION = ("recommended: the best on the real photographs in our benchmarks (brick, fabric, stone and wood) "
                  "and on the demo castings; slower than the others")
AUTOENCODER_NAMES = ("ncae", "cae")


def detector_class(name: str):
    """The class that implements detector ``name`` (imports it, and so Keras, only now)."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown detector {name!r}; expected one of {', '.join(DETECTOR_NAMES)}.")
    module, class_name = _REGISTRY[name][:2]
    return getattr(importlib.import_module(module), class_name)


def new_detector(name: str, **parameters):
    """An unfitted detector ``name`` with ``parameters`` (the autoencoders take their network as ``model``; a
    memory bank on its own is built on the ImageNet backbone that comes with the app)."""
    if name in AUTOENCODER_NAMES:
        parameters = {"model": name, **parameters}
    elif name == "memory_bank":
        parameters = {"backbone": "efficientnet_lite0", **parameters}
    return detector_class(name)(**parameters)


def score_columns_of(name: str) -> tuple[str, ...]:
    """The score columns a run of detector ``name`` writes, without importing it."""
    return tuple(_REGISTRY[name][2]) if name in _REGISTRY else ()


def good_for(name: str) -> str:
    return _REGISTRY[name][3]


def lends_its_encoder(kind: str, patch_size=None, channels: int = 1) -> bool:
    """Whether a run's network can be a memory bank's backbone (``backbone="encoder"``): an autoencoder trained
    on whole grey images. A patch-trained one works at the full working resolution, where a bank of every
    pixel's features would not fit in memory."""
    return kind in AUTOENCODER_NAMES and patch_size is None and int(channels) == 1
