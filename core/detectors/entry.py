"""What the registry (:mod:`core.detectors`) knows of each detector, written in the detector's own folder: its
name on the pages, its score columns, what it is good for and which training options apply to it. Importing
this loads nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    module: str                     # where the class is (imported only when a detector is made)
    class_name: str
    label: str                      # how the pages name it
    score_columns: tuple[str, ...]
    good_for: str                   # from the measured tables in the README ("Which detector?", 3 seeds)
    training: TrainingOptions
    feature_residual: bool = False  # its residual is over backbone features, not pixels: no reconstruction to show
    fixed: dict = field(default_factory=dict)   # constructor parameters this name always sets (the NCAE's network)
    baseline: bool = False    # a reference to measure another detector against (the CAEs), not offered by advise
    primary_score: str = ""   # the column that decides by default; "" = core.decision.PRIMARY_SCORE if it is one
                              # of score_columns, else the first
