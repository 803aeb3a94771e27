"""``ResidualDetector``: train an NCAE (or CAE) on good parts, then score images by their residuals.

Estimator-style, as in scikit-learn and PyOD::

    detector = ResidualDetector(model="ncae", epochs=40).fit(good_images)
    result = detector.score(images, with_maps=True)
    result.table            # one row per image: mean, std, ..., mse, stat_distance, map_max (higher = worse)
    result.residuals        # signed residual maps x - x_hat, shape (n, size, size)
    result.anomaly_maps     # |x - x_hat| smoothed by a Gaussian of ``map_sigma`` pixels
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.evaluation.decision import PRIMARY_SCORE
from core.defaults import MIN_TRAINING_IMAGES  # noqa: F401  (part of this module's interface)
from core.defaults import (DEFAULT_BOTTLENECK, DEFAULT_EPOCHS, DEFAULT_INPUT_SIZE, DEFAULT_LOSS, DEFAULT_MAP_SIGMA,
                           DEFAULT_NOISE_STD, DEFAULT_WIDTHS)
from core.detectors.losses import training_loss
from core.detectors.models import build_autoencoder
from core.detectors.base import (MapsFromScore, ScoreResult, TrainingCancelled, TrainingProgress,  # noqa: F401
                                 as_image_batch, map_scales, saved_parameters, smoothed_maps)
from core.detectors.residuals import SCORE_COLUMNS, STATISTIC_NAMES, residual_maps, residual_statistics
from core.detectors.stat_distance import StatDistance


class ResidualDetector(MapsFromScore):
    """Anomaly detector over autoencoder residuals.

    Parameters are plain attributes and are checked when :meth:`fit` builds the network; fitted
    state ends in ``_`` (``model_``, ``history_``, ``stat_distance_``, ``frame_limits_``,
    ``default_decision_``, ``map_scales_``, ``training_seconds_``).
    """

    primary_score = PRIMARY_SCORE  # fixed in advance; core.evaluation.decision says how it was chosen

    def __init__(self, model="ncae", input_size=DEFAULT_INPUT_SIZE, widths=DEFAULT_WIDTHS,
                 bottleneck=DEFAULT_BOTTLENECK, epochs=DEFAULT_EPOCHS, batch_size=32, learning_rate=2e-3,
                 validation_fraction=0.15, patience=8, noise_std=DEFAULT_NOISE_STD, loss=DEFAULT_LOSS,
                 map_sigma=DEFAULT_MAP_SIGMA, seed=0):
        self.model = model
        self.input_size = input_size
        self.widths = widths
        self.bottleneck = bottleneck
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.noise_std = noise_std
        self.loss = loss
        self.map_sigma = map_sigma
        self.seed = seed
        self._inference_lock = threading.Lock()

    def get_params(self) -> dict:
        return {name: getattr(self, name) for name in (
            "model", "input_size", "widths", "bottleneck", "epochs", "batch_size", "learning_rate",
            "validation_fraction", "patience", "noise_std", "loss", "map_sigma", "seed")}

    @property
    def kind(self) -> str:
        return self.model

    score_columns = SCORE_COLUMNS
    channels = 1

    def fit(self, good_images: np.ndarray, image_sizes=None, progress: Callable[[TrainingProgress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> "ResidualDetector":
        """Train on good images only; a held-out share drives early stopping, ``stat_distance`` and the
        default decision (:func:`core.evaluation.decision.default_decision`).

        ``image_sizes`` (``(width, height)`` of each file as read) lets the frame check refuse
        images of a wildly different size or aspect; without it only intensities are checked.
        """
        import keras

        from core.evaluation.decision import default_decision
        from core.data.frame_check import FrameLimits

        images = as_image_batch(good_images, self.input_size)
        if len(images) < MIN_TRAINING_IMAGES:
            raise ValueError(f"Training needs at least {MIN_TRAINING_IMAGES} good images, got {len(images)}.")
        if not 0 < self.validation_fraction < 0.5:
            raise ValueError(f"`validation_fraction` must be between 0 and 0.5, got {self.validation_fraction!r}.")
        if int(self.epochs) < 1:
            raise ValueError(f"`epochs` must be at least 1, got {self.epochs!r}.")

        # seeds Python, NumPy and the backend for the whole process: callers that train in threads
        # serialise fit() (dashboard/jobs.py does), or two trainings would disturb each other's draws
        keras.utils.set_random_seed(int(self.seed))
        order = np.random.default_rng(int(self.seed)).permutation(len(images))
        held_out_count = max(3, int(round(len(images) * self.validation_fraction)))
        held_out, training = images[order[:held_out_count]], images[order[held_out_count:]]
        self.held_out_indices_ = np.sort(order[:held_out_count])

        network = build_autoencoder(self.model, int(self.input_size), self.widths, int(self.bottleneck),
                                    float(self.noise_std))
        network.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss=training_loss(self.loss))
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(self.patience), restore_best_weights=True),
            _ProgressCallback(int(self.epochs), progress, should_stop),
        ]
        started = time.perf_counter()
        history = network.fit(training, training, validation_data=(held_out, held_out), epochs=int(self.epochs),
                              batch_size=int(self.batch_size), shuffle=True, callbacks=callbacks, verbose=0)
        if callbacks[1].cancelled:
            raise TrainingCancelled("Training was cancelled.")
        self.training_seconds_ = time.perf_counter() - started
        self.model_ = network
        self.history_ = {key: [float(value) for value in values] for key, values in history.history.items()}
        self.n_train_images_ = len(training)
        self.n_held_out_images_ = len(held_out)
        self.stat_distance_ = StatDistance.fit(self._statistics(held_out), seed=int(self.seed))
        self.frame_limits_ = FrameLimits.fit(images, image_sizes)
        held_out_result = self.score(held_out, with_maps=True)
        self.default_decision_ = default_decision(held_out_result.table[self.primary_score])
        self.map_scales_ = map_scales(self.default_decision_, held_out_result.residuals)
        return self

    def reconstruct(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        self._check_fitted()
        batch = as_image_batch(images, self.input_size)
        outputs = []
        with self._inference_lock:
            for start in range(0, len(batch), batch_size):
                chunk = batch[start:start + batch_size, ..., None]
                outputs.append(np.asarray(self.model_.predict_on_batch(chunk))[..., 0])
        return np.concatenate(outputs) if outputs else np.zeros_like(batch)

    def score(self, images: np.ndarray, with_maps: bool = False, batch_size: int = 64) -> ScoreResult:
        """Score images; memory stays flat unless ``with_maps`` asks to keep every map."""
        self._check_fitted()
        batch = as_image_batch(images, self.input_size)
        columns: dict[str, list[np.ndarray]] = {name: [] for name in (*STATISTIC_NAMES, "map_max")}
        kept: dict[str, list[np.ndarray]] = {"anomaly_maps": [], "reconstructions": [], "residuals": []}
        for start in range(0, len(batch), batch_size):
            chunk = batch[start:start + batch_size]
            reconstruction = self.reconstruct(chunk, batch_size)
            residual = residual_maps(chunk, reconstruction)
            for name, values in residual_statistics(residual).items():
                columns[name].append(values)
            anomaly_map = smoothed_maps(np.abs(residual), float(self.map_sigma))
            columns["map_max"].append(anomaly_map.reshape(len(chunk), -1).max(axis=1))
            if with_maps:
                kept["anomaly_maps"].append(anomaly_map)
                kept["reconstructions"].append(reconstruction)
                kept["residuals"].append(residual)
        values = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()}
        table = pd.DataFrame({name: values[name] for name in STATISTIC_NAMES})
        table["stat_distance"] = self.stat_distance_.distance(values) if len(table) else np.zeros(0)
        table["map_max"] = values["map_max"]
        if not with_maps:
            return ScoreResult(table)
        empty = np.zeros((0, self.input_size, self.input_size), dtype=np.float32)
        return ScoreResult(table, **{name: np.concatenate(parts) if parts else empty for name, parts in kept.items()})

    def bundle_state(self, directory: Path) -> dict:
        """Write the network (an inference-only ``model.keras``) into ``directory``; the manifest fields it needs."""
        from core.runs.bundles import save_keras_model

        self._check_fitted()
        return {"model_file": save_keras_model(self.model_, directory), "stat_distance": self.stat_distance_.to_json(),
                "history": self.history_, "epochs_run": len(self.history_.get("loss", []))}

    @classmethod
    def from_bundle(cls, directory: Path, manifest: dict) -> "ResidualDetector":
        from core.runs.bundles import load_keras_model

        size = int(manifest["input_size"])
        detector = cls(**saved_parameters(cls, manifest, model=manifest["model_kind"], input_size=size))
        detector.model_ = load_keras_model(directory, manifest, input_shape=(size, size, 1))
        detector.history_ = manifest.get("history", {})
        detector.stat_distance_ = StatDistance.from_json(manifest["stat_distance"])  # checked by read_manifest
        return detector

    def _statistics(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return residual_statistics(residual_maps(images, self.reconstruct(images)))

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("This ResidualDetector is not fitted yet; call fit() or load a bundle first.")


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


class _ProgressCallback(_keras_callback_base()):
    def __init__(self, epochs, progress, should_stop):
        super().__init__()
        self.epochs, self.progress, self.should_stop = epochs, progress, should_stop
        self.cancelled = False

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        elapsed = time.perf_counter() - self.started
        done = epoch + 1
        if self.progress is not None:
            self.progress(TrainingProgress(done, self.epochs, float(logs.get("loss", math.nan)),
                                           float(logs.get("val_loss", math.nan)), elapsed,
                                           elapsed / done * (self.epochs - done)))
        if self.should_stop is not None and self.should_stop():
            self.cancelled = True
            self.model.stop_training = True
