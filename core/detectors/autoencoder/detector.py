"""``ResidualDetector``: train an NCAE (or CAE) on good parts, then score images by their residuals.

Estimator-style, as in scikit-learn and PyOD::

    detector = ResidualDetector(model="ncae", epochs=40).fit(good_images)
    result = detector.score(images, with_maps=True)
    result.table            # one row per image: mean, std, ..., mse, stat_distance, map_max (higher = worse)
    result.residuals        # signed residual maps x - x_hat, shape (n, size, size)
    result.anomaly_maps     # |x - x_hat| smoothed by a Gaussian of ``map_sigma`` pixels

Two ways to train. Without ``patch_size`` the network has a fixed ``input_size`` input and learns
from whole images (the original recipe, fine at 64 px). With ``patch_size`` it is built fully
convolutional and learns from ``patches_per_epoch`` random ``patch_size`` crops of the good images
per epoch, taken at the working resolution ``input_size``; it then reconstructs whole images at
that resolution (padded by reflection to a multiple of the network's stride, cropped back). The
cost of an epoch depends on the number and size of the crops, not on the size of the images, so
a 512 px image keeps its 3-pixel pinhole and trains as fast as a 128 px one.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd

from core.decision import PRIMARY_SCORE
from core.defaults import MIN_TRAINING_IMAGES  # noqa: F401  (part of this module's interface)
from core.defaults import (DEFAULT_BOTTLENECK, DEFAULT_EPOCHS, DEFAULT_INPUT_SIZE, DEFAULT_LOSS, DEFAULT_MAP_SIGMA,
                           DEFAULT_NOISE_STD, DEFAULT_PATCHES_PER_EPOCH, DEFAULT_WIDTHS, SCORING_PIXELS_PER_BATCH)
from core.detectors.autoencoder.losses import training_loss
from core.detectors.autoencoder.models import build_autoencoder
from core.detectors.base import (BaseDetector, ScoreResult, TrainingCancelled, TrainingProgress,  # noqa: F401
                                 as_image_batch, saved_parameters, smoothed_maps)
from core.detectors.common.residuals import SCORE_COLUMNS, STATISTIC_NAMES, residual_maps, residual_statistics
from core.detectors.common.training import build_training_state
from core.detectors.autoencoder.stat_distance import StatDistance

# how the learning rate moves over training: "constant" (the default), or "cosine" (to zero by the last epoch). A
# shorter cosine schedule was measured as train's default on patches and not taken: it lost on a real photograph
# set (benchmarks/recorded/training_speed.json)
LEARNING_RATE_DECAYS = ("constant", "cosine")


class ResidualDetector(BaseDetector):
    """Anomaly detector over autoencoder residuals.

    Parameters are plain attributes and are checked when :meth:`fit` builds the network; fitted
    state ends in ``_`` (``model_``, ``history_``, ``stat_distance_``, ``frame_limits_``,
    ``default_decision_``, ``map_scales_``, ``training_seconds_``).
    """

    primary_score = PRIMARY_SCORE  # fixed in advance; core.decision says how it was chosen
    stops_early = True

    def __init__(self, model="ncae", input_size=DEFAULT_INPUT_SIZE, widths=DEFAULT_WIDTHS,
                 bottleneck=DEFAULT_BOTTLENECK, epochs=DEFAULT_EPOCHS, batch_size=32, learning_rate=2e-3,
                 validation_fraction=0.10, patience=8, noise_std=DEFAULT_NOISE_STD, loss=DEFAULT_LOSS,
                 map_sigma=DEFAULT_MAP_SIGMA, seed=0, channels=1, patch_size=None,
                 patches_per_epoch=DEFAULT_PATCHES_PER_EPOCH, learning_rate_decay="constant"):
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
        self.channels = channels
        self.patch_size = patch_size
        self.patches_per_epoch = patches_per_epoch
        self.learning_rate_decay = learning_rate_decay
        self._inference_lock = threading.Lock()

    @property
    def kind(self) -> str:
        return self.model

    score_columns = SCORE_COLUMNS

    def inspector_judge(self, tf):
        from core.detectors.autoencoder.inspector import ResidualJudge

        return ResidualJudge(tf, self)

    def check_parameters(self) -> None:
        """Builds the network once: a shape it cannot take is refused before any image is read."""
        build_autoencoder(self.model, int(self.patch_size or self.input_size), self.widths, int(self.bottleneck),
                          channels=int(self.channels), any_size=self.trains_on_patches)

    @property
    def trains_on_patches(self) -> bool:
        return self.patch_size is not None

    def fit(self, good_images: np.ndarray, image_sizes=None, progress: Callable[[TrainingProgress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> "ResidualDetector":
        """Train on good images only; one held-out share (``validation_fraction``) picks the epoch (early
        stopping), another (:class:`~core.detectors.base.GoodImageSplit`) sets ``stat_distance``, the map
        scales and the default decision (:func:`core.decision.default_decision`).

        ``image_sizes`` (``(width, height)`` of each file as read) lets the frame check refuse
        images of a wildly different size or aspect; without it only intensities are checked.
        """
        images = as_image_batch(good_images, self.input_size, self.channels)
        if len(images) < MIN_TRAINING_IMAGES:
            raise ValueError(f"Training needs at least {MIN_TRAINING_IMAGES} good images, got {len(images)}.")
        if not 0 < self.validation_fraction < 0.5:
            raise ValueError(f"`validation_fraction` (the early-stopping share) must be between 0 and 0.5, "
                             f"got {self.validation_fraction!r}.")
        if int(self.epochs) < 1:
            raise ValueError(f"`epochs` must be at least 1, got {self.epochs!r}.")
        if self.learning_rate_decay not in LEARNING_RATE_DECAYS:
            raise ValueError(f"`learning_rate_decay` must be one of {', '.join(LEARNING_RATE_DECAYS)}, "
                             f"got {self.learning_rate_decay!r}.")

        # seeds Python, NumPy and the backend for the whole process: callers that train in threads
        # serialise fit() (dashboard/jobs.py does), or two trainings would disturb each other's draws
        keras.utils.set_random_seed(int(self.seed))
        # the epoch is picked on one held-out share and the threshold set on another, so the false-reject
        # rate the default decision promises is not flattered by the epoch choice
        split = self._split(len(images))
        training, held_out, calibration = images[split.training], images[split.stopping], images[split.calibration]
        self.held_out_indices_ = np.sort(split.calibration)

        if self.trains_on_patches:
            patch = int(self.patch_size)
            if not 16 <= patch <= int(self.input_size):
                raise ValueError(f"`patch_size` must be from 16 px to the working resolution ({self.input_size} px), "
                                 f"got {self.patch_size!r}.")
            if int(self.patches_per_epoch) < int(self.batch_size):
                raise ValueError(f"`patches_per_epoch` must be at least the batch size ({self.batch_size}), "
                                 f"got {self.patches_per_epoch!r}.")
        network = build_autoencoder(self.model, int(self.patch_size or self.input_size), self.widths,
                                    int(self.bottleneck), float(self.noise_std), int(self.channels),
                                    any_size=self.trains_on_patches)
        patches = RandomPatches(training, int(self.patch_size), int(self.patches_per_epoch), int(self.batch_size),
                                int(self.seed)) if self.trains_on_patches else None
        steps_per_epoch = len(patches) if patches is not None else -(-len(training) // int(self.batch_size))
        network.compile(optimizer=keras.optimizers.Adam(self._learning_rate(steps_per_epoch)),
                        loss=training_loss(self.loss))
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(self.patience), restore_best_weights=True),
            _ProgressCallback(int(self.epochs), progress, should_stop),
        ]
        started = time.perf_counter()
        if patches is not None:
            # the held-out loss is measured on fixed crops, so epochs are compared on the same pixels
            held_out_patches = RandomPatches(held_out, int(self.patch_size), len(held_out) * 8, 1,
                                             int(self.seed) + 1).fixed_crops()
            build_training_state(network, patches[0])
            history = network.fit(patches, validation_data=(held_out_patches, held_out_patches),
                                  epochs=int(self.epochs), callbacks=callbacks, verbose=0)
        else:
            stacked, held_out_stacked = (training[..., None], held_out[..., None]) if self.channels == 1 else (
                training, held_out)
            build_training_state(network, (stacked[:1], stacked[:1]))
            history = network.fit(stacked, stacked, validation_data=(held_out_stacked, held_out_stacked),
                                  epochs=int(self.epochs),
                                  batch_size=int(self.batch_size), shuffle=True, callbacks=callbacks, verbose=0)
        if callbacks[1].cancelled:
            raise TrainingCancelled("Training was cancelled.")
        self.training_seconds_ = time.perf_counter() - started
        self.model_ = network
        self.history_ = {key: [float(value) for value in values] for key, values in history.history.items()}
        self.n_train_images_ = len(training)
        self.n_held_out_images_ = len(calibration)
        self.stat_distance_ = StatDistance.fit(self._statistics(calibration), seed=int(self.seed))
        calibrated = self.score(calibration, with_maps=True)
        self._calibrate(images, image_sizes, calibrated.table[self.primary_score], calibrated.residuals)
        return self

    def _learning_rate(self, steps_per_epoch: int):
        """Adam's learning rate: constant, or (``"cosine"``) falling from ``learning_rate`` to zero along a cosine
        over every step of ``epochs`` epochs, so the last epochs settle (early stopping may end training sooner)."""
        if self.learning_rate_decay == "constant":
            return float(self.learning_rate)
        return keras.optimizers.schedules.CosineDecay(float(self.learning_rate),
                                                      decay_steps=steps_per_epoch * int(self.epochs))

    def reconstruct(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Reconstructions, the same shape as ``as_image_batch(images)``."""
        self._check_fitted()
        batch = as_image_batch(images, self.input_size, self.channels)
        if not len(batch):
            return batch
        stack = batch[..., None] if self.channels == 1 else batch
        side = int(self.input_size)
        padding = 0
        if self.trains_on_patches:
            # a fully convolutional network needs sides divisible by its total stride; reflection
            # continues the surface, so the border is reconstructed like the rest
            stride = 2 ** len(tuple(self.widths))
            padding = (-side) % stride
            batch_size = max(1, min(batch_size, SCORING_PIXELS_PER_BATCH // (side + padding) ** 2))
        outputs = []
        with self._inference_lock:
            for start in range(0, len(stack), batch_size):
                chunk = stack[start:start + batch_size]
                if padding:
                    chunk = np.pad(chunk, ((0, 0), (0, padding), (0, padding), (0, 0)), mode="reflect")
                output = np.asarray(self.model_.predict_on_batch(chunk))[:, :side, :side]
                outputs.append(output[..., 0] if self.channels == 1 else output)
        return np.concatenate(outputs)

    def score(self, images: np.ndarray, with_maps: bool = False, batch_size: int = 64) -> ScoreResult:
        """Score images; memory stays flat unless ``with_maps`` asks to keep every map."""
        self._check_fitted()
        batch = as_image_batch(images, self.input_size, self.channels)
        columns: dict[str, list[np.ndarray]] = {name: [] for name in (*STATISTIC_NAMES, "map_max")}
        kept: dict[str, list[np.ndarray]] = {"anomaly_maps": [], "reconstructions": [], "residuals": []}
        for start in range(0, len(batch), batch_size):
            chunk = batch[start:start + batch_size]
            reconstruction = self.reconstruct(chunk, batch_size)
            residual = residual_maps(chunk, reconstruction)
            for name, values in residual_statistics(residual).items():
                columns[name].append(values)
            anomaly_map = smoothed_maps(np.abs(residual), self.map_smoothing())
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
        return ScoreResult(table, **{name: np.concatenate(parts) if parts else
                                     (batch[:0] if name == "reconstructions" else empty) for name, parts in kept.items()})

    def bundle_state(self, directory: Path) -> dict:
        """Write the network (an inference-only ``model.keras``) into ``directory``; the manifest fields it needs."""
        from core.detectors.saving import save_keras_model

        self._check_fitted()
        return {"model_file": save_keras_model(self.model_, directory), "stat_distance": self.stat_distance_.to_json(),
                "history": self.history_, "epochs_run": len(self.history_.get("loss", []))}

    @classmethod
    def from_bundle(cls, directory: Path, manifest: dict) -> "ResidualDetector":
        from core.detectors.saving import load_keras_model

        size = int(manifest["input_size"])
        detector = cls(**saved_parameters(cls, manifest, model=manifest["model_kind"], input_size=size,
                                          channels=int(manifest.get("channels", 1))))
        side = None if detector.trains_on_patches else size
        detector.model_ = load_keras_model(directory, manifest, input_shape=(side, side, detector.channels))
        detector.history_ = manifest.get("history", {})
        detector.stat_distance_ = StatDistance.from_json(manifest["stat_distance"])  # checked by read_manifest
        return detector

    def _statistics(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return residual_statistics(residual_maps(images, self.reconstruct(images)))


class RandomPatches(keras.utils.PyDataset):
    """Random square crops of the training images, drawn afresh every epoch.

    Each batch is drawn with a generator seeded by (seed, epoch, batch), so training is reproducible
    whatever order Keras asks for the batches in. Crops are not flipped or rotated: whether that is a
    symmetry of the good parts is not known (a part photographed the same way every time is not).
    """

    def __init__(self, images: np.ndarray, patch_size: int, patches_per_epoch: int, batch_size: int, seed: int):
        super().__init__()
        self.images = images if images.ndim == 4 else images[..., None]
        self.patch_size, self.batch_size, self.seed = patch_size, batch_size, seed
        self.batches = max(1, patches_per_epoch // batch_size)
        self.epoch = 0

    def __len__(self) -> int:
        return self.batches

    def __getitem__(self, index: int):
        crops = self._crops(np.random.default_rng((self.seed, self.epoch, index)), self.batch_size)
        return crops, crops

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def fixed_crops(self) -> np.ndarray:
        """``batches × batch_size`` crops drawn once, for a validation set that does not change."""
        return self._crops(np.random.default_rng((self.seed, 2**31)), self.batches * self.batch_size)

    def _crops(self, rng: np.random.Generator, count: int) -> np.ndarray:
        count_images, height, width = self.images.shape[:3]
        size = self.patch_size
        which = rng.integers(0, count_images, count)
        tops = rng.integers(0, height - size + 1, count)
        lefts = rng.integers(0, width - size + 1, count)
        return np.stack([self.images[image, top:top + size, left:left + size]
                         for image, top, left in zip(which, tops, lefts)])


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
