"""Every detector behind one interface (:class:`core.detectors.base.BaseDetector`), by the name
``python -m core train --model NAME`` knows it by. Importing this package loads no Keras.

The registry below is the one place that says, per detector, what it is called, which score columns
its runs write, what it is good for and which training options apply to it. ``train``'s options
and help, Data & Model's training form, the background job and ``compare`` all read it: a new
detector is a module and one entry here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from core.defaults import (DEFAULT_DRAEM_EPOCHS, DEFAULT_DRAEM_INPUT_SIZE, DEFAULT_EPOCHS, DEFAULT_LATTICE_INPUT_SIZE,
                           IMAGENET_INPUT_SIZE, MIN_LATTICE_INPUT_SIZE)
from core.detectors.common.residuals import SCORE_COLUMNS as RESIDUAL_SCORE_COLUMNS

# the working resolutions the training form offers (the autoencoders add the data's native size)
WORKING_SIZES = (32, 48, 64, 96, 128, 192, 256, 320, 384, 448, 512, 640, 768, 1024)


@dataclass(frozen=True)
class TrainingOptions:
    """Which training options apply to a detector, and their defaults. An option that does not apply is
    refused by ``train`` (not silently ignored) and not shown on the training form."""

    epochs: int | None = None     # default maximum epochs; None: fitted in one pass (no --epochs)
    size: int | None = None       # default working resolution; None: the training images' native size
    sizes: tuple[int, ...] = ()   # the form's resolutions; empty: ``size`` only (the backbone's own)
    min_size: int = 16
    colour: str = "data"          # "data": as the training images; "imagenet": colour unless told grey; "grey"
    patches: bool = False         # trains on random crops (--patch-size)
    network: bool = False         # an encoder-decoder whose stages are set by --widths and --bottleneck
    reconstruction: bool = False  # trained to reconstruct its input: --loss and --noise-std
    backbone: bool = False        # --backbone and --coreset-ratio
    anomaly_source: bool = False  # --anomaly-source
    fitted_on_the_spot: bool = False   # quick enough that Data & Model fits it on the chosen data as it is picked

    @property
    def fixed_size(self) -> bool:
        return not self.sizes and self.size is not None


@dataclass(frozen=True)
class Entry:
    module: str
    class_name: str
    label: str                      # how the pages name it
    score_columns: tuple[str, ...]
    good_for: str                   # from the measured tables in the README ("Which detector?", 3 seeds)
    training: TrainingOptions


_AUTOENCODER_TRAINING = TrainingOptions(epochs=DEFAULT_EPOCHS, sizes=WORKING_SIZES, patches=True, network=True,
                                        reconstruction=True)
_IMAGENET_TRAINING = TrainingOptions(size=IMAGENET_INPUT_SIZE, colour="imagenet", fitted_on_the_spot=True)

_REGISTRY = {
    "ncae": Entry("core.detectors.autoencoder.detector", "ResidualDetector", "NCAE", RESIDUAL_SCORE_COLUMNS,
                  "neighbour-convolution autoencoder at the images' native size (at most 512 px, on 64 px patches), "
                  "grey or colour: residual statistics and maps; finds 1-2 px pinholes and hairline cracks at 512 px "
                  "(1.00) and colour-only stains in colour (1.00); weak on real photographs (0.61-0.81 at 64 px)",
                  _AUTOENCODER_TRAINING),
    "cae": Entry("core.detectors.autoencoder.detector", "ResidualDetector", "CAE", RESIDUAL_SCORE_COLUMNS,
                 "plain convolutional autoencoder, the NCAE's baseline (demo 0.97)", _AUTOENCODER_TRAINING),
    "memory_bank": Entry("core.detectors.memory_bank.detector", "MemoryBankDetector", "Memory bank", ("patch_score",),
                         "PatchCore-style memory bank on ImageNet EfficientNet-Lite0 features, 224 px: the best on "
                         "real photographs (0.98-1.00) and on the demo (1.00); about 12 images/s",
                         TrainingOptions(size=IMAGENET_INPUT_SIZE, colour="imagenet", backbone=True,
                                         fitted_on_the_spot=True)),
    "padim": Entry("core.detectors.padim.detector", "PadimDetector", "PaDiM", ("padim_score",),
                   "per-position Gaussians on the same network's stage-3 features: for parts that sit in the same "
                   "place in every image (generated sets 0.95-1.00), weaker on randomly placed surfaces (0.86-0.98); "
                   "6x the bank's speed", _IMAGENET_TRAINING),
    "lattice": Entry("core.detectors.lattice.detector", "LatticeDetector", "Lattice", ("lattice_score",),
                     "compares each image with itself shifted by its weave's period, no network, 128 px grey: for "
                     "strictly periodic surfaces (woven texture 1.00, with the broken threads no other detector "
                     "sees); no use on stone, wood, brick or parts on a background (0.44-0.80, and it refuses the "
                     "demo castings); 160-250 images/s",
                     TrainingOptions(size=DEFAULT_LATTICE_INPUT_SIZE, min_size=MIN_LATTICE_INPUT_SIZE, colour="grey",
                                     sizes=tuple(size for size in WORKING_SIZES if 64 <= size <= 512))),
    "draem": Entry("core.detectors.draem.detector", "DraemDetector", "DRAEM", ("draem_score",),
                   "NCAE plus a segmentation network trained on synthetic defects (DRAEM-style), no pretrained "
                   "weights: better than the autoencoders on most real photographs (0.78-0.91), about 2 minutes to "
                   "train", TrainingOptions(epochs=DEFAULT_DRAEM_EPOCHS, size=DEFAULT_DRAEM_INPUT_SIZE,
                                            sizes=(64, 96, 128), network=True, anomaly_source=True)),
}
DETECTOR_NAMES = tuple(_REGISTRY)
# The detector offered first when training, and why, in words (the README's "Which detector?" table: the best
# image AUROC on each of the four real photographs and on the demo castings, measured over 3 seeds).
RECOMMENDED_DETECTOR = "memory_bank"
RECOMMENDATION = ("recommended: the best on the real photographs in our benchmarks (brick, fabric, stone and wood) "
                  "and on the demo castings; slower than the others")
AUTOENCODER_NAMES = ("ncae", "cae")


def entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise ValueError(f"Unknown detector {name!r}; expected one of {', '.join(DETECTOR_NAMES)}.")
    return _REGISTRY[name]


def training_options(name: str) -> TrainingOptions:
    return entry(name).training


def label(name: str) -> str:
    return entry(name).label


def detector_class(name: str):
    """The class that implements detector ``name`` (imports it, and so Keras, only now)."""
    found = entry(name)
    return getattr(importlib.import_module(found.module), found.class_name)


def new_detector(name: str, **parameters):
    """An unfitted detector ``name`` with ``parameters`` (the autoencoders take their network as ``model``; a
    memory bank on its own is built on the ImageNet backbone that comes with the app)."""
    if name in AUTOENCODER_NAMES:
        parameters = {"model": name, **parameters}
    elif name == "memory_bank":
        parameters = {"backbone": "efficientnet_lite0", **parameters}
    return detector_class(name)(**parameters)


# which constructor parameter each training option sets, and when it applies
OPTION_APPLIES = {
    "channels": lambda options: options.colour != "grey",
    "epochs": lambda options: options.epochs is not None,
    "input_size": lambda options: not options.fixed_size,
    "patch_size": lambda options: options.patches,
    "widths": lambda options: options.network,
    "bottleneck": lambda options: options.network,
    "loss": lambda options: options.reconstruction,
    "noise_std": lambda options: options.reconstruction,
    "anomaly_source": lambda options: options.anomaly_source,
    "backbone": lambda options: options.backbone,
    "coreset_ratio": lambda options: options.backbone,
}


def applies(name: str, option: str) -> bool:
    """Whether training ``option`` (a constructor parameter, see :data:`OPTION_APPLIES`) applies to ``name``."""
    return OPTION_APPLIES[option](training_options(name))


def detectors_taking(option: str) -> tuple[str, ...]:
    return tuple(name for name in DETECTOR_NAMES if applies(name, option))


def training_parameters(name: str, seed: int, **choices) -> dict:
    """The constructor parameters for the training ``choices`` (the command line's and the training form's
    alike): a choice that does not apply to detector ``name``, or that is None, is left out (the detector's
    default stands); epochs and the working resolution not given take the registry's defaults."""
    options = training_options(name)
    defaults = {"epochs": options.epochs, "input_size": options.size}
    parameters = {"seed": int(seed)}
    for option, applies_to in OPTION_APPLIES.items():
        value = choices.get(option)
        value = defaults.get(option) if value is None and option != "patch_size" else value
        if applies_to(options) and (value is not None or option == "patch_size"):
            parameters[option] = value
    unknown = set(choices) - set(OPTION_APPLIES)
    if unknown:
        raise ValueError(f"Unknown training option(s): {', '.join(sorted(unknown))}.")
    return parameters


def reconstructs(name: str) -> bool:
    """Whether a run of detector ``name`` reconstructs its input (residual images to show): the encoder-decoders."""
    return name in _REGISTRY and training_options(name).network


def score_columns_of(name: str) -> tuple[str, ...]:
    """The score columns a run of detector ``name`` writes, without importing it."""
    return tuple(_REGISTRY[name].score_columns) if name in _REGISTRY else ()


def good_for(name: str) -> str:
    return entry(name).good_for


def lends_its_encoder(kind: str, patch_size=None, channels: int = 1) -> bool:
    """Whether a run's network can be a memory bank's backbone (``backbone="encoder"``): an autoencoder trained
    on whole grey images. A patch-trained one works at the full working resolution, where a bank of every
    pixel's features would not fit in memory."""
    return kind in AUTOENCODER_NAMES and patch_size is None and int(channels) == 1
