"""The steps the command line and the dashboard share: train a run, score images, evaluate."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.bundles import save_bundle
from core.datasets import Dataset, Sample
from core.detector import SCORE_COLUMNS, ResidualDetector, TrainingCancelled, TrainingProgress
from core.errors import DatasetError
from core.images import decode_many
from core.metrics import pixel_aupro, pixel_auroc, threshold_summary
from core.runs import write_status

IDENTITY_COLUMNS = ("path", "label", "defect_type")


@dataclass
class ScoredSet:
    """A scores.csv-shaped table plus, on request, maps aligned with its rows."""

    table: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)
    anomaly_maps: np.ndarray | None = None
    residuals: np.ndarray | None = None
    reconstructions: np.ndarray | None = None
    images: np.ndarray | None = None
    kept_samples: list[Sample] = field(default_factory=list)


def train_run(dataset: Dataset, run_dir: str | Path, detector: ResidualDetector,
              progress: Callable[[TrainingProgress], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              warn: Callable[[str], None] = lambda message: None) -> ResidualDetector:
    """Train on the data set's good training images and save the bundle into ``run_dir``.

    ``status.json`` follows every epoch; it ends as ``complete``, ``cancelled`` or ``failed``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    history = {"loss": [], "val_loss": []}
    write_status(run_dir, state="loading", model_kind=detector.model, message="Reading the training images")

    def on_epoch(update: TrainingProgress) -> None:
        history["loss"].append(update.loss)
        history["val_loss"].append(update.val_loss)
        write_status(run_dir, state="training", epoch=update.epoch, epochs=update.epochs, loss=update.loss,
                     val_loss=update.val_loss, elapsed_seconds=update.elapsed_seconds,
                     seconds_left=update.seconds_left, history=history)
        if progress is not None:
            progress(update)

    try:
        decoded = dataset.load(dataset.train_good, int(detector.input_size))
        for message in decoded.errors.values():
            warn(f"skipped {message}")
        if len(decoded.images) == 0:
            raise DatasetError(f"{dataset.root}: none of the good training images could be read.")
        write_status(run_dir, state="training", epoch=0, epochs=int(detector.epochs), history=history,
                     message=f"Training on {len(decoded.images)} good images")
        detector.fit(decoded.images, progress=on_epoch, should_stop=should_stop)
        save_bundle(detector, run_dir, dataset.summary() | {"source": str(dataset.root)})
    except TrainingCancelled:
        write_status(run_dir, state="cancelled", message="Training was cancelled.")
        raise
    except Exception as error:
        write_status(run_dir, state="failed", message=str(error) or type(error).__name__,
                     detail=traceback.format_exc(limit=5))
        raise
    write_status(run_dir, state="complete", message="Training finished", history=detector.history_,
                 training_seconds=detector.training_seconds_)
    return detector


def score_samples(detector: ResidualDetector, dataset: Dataset, samples: list[Sample],
                  with_maps: bool = False) -> ScoredSet:
    decoded = dataset.load(samples, int(detector.input_size))
    kept = [samples[index] for index in decoded.kept]
    identity = pd.DataFrame({
        "path": [sample.display_path(dataset.root) for sample in kept],
        "label": [sample.label for sample in kept],
        "defect_type": [sample.defect_type if sample.label == "defect" else "" for sample in kept],
    })
    errors = {samples[index].display_path(dataset.root): message for index, message in decoded.errors.items()}
    return _scored(detector, decoded.images, identity, errors, with_maps, kept)


def score_sources(detector: ResidualDetector, sources: list, names: list[str], with_maps: bool = False) -> ScoredSet:
    """Score loose files or uploaded bytes whose label is unknown."""
    decoded = decode_many(sources, int(detector.input_size), names=names)
    identity = pd.DataFrame({"path": [names[index] for index in decoded.kept], "label": "", "defect_type": ""})
    errors = {names[index]: message for index, message in decoded.errors.items()}
    return _scored(detector, decoded.images, identity, errors, with_maps, [])


def _scored(detector, images, identity, errors, with_maps, kept) -> ScoredSet:
    result = detector.score(images, with_maps=with_maps)
    table = pd.concat([identity.reset_index(drop=True), result.table.reset_index(drop=True)], axis=1)
    return ScoredSet(table, errors, result.anomaly_maps, result.residuals, result.reconstructions,
                     images if with_maps else None, kept)


def evaluate(detector: ResidualDetector, dataset: Dataset) -> tuple[dict, ScoredSet]:
    """The ``evaluate --json`` object of DESIGN.md, and the scored test set it came from."""
    test = [sample for sample in dataset.test if sample.label in ("good", "defect")]
    if not test:
        raise DatasetError(f"{dataset.root}: no labelled test images to evaluate on.")
    scored = score_samples(detector, dataset, test, with_maps=dataset.has_masks)
    labels = scored.table["label"].to_numpy()
    pixel = {"pixel_auroc": None, "pixel_aupro": None}
    if dataset.has_masks and scored.anomaly_maps is not None:
        masks = dataset.load_masks(scored.kept_samples, int(detector.input_size))
        pixel = {"pixel_auroc": pixel_auroc(scored.anomaly_maps, masks),
                 "pixel_aupro": pixel_aupro(scored.anomaly_maps, masks)}
    scores = {}
    for column in SCORE_COLUMNS:
        summary = threshold_summary(scored.table[column].to_numpy(), labels)
        scores[column] = summary | {"pixel_auroc": pixel["pixel_auroc"]}
    report = {
        "n_good": int((labels == "good").sum()),
        "n_defect": int((labels == "defect").sum()),
        "scores": scores,
        "pixel": pixel,
        "model_kind": detector.model,
        "unreadable": scored.errors,
    }
    return report, scored
