"""Every detector behind one interface (:class:`core.detectors.base.BaseDetector`), by the name
``python -m core train --model NAME`` knows it by. Importing this package loads no Keras.

The registry below gathers what each detector's folder says of it (``core/detectors/<name>/__init__.py``:
its name on the pages, the score columns its runs write, what it is good for, which training options
apply to it). ``train``'s options and help, Data & Model's training form, the background job,
``compare`` and the export all read it: a new detector is a folder and one line here.
"""

from __future__ import annotations

import importlib

from core.detectors import autoencoder, draem, feature_autoencoder, lattice, memory_bank, padim
from core.detectors.entry import Entry, TrainingOptions

# every detector: its folder's entries (a new detector is a folder and a line here)
_REGISTRY = {
    **autoencoder.ENTRIES,
    **memory_bank.ENTRIES,
    **padim.ENTRIES,
    **lattice.ENTRIES,
    **draem.ENTRIES,
    **feature_autoencoder.ENTRIES,
}
DETECTOR_NAMES = tuple(_REGISTRY)
# the detectors a user would choose between (the CAEs are baselines that the NCAEs are measured against)
CANDIDATE_NAMES = tuple(name for name, found in _REGISTRY.items() if not found.baseline)
# The detector offered first when training, and why, in words: the README's "Which detector?" tables (3 seeds
# each): the best image AUROC on the four gimp-data photographs and the demo castings, and level with PaDiM on the
# ELPV solar cells (0.934 against 0.936).
RECOMMENDED_DETECTOR = "memory_bank"
RECOMMENDATION = ("recommended: the best on the real photographs in our benchmarks (brick, fabric, stone and wood) "
                  "and on the demo castings, level with PaDiM on real solar-cell images; slower than the others")
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
    """An unfitted detector ``name`` with ``parameters``, on top of what its entry always sets (an autoencoder's
    network, the memory bank's packaged ImageNet backbone)."""
    return detector_class(name)(**(entry(name).fixed | parameters))


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


def detector_for_images(name: str, training_paths, seed: int = 0, image_size: int | None = None,
                        patch_size: int | None = None, channels: int | None = None, **choices):
    """The unfitted detector ``train --model name`` makes for the images at ``training_paths``: what is not chosen
    defaults as the registry says, the working resolution and channels to the images' own (an autoencoder's
    native size, with patches above the default working size). ``ValueError`` for values it refuses, before any
    image is decoded."""
    from core.data.native import autoencoder_resolution, default_channels
    from core.defaults import DEFAULT_WIDTHS

    size, patch = image_size, patch_size
    if training_options(name).size is None:
        size, patch = autoencoder_resolution(training_paths, image_size, patch_size,
                                             stride=2 ** len(choices.get("widths") or DEFAULT_WIDTHS))
    detector = new_detector(name, **training_parameters(
        name, seed, channels=channels or default_channels(training_paths), input_size=size, patch_size=patch,
        **choices))
    detector.check_parameters()
    return detector


def has_feature_residual(name: str) -> bool:
    """Whether a run of detector ``name`` has a residual over feature maps (shown upsampled to the image) instead of
    a reconstructed image."""
    return name in _REGISTRY and _REGISTRY[name].feature_residual


def primary_score_of(name: str) -> str:
    """The column that decides for a run of detector ``name`` by default (the class's ``primary_score``), without
    importing it: the residual detectors' fixed :data:`core.decision.PRIMARY_SCORE`, the others' one column."""
    from core.decision import PRIMARY_SCORE

    found = entry(name)
    if found.primary_score:
        return found.primary_score
    return PRIMARY_SCORE if PRIMARY_SCORE in found.score_columns else found.score_columns[0]


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
