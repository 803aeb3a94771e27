"""What every detector is: :class:`BaseDetector`, what ``score`` returns, the good-image split and map helpers.

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
from typing import Callable

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
    accepted = set(detector_class.parameter_names())
    return {key: value for key, value in manifest.get("parameters", {}).items() if key in accepted} | overrides


class BaseDetector:
    """What every detector shares: parameters in scikit-learn's sense, the fitted state every caller reads, the
    split of the good images and the calibration that ends every ``fit``.

    A subclass sets ``kind``, ``primary_score``, ``score_columns`` and ``channels``, names its constructor's
    parameters as attributes of the same name (so :meth:`get_params`, :meth:`set_params` and
    ``sklearn.base.clone`` work without more code), names in ``fitted_attribute`` the state ``fit`` creates
    last, and implements ``fit``, ``score``, ``bundle_state`` and ``from_bundle``.
    """

    kind: str
    primary_score: str
    score_columns: tuple[str, ...]
    channels: int
    fitted_attribute: str = "model_"   # present once fitted or loaded
    stops_early: bool = False          # True: ``validation_fraction`` of the good images picks the epoch
    primary_is_map_maximum: bool = True   # the primary score is its anomaly map's maximum (the heat scale's top)

    # fitted state every caller may read; the class values are what an unfitted detector (or a run saved
    # before the attribute existed) has
    default_decision_ = None   # core.decision.Decision: the primary score's default threshold
    frame_limits_ = None       # core.data.frame_check.FrameLimits: which frames it refuses to judge
    map_scales_ = None         # colour scales for pictures (see map_scales)
    history_ = None            # {"loss": [...], "val_loss": [...]} for the detectors trained in epochs
    training_seconds_ = 0.0
    n_train_images_ = 0
    n_held_out_images_ = 0     # the calibration share (GoodImageSplit.calibration)

    # -- what each detector implements ----------------------------------------------------------------------
    input_size: int   # the working resolution (an attribute or a property)

    def fit(self, good_images: np.ndarray, image_sizes=None,
            progress: Callable[[TrainingProgress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> "BaseDetector":
        """Learn from good images only (``image_sizes``: each file's ``(width, height)``, for the frame check)."""
        raise NotImplementedError

    def score(self, images: np.ndarray, with_maps: bool = False) -> ScoreResult:
        """A table with one row per image and one column per ``score_columns`` (and maps on request)."""
        raise NotImplementedError

    def bundle_state(self, directory: Path) -> dict:
        """Write the fitted state's files into ``directory``; the manifest fields that rebuild the rest."""
        raise NotImplementedError

    @classmethod
    def from_bundle(cls, directory: Path, manifest: dict) -> "BaseDetector":
        """The detector a run folder holds (its files' digests already checked)."""
        raise NotImplementedError

    def map_smoothing(self) -> float:
        """σ of the Gaussian that smooths the anomaly map, in working pixels: ``map_sigma`` when set (each detector
        with a rule of its own for ``None`` overrides this; ``score`` and the exported graph both ask here)."""
        return float(self.map_sigma)

    def inspector_judge(self, tf):
        """The detector's own part of the exported inspector's graph (its folder's ``inspector.py``): a callable
        from the working image ``(n, s, s, c)`` float32 to (score, map), with ``networks`` to track."""
        raise NotImplementedError

    def export_refusal(self) -> str:
        """Why this fitted detector cannot become an inspector, in one sentence (``""``: it can)."""
        return ""

    def check_parameters(self) -> None:
        """``ValueError`` (or the missing backbone's error) now, for parameters ``fit`` would refuse after reading
        every image; nothing by default."""

    # -- parameters -------------------------------------------------------------------------------------
    @classmethod
    def parameter_names(cls) -> list[str]:
        """The constructor's parameters, in order (each is an attribute of the same name)."""
        return [name for name, parameter in inspect.signature(cls.__init__).parameters.items()
                if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters as set; with ``deep``, a nested detector's as ``name__parameter``."""
        parameters = {}
        for name in self.parameter_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                parameters.update({f"{name}__{key}": item for key, item in value.get_params().items()})
            parameters[name] = value
        return parameters

    def set_params(self, **parameters) -> "BaseDetector":
        """Set parameters by name (``name__parameter`` reaches a nested detector); ``ValueError`` for others."""
        known = self.parameter_names()
        for key, value in parameters.items():
            name, _, nested = key.partition("__")
            if name not in known:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; it takes {', '.join(known)}.")
            if nested:
                getattr(self, name).set_params(**{nested: value})
            else:
                setattr(self, name, value)
        return self

    def run_parameters(self) -> dict:
        """The parameters a run's manifest records: plain JSON values (tuples as lists; nested detectors, which a
        run saves as files of their own, left out)."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in self.get_params(deep=False).items() if not hasattr(value, "get_params")}

    # -- fitted state -----------------------------------------------------------------------------------
    def is_fitted(self) -> bool:
        return self.fitted_attribute in vars(self)

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise RuntimeError(f"This {type(self).__name__} is not fitted yet; call fit() or load a bundle first.")

    def _split(self, count: int) -> GoodImageSplit:
        """Which of ``count`` good images train, pick the epoch and calibrate (see :class:`GoodImageSplit`)."""
        share = float(getattr(self, "validation_fraction", 0.0)) if self.stops_early else 0.0
        return GoodImageSplit.of(count, int(getattr(self, "seed", 0)), share)

    def _calibrate(self, good_images: np.ndarray, image_sizes, calibration_scores,
                   residuals: np.ndarray | None = None, anomaly_maps: np.ndarray | None = None) -> None:
        """The end of every ``fit``: frame limits from all the good images, and from the calibration images' scores
        on the primary column the default decision and the picture scales (none without calibration images).
        A detector whose primary score is not its map's maximum passes the calibration images' ``anomaly_maps``:
        their largest value tops the heat scale instead of the threshold."""
        from core.data.frame_check import FrameLimits
        from core.decision import default_decision

        self.frame_limits_ = FrameLimits.fit(good_images, image_sizes) if len(good_images) >= 2 else None
        scores = np.asarray(calibration_scores, dtype=np.float64)
        self.default_decision_ = default_decision(scores, self.primary_score) if len(scores) else None
        self.map_scales_ = map_scales(self.default_decision_, residuals,
                                      None if self.primary_is_map_maximum else anomaly_maps) \
            if self.default_decision_ else None

    # -- scikit-learn's names -----------------------------------------------------------------------------
    def score_samples(self, images: np.ndarray) -> np.ndarray:
        """The primary score of each image, a 1-D array; higher = more anomalous."""
        return self.score(images).table[self.primary_score].to_numpy(dtype=np.float64)

    def decision_function(self, images: np.ndarray) -> np.ndarray:
        """Each image's primary score minus the default threshold: at or above 0 the default decision rejects it
        (unlike scikit-learn's outlier detectors, whose negative values are the outliers, the sign follows the
        project's rule "higher = more anomalous")."""
        self._check_fitted()
        if self.default_decision_ is None:
            raise RuntimeError(f"This {type(self).__name__} has no default decision (it was fitted on too few "
                               "good images to hold any out).")
        return self.score_samples(images) - self.default_decision_.threshold

    def anomaly_maps(self, images: np.ndarray) -> np.ndarray:
        """One map per image, higher = more anomalous, at the working resolution."""
        return self.score(images, with_maps=True).anomaly_maps


def map_scales(decision, residuals: np.ndarray | None = None, anomaly_maps: np.ndarray | None = None) -> dict[str, float]:
    """Colour scales for pictures, fixed by the run from its held-out good images, so a part looks the
    same on every page and in every batch.

    ``anomaly``: the top of the heat-map scale is the default threshold, so full heat means "at the
    reject level" (for the autoencoders the threshold is on ``map_max``, the map's own maximum).
    ``residual``: the largest |x − x̂| any held-out good image showed, so a good part never saturates
    the scale and a defect's error stands out beyond it.

    With ``anomaly_maps`` (a detector whose primary score is a statistic, not the map's maximum), the top of
    the heat scale is instead the largest value of the held-out good images' maps.
    """
    scales = {"anomaly": float(decision.threshold) if anomaly_maps is None or not len(anomaly_maps)
              else float(np.max(anomaly_maps)) or 1e-6}
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
