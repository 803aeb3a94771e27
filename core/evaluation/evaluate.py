"""One evaluation for every detector: image figures for each of its score columns, pixel figures where
masks exist, and scoring speed.

:func:`evaluate` is ``python -m core evaluate``: it scores a data set's labelled test images the way
``score`` does (frame check, unreadable files reported) and returns the ``evaluate --json`` object of
docs/contracts.md. :func:`evaluate_detector` is the comparison's: decoded test images in memory, figures on
one column (the detector's primary score unless told otherwise) plus every column's image AUROC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from core.data.datasets import Dataset
from core.errors import DatasetError
from core.evaluation.metrics import pixel_aupro, pixel_auroc, threshold_summary


@dataclass
class TestImages:
    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None


def load_test_images(dataset: Dataset, size: int, channels: int = 1) -> TestImages:
    """The data set's labelled test images at ``size`` px (grey, or colour with ``channels=3``), their labels
    and (when it has them) masks."""
    samples = [sample for sample in dataset.test if sample.label in ("good", "defect")]
    decoded = dataset.load(samples, size, channels)
    kept = [samples[index] for index in decoded.kept]
    labels = np.array([sample.label for sample in kept])
    if not ((labels == "good").any() and (labels == "defect").any()):
        raise DatasetError(f"{dataset.root}: evaluating a detector needs labelled good and defect test images.")
    masks = dataset.load_masks(kept, size) if dataset.has_masks else None
    return TestImages(decoded.images, labels, masks)


def image_figures(scores: np.ndarray, labels: np.ndarray) -> dict:
    summary = threshold_summary(scores, labels)
    return {key: summary[key] for key in ("image_auroc", "image_auprc", "best_f1")}


def pixel_figures(maps: np.ndarray | None, masks: np.ndarray | None) -> dict:
    if maps is None or masks is None:
        return {"pixel_auroc": None, "pixel_aupro": None}
    return {"pixel_auroc": pixel_auroc(maps, masks), "pixel_aupro": pixel_aupro(maps, masks)}


def evaluate_detector(detector, test: TestImages, column: str | None = None) -> tuple[dict, object]:
    """Figures of a fitted detector on decoded test images: image figures on ``column`` (default: its
    primary score), pixel figures, scoring speed and every column's image AUROC."""
    column = column or detector.primary_score
    started = time.perf_counter()
    result = detector.score(test.images, with_maps=test.masks is not None)
    seconds = time.perf_counter() - started
    figures = image_figures(result.table[column].to_numpy(), test.labels)
    figures |= pixel_figures(result.anomaly_maps, test.masks)
    figures["scoring_images_per_second"] = len(test.images) / max(seconds, 1e-9)
    figures["image_auroc_by_column"] = {name: threshold_summary(result.table[name].to_numpy(), test.labels)
                                        ["image_auroc"] for name in detector.score_columns}
    return figures, result


def evaluate(detector, dataset: Dataset):
    """The ``evaluate --json`` object of docs/contracts.md for any detector, and the scored test set it came from."""
    from core.evaluation.scoring import score_samples

    test = [sample for sample in dataset.test if sample.label in ("good", "defect")]
    if not test:
        raise DatasetError(f"{dataset.root}: no labelled test images to evaluate on.")
    scored = score_samples(detector, dataset, test, with_maps=dataset.has_masks)
    labels = scored.table["label"].to_numpy()
    masks = dataset.load_masks(scored.kept_samples, int(detector.input_size)) if dataset.has_masks else None
    pixel = pixel_figures(scored.anomaly_maps, masks)
    scores = {column: threshold_summary(scored.table[column].to_numpy(), labels) | {"pixel_auroc": pixel["pixel_auroc"]}
              for column in detector.score_columns}
    report = {
        "n_good": int((labels == "good").sum()),
        "n_defect": int((labels == "defect").sum()),
        "scores": scores,
        "pixel": pixel,
        "model_kind": detector.kind,
        "primary_score": detector.primary_score,
        "unreadable": scored.errors,
    }
    return report, scored
