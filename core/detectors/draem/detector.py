"""A learned residual judge in the manner of DRAEM (Zavrtanik, Kristan and Skočaj, ICCV 2021).

The autoencoders' weakness is the last step: a residual statistic such as ``map_max`` cannot tell
a defect's error from the error every good part of a fibrous or granular surface shows. DRAEM
learns that step instead, with no pretrained weights and no real defect:

1. Synthetic anomalies are pasted on the good training images (:mod:`core.detectors.draem.synthetic_anomalies`:
   Perlin-noise masks filled from other training images, procedural patterns, or a folder of
   anomaly sources the user gives), fresh ones every epoch.
2. The NCAE learns to reconstruct the *clean* image from the pasted one (mean squared error).
3. A small U-Net, the judge, sees the pair ``(x, x̂)`` and learns to segment what was pasted
   (focal loss, since defect pixels are rare).

Both are trained together, as one Keras model. The anomaly map is the judge's defect probability,
smoothed by a Gaussian of ``map_sigma`` pixels; the image score ``draem_score`` is its maximum. A
held-out 15 % of the good images, with their own fixed synthetic anomalies, drive early stopping;
their clean versions set the default decision.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.defaults import DEFAULT_BOTTLENECK, DEFAULT_WIDTHS, MIN_TRAINING_IMAGES
from core.detectors.draem import DEFAULT_DRAEM_EPOCHS, DEFAULT_DRAEM_INPUT_SIZE
from core.detectors.common.residuals import residual_maps
from core.detectors.common.training import build_training_state
from core.detectors.base import (BaseDetector, ScoreResult, TrainingCancelled, TrainingProgress, as_image_batch,
                                 saved_parameters, smoothed_maps)

DRAEM_COLUMN = "draem_score"
JUDGE_WIDTHS = (16, 32, 64)


def build_judge(input_size: int, widths=JUDGE_WIDTHS, channels: int = 1):
    """A small U-Net from the image and its reconstruction, ``(s, s, 2 × channels)``, to a defect probability
    ``(s, s, 1)``."""
    import keras
    from keras import layers

    pair = keras.Input(shape=(input_size, input_size, 2 * channels), name="image_and_reconstruction")
    features, skips = pair, []
    for stage, width in enumerate(widths):
        features = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"judge_down_{stage}_a")(features)
        features = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"judge_down_{stage}_b")(features)
        skips.append(features)
        features = layers.MaxPooling2D(2, name=f"judge_pool_{stage}")(features)
    features = layers.Conv2D(widths[-1] * 2, 3, padding="same", activation="relu", name="judge_middle")(features)
    for stage, width in reversed(list(enumerate(widths))):
        features = layers.UpSampling2D(2, name=f"judge_up_{stage}")(features)
        features = layers.Concatenate(name=f"judge_skip_{stage}")([features, skips[stage]])
        features = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"judge_up_{stage}_a")(features)
    probability = layers.Conv2D(1, 1, activation="sigmoid", name="defect_probability")(features)
    return keras.Model(pair, probability, name="judge")


def build_draem(input_size: int, widths=DEFAULT_WIDTHS, bottleneck: int = DEFAULT_BOTTLENECK, channels: int = 1):
    """The NCAE and the judge as one model: image (grey or colour) → (reconstruction, defect probability)."""
    import keras
    from keras import layers

    from core.detectors.autoencoder.models import build_autoencoder

    stride_total = 2 ** max(len(widths), len(JUDGE_WIDTHS))
    if input_size < stride_total or input_size % stride_total:
        raise ValueError(f"`input_size` must be a positive multiple of {stride_total}, got {input_size!r}.")
    image = keras.Input(shape=(input_size, input_size, channels), name="image")
    reconstruction = build_autoencoder("ncae", input_size, widths, bottleneck, channels=channels)(image)
    pair = layers.Concatenate(name="pair")([image, reconstruction])
    probability = build_judge(input_size, channels=channels)(pair)
    return keras.Model(image, [reconstruction, probability], name="draem")


class DraemDetector(BaseDetector):
    """NCAE plus a learned residual judge; ``fit(good_images)``, ``score(images)``.

    Parameters:
        input_size: side of the square input (a multiple of 16).
        channels: 1 reads images grey, 3 in colour.
        anomaly_source: a folder of pictures to paste as anomalies, besides the built-in sources.
        anomaly_share: share of training images that get an anomaly each epoch.
        map_sigma: Gaussian smoothing of the defect probability, in pixels (``None``: input size / 32).
    """

    kind = "draem"
    primary_score = DRAEM_COLUMN
    score_columns = (DRAEM_COLUMN,)
    stops_early = True

    def __init__(self, input_size=DEFAULT_DRAEM_INPUT_SIZE, widths=DEFAULT_WIDTHS, bottleneck=DEFAULT_BOTTLENECK,
                 epochs=DEFAULT_DRAEM_EPOCHS, batch_size=16, learning_rate=1e-3, anomaly_source=None,
                 anomaly_share=0.5, validation_fraction=0.10, patience=10, map_sigma=None, seed=0, channels=1):
        self.input_size = input_size
        self.channels = channels
        self.widths = widths
        self.bottleneck = bottleneck
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.anomaly_source = anomaly_source
        self.anomaly_share = anomaly_share
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.map_sigma = map_sigma
        self.seed = seed
        self._inference_lock = threading.Lock()

    def inspector_judge(self, tf):
        from core.detectors.draem.inspector import DraemJudge

        return DraemJudge(tf, self)

    def check_parameters(self) -> None:
        build_draem(int(self.input_size), self.widths, int(self.bottleneck), int(self.channels))

    def fit(self, good_images: np.ndarray, image_sizes=None, progress: Callable[[TrainingProgress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> "DraemDetector":
        import keras

        from core.detectors.draem.synthetic_anomalies import augment

        size = int(self.input_size)
        images = as_image_batch(good_images, size, int(self.channels))
        if len(images) < MIN_TRAINING_IMAGES:
            raise ValueError(f"Training needs at least {MIN_TRAINING_IMAGES} good images, got {len(images)}.")
        if int(self.epochs) < 1:
            raise ValueError(f"`epochs` must be at least 1, got {self.epochs!r}.")
        if not 0 < float(self.anomaly_share) < 1:
            raise ValueError(f"`anomaly_share` must be between 0 and 1, got {self.anomaly_share!r}.")
        sources = load_anomaly_sources(self.anomaly_source, size, int(self.channels)) if self.anomaly_source else None

        keras.utils.set_random_seed(int(self.seed))  # process-wide, as for the autoencoders (see jobs.py)
        rng = np.random.default_rng(int(self.seed))
        # the epoch is picked on one held-out share and the threshold set on another (as for the autoencoders)
        split = self._split(len(images))
        training, held_out, calibration = images[split.training], images[split.stopping], images[split.calibration]
        # a fixed anomalous version of the held-out images, so their loss can be compared between epochs
        validation_inputs, validation_masks = augment(held_out, rng, 0.5, sources)

        network = build_draem(size, self.widths, int(self.bottleneck), int(self.channels))
        stack = _with_channel_axis   # (n, s, s) grey stacks get the network's channel axis
        network.compile(optimizer=keras.optimizers.Adam(float(self.learning_rate)),
                        loss=["mse", keras.losses.BinaryFocalCrossentropy(gamma=2.0)])
        build_training_state(network, (stack(training[:1]), [stack(training[:1]), stack(training[:1])[..., :1]]))
        # an epoch sees at least 256 samples, so small sets still get enough anomalies per epoch
        per_epoch = max(len(training), 256)
        history, best, best_weights, waited = {"loss": [], "val_loss": []}, math.inf, None, 0
        started = time.perf_counter()
        for epoch in range(int(self.epochs)):
            clean = training[rng.integers(len(training), size=per_epoch)]
            inputs, masks = augment(clean, rng, float(self.anomaly_share), sources)
            fitted = network.fit(stack(inputs), [stack(clean), masks[..., None]], epochs=1,
                                 batch_size=int(self.batch_size), shuffle=True, verbose=0)
            loss = float(fitted.history["loss"][-1])
            validation_loss = float(network.evaluate(stack(validation_inputs),
                                                     [stack(held_out), validation_masks[..., None]],
                                                     batch_size=64, verbose=0)[0])
            history["loss"].append(loss)
            history["val_loss"].append(validation_loss)
            if validation_loss < best:
                best, best_weights, waited = validation_loss, network.get_weights(), 0
            else:
                waited += 1
            elapsed = time.perf_counter() - started
            if progress is not None:
                progress(TrainingProgress(epoch + 1, int(self.epochs), loss, validation_loss, elapsed,
                                          elapsed / (epoch + 1) * (int(self.epochs) - epoch - 1)))
            if should_stop is not None and should_stop():
                raise TrainingCancelled("Training was cancelled.")
            if waited >= int(self.patience):
                break
        network.set_weights(best_weights)
        self.training_seconds_ = time.perf_counter() - started
        self.model_ = network
        self.history_ = history
        self.n_train_images_, self.n_held_out_images_ = len(training), len(calibration)
        calibrated = self.score(calibration, with_maps=True)
        self._calibrate(images, image_sizes, calibrated.table[DRAEM_COLUMN], calibrated.residuals)
        return self

    def score(self, images: np.ndarray, with_maps: bool = False, batch_size: int = 64) -> ScoreResult:
        self._check_fitted()
        batch = as_image_batch(images, int(self.input_size), int(self.channels))
        scores, kept = [], {"anomaly_maps": [], "reconstructions": [], "residuals": []}
        for start in range(0, len(batch), batch_size):
            chunk = batch[start:start + batch_size]
            with self._inference_lock:
                reconstruction, probability = self.model_.predict_on_batch(_with_channel_axis(chunk))
            anomaly_map = smoothed_maps(np.asarray(probability)[..., 0], self.map_smoothing())
            scores.append(anomaly_map.reshape(len(chunk), -1).max(axis=1).astype(np.float64))
            if with_maps:
                reconstruction = np.asarray(reconstruction).reshape(chunk.shape)
                kept["anomaly_maps"].append(anomaly_map)
                kept["reconstructions"].append(reconstruction)
                kept["residuals"].append(residual_maps(chunk, reconstruction))
        table = pd.DataFrame({DRAEM_COLUMN: np.concatenate(scores) if scores else np.zeros(0)})
        if not with_maps:
            return ScoreResult(table)
        empty = np.zeros((0, int(self.input_size), int(self.input_size)), np.float32)
        return ScoreResult(table, **{name: np.concatenate(parts) if parts else
                                     (batch[:0] if name == "reconstructions" else empty) for name, parts in kept.items()})

    def bundle_state(self, directory: Path) -> dict:
        from core.detectors.saving import save_keras_model

        return {"model_file": save_keras_model(self.model_, directory), "history": self.history_,
                "epochs_run": len(self.history_["loss"])}

    @classmethod
    def from_bundle(cls, directory: Path, manifest: dict) -> "DraemDetector":
        from core.detectors.saving import load_keras_model

        size = int(manifest["input_size"])
        detector = cls(**saved_parameters(cls, manifest, input_size=size, channels=int(manifest.get("channels", 1))))
        detector.model_ = load_keras_model(directory, manifest, input_shape=(size, size, detector.channels))
        if len(detector.model_.outputs) != 2:
            raise ValueError("the model is not an image → (reconstruction, defect probability) network")
        detector.history_ = manifest.get("history", {})
        return detector

    def map_smoothing(self) -> float:
        return int(self.input_size) / 32 if self.map_sigma is None else float(self.map_sigma)


def _with_channel_axis(images: np.ndarray) -> np.ndarray:
    """``(n, s, s)`` grey stacks get the network's channel axis; colour ones have it."""
    return images[..., None] if images.ndim == 3 else images


def load_anomaly_sources(folder, size: int, channels: int = 1, limit: int = 500) -> np.ndarray:
    """Up to ``limit`` pictures from ``folder`` (and its subfolders), at ``size`` px, to paste as anomalies."""
    from core.data.images import decode_many, is_image_name
    from core.errors import DatasetError

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: the anomaly source folder does not exist.")
    files = sorted(path for path in folder.rglob("*") if path.is_file() and is_image_name(path.name))[:limit]
    decoded = decode_many(files, size, names=[str(path) for path in files], channels=channels)
    if not len(decoded.images):
        raise DatasetError(f"{folder}: holds no readable pictures to use as anomaly sources.")
    return decoded.images


