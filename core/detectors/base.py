"""What every detector is: the :class:`Detector` protocol, what ``score`` returns, and map helpers.

A detector is an estimator in the scikit-learn / PyOD sense::

    detector = SomeDetector(**parameters).fit(good_images)   # fitted state ends in "_"
    result = detector.score(images, with_maps=True)           # ScoreResult: table (+ maps)
    detector.anomaly_maps(images)                             # (n, size, size), higher = worse

Every score column is "higher = more anomalous"; ``primary_score`` names the one column the
default decision (``default_decision_``, set from held-out good images only) judges. Saving and
loading go through :mod:`core.runs.bundles`, which asks the detector for its state
(``bundle_state``) and rebuilds it from that state (``from_bundle``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TrainingProgress:
    """What a progress callback receives after every epoch (or step, for detectors without epochs)."""

    epoch: int
    epochs: int
    loss: float
    val_loss: float
    elapsed_seconds: float
    seconds_left: float


class TrainingCancelled(RuntimeError):
    """Raised by ``fit`` when ``should_stop`` asked training to end."""


@dataclass
class ScoreResult:
    """What every detector's ``score`` returns: a score table and, on request, maps per image.

    ``anomaly_maps`` (higher = more anomalous, input resolution) exist for every detector;
    ``reconstructions`` and ``residuals`` only for detectors that reconstruct their input.
    """

    table: pd.DataFrame
    anomaly_maps: np.ndarray | None = None
    reconstructions: np.ndarray | None = None
    residuals: np.ndarray | None = None


@runtime_checkable
class Detector(Protocol):
    """The interface the command line, the evaluation and every dashboard page rely on."""

    kind: str                       # the name ``train --model`` knows it by
    primary_score: str              # the column the default decision judges, fixed in advance
    score_columns: tuple[str, ...]  # every column ``score`` writes, in order
    channels: int                   # 1: images are read grey, (n, s, s); 3: colour, (n, s, s, 3)

    @property
    def input_size(self) -> int: ...

    def get_params(self) -> dict: ...

    def fit(self, good_images: np.ndarray, image_sizes=None,
            progress: Callable[[TrainingProgress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> "Detector": ...

    def score(self, images: np.ndarray, with_maps: bool = False) -> ScoreResult: ...

    def anomaly_maps(self, images: np.ndarray) -> np.ndarray: ...

    def bundle_state(self, directory: Path) -> dict: ...

    @classmethod
    def from_bundle(cls, directory: Path, manifest: dict) -> "Detector": ...


CALIBRATION_SHARE = 0.15


@dataclass(frozen=True)
class GoodImageSplit:
    """Which good images do what during ``fit`` (indices into the training images).

    ``calibration``: never trained on and never used to pick an epoch. The default decision, the map
    scales and any score calibration are set from these alone, so the false-reject rate they promise
    is not flattered by the choices made on them. ``stopping``: never trained on; only detectors that
    stop early use them, to pick the epoch. ``training``: the rest.
    """

    training: np.ndarray
    stopping: np.ndarray
    calibration: np.ndarray

    @classmethod
    def of(cls, count: int, seed: int, stopping_share: float = 0.0) -> "GoodImageSplit":
        """15 % of ``count`` images (at least 3) for calibration and, when ``stopping_share`` > 0, that
        share (at least 3) for early stopping; below :data:`~core.defaults.MIN_TRAINING_IMAGES` images
        nothing is held out (the detectors that need held-out images refuse so few)."""
        from core.defaults import MIN_TRAINING_IMAGES

        if not 0 <= stopping_share < 0.5:
            raise ValueError(f"The early-stopping share must be from 0 to 0.5, got {stopping_share!r}.")
        order = np.random.default_rng(int(seed)).permutation(count)
        if count < MIN_TRAINING_IMAGES:
            return cls(order, order[:0], order[:0])
        calibrating = max(3, round(CALIBRATION_SHARE * count))
        stopping = max(3, round(stopping_share * count)) if stopping_share > 0 else 0
        # kept in the permutation's order: the same seed gives the same calibration images and the same
        # training order as before the stopping share existed
        return cls(order[calibrating + stopping:], order[calibrating:calibrating + stopping], order[:calibrating])


def saved_parameters(detector_class, manifest: dict, **overrides) -> dict:
    """The parameters a run's manifest records that ``detector_class`` takes, with ``overrides`` on top: what
    ``from_bundle`` builds the unfitted detector from (recorded values it no longer takes are left out)."""
    accepted = inspect.signature(detector_class.__init__).parameters
    return {key: value for key, value in manifest.get("parameters", {}).items() if key in accepted} | overrides


class MapsFromScore:
    """``anomaly_maps`` for detectors whose ``score`` can return maps."""

    def anomaly_maps(self, images: np.ndarray) -> np.ndarray:
        return self.score(images, with_maps=True).anomaly_maps


def map_scales(decision, residuals: np.ndarray | None = None) -> dict[str, float]:
    """Colour scales for pictures, fixed by the run from its held-out good images, so a part looks the
    same on every page and in every batch.

    ``anomaly``: the top of the heat-map scale is the default threshold, so full heat means "at the
    reject level" (for the autoencoders the threshold is on ``map_max``, the map's own maximum).
    ``residual``: the largest |x − x̂| any held-out good image showed, so a good part never saturates
    the scale and a defect's error stands out beyond it.
    """
    scales = {"anomaly": float(decision.threshold)}
    if residuals is not None and len(residuals):
        scales["residual"] = float(np.abs(residuals).max()) or 1e-6
    return scales


def smoothed_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth each map of a ``(n, h, w)`` stack (not across images)."""
    from scipy import ndimage

    maps = np.asarray(maps, dtype=np.float32)
    if sigma <= 0 or not len(maps):
        return maps
    return ndimage.gaussian_filter(maps, sigma=(0, sigma, sigma), mode="nearest")


def as_image_batch(images: np.ndarray, input_size: int, channels: int = 1) -> np.ndarray:
    """``images`` as a float32 stack: ``(n, size, size)`` for grey (a trailing channel of 1 is dropped),
    ``(n, size, size, 3)`` for colour (a grey stack is repeated to three channels), or ``ValueError``."""
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == 4 and batch.shape[-1] == 1:
        batch = batch[..., 0]
    if channels == 3 and batch.ndim == 3:
        batch = np.repeat(batch[..., None], 3, axis=-1)
    expected = (input_size, input_size) if channels == 1 else (input_size, input_size, 3)
    if batch.ndim != len(expected) + 1 or batch.shape[1:] != expected:
        raise ValueError(f"Expected images of shape (n, {', '.join(map(str, expected))}), got {batch.shape}.")
    return batch
