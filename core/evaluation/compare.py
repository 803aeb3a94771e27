"""Detectors side by side on one data set, over several seeds: ``python -m core compare``.

Every detector in the registry (:mod:`core.detectors`) is trained or fitted with each seed and scored
on the same labelled test images, on its primary score. The NCAE and the CAE get the *same*
settings (nothing is tuned for one side only), and each also lends its encoder to a memory bank;
DRAEM takes the autoencoders' resolution and network, with at most its own default number of
epochs; the others work at their own resolution. A detector that cannot fit the data (the lattice
detector on parts that are not a periodic surface, a backbone whose weights are missing) gets a
row that says "refused" and why. The supervised reference is cross-validated on the NCAE's residual
statistics.

The autoencoders are judged on their primary score, fixed in advance (:data:`AUTOENCODER_SCORE_COLUMN`,
see :mod:`core.decision`), not on whichever column happens to win on the test labels; the per-column
figures are in the JSON for reference.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd

from core.data.datasets import Dataset
from core.decision import PRIMARY_SCORE
from core.detectors import (AUTOENCODER_NAMES, DETECTOR_NAMES, label, new_detector, primary_score_of,
                            training_options, training_parameters)
from core.detectors.autoencoder.detector import ResidualDetector
from core.detectors.common.patch_features import PACKAGED_BACKBONE
from core.detectors.common.residuals import STATISTIC_NAMES
from core.detectors.features import BackboneUnavailable
from core.detectors.memory_bank.detector import MEMORY_BANK_COLUMN, MemoryBankDetector
from core.errors import DatasetError
from core.evaluation.evaluate import TestImages, evaluate_detector, image_figures, load_test_images
from core.evaluation.metrics import ThresholdTable
from core.evaluation.supervised import CLASSIFIERS, MIN_PER_CLASS, SUPERVISED_WARNING, cross_validate

AUTOENCODER_SCORE_COLUMN = PRIMARY_SCORE
# the registry's detectors, then the variants only the comparison makes: a memory bank on each autoencoder's
# encoder, and the supervised reference
DETECTOR_LABELS = {
    **{name: f"{label(name)} residual ({AUTOENCODER_SCORE_COLUMN})" if name in AUTOENCODER_NAMES else
       f"{label(name)} ({primary_score_of(name)})" for name in DETECTOR_NAMES},
    **{f"memory_bank_{name}": f"Memory bank on {label(name)} encoder" for name in AUTOENCODER_NAMES},
    "logistic_regression": "Supervised: logistic regression",
    "gradient_boosting": "Supervised: gradient boosting",
}
METRICS = ("image_auroc", "image_auprc", "best_f1", "pixel_auroc", "pixel_aupro", "training_seconds",
           "scoring_images_per_second")


def compare_detectors(dataset: Dataset, seeds: int = 3, autoencoder_params: dict | None = None,
                      memory_bank_params: dict | None = None, folds: int = 5,
                      progress: Callable[[str], None] = lambda message: None) -> dict:
    """Train and score every detector ``seeds`` times; returns per-seed figures and their mean ± std."""
    autoencoder_params = dict(autoencoder_params or {})
    memory_bank_params = dict(memory_bank_params or {})
    size = int(autoencoder_params.get("input_size", ResidualDetector().input_size))
    images = _ImagesAtSize(dataset)
    if len(images.good(size, 1)) == 0:
        raise DatasetError(f"{dataset.root}: none of the good training images could be read.")
    runs: dict[str, list[dict]] = {name: [] for name in DETECTOR_LABELS}
    refused: dict[str, str] = {}
    per_column: dict[str, list[dict]] = {name: [] for name in AUTOENCODER_NAMES}

    for seed in range(int(seeds)):
        statistics = None
        for kind in AUTOENCODER_NAMES:
            progress(f"seed {seed + 1}/{seeds}: training the {label(kind)}")
            autoencoder = ResidualDetector(**(autoencoder_params | {"model": kind, "seed": seed}))
            autoencoder.fit(images.good(size, 1))
            figures, result = evaluate_detector(autoencoder, images.test(size, 1), AUTOENCODER_SCORE_COLUMN)
            per_column[kind].append(figures.pop("image_auroc_by_column"))
            runs[kind].append(figures | {"training_seconds": autoencoder.training_seconds_, "seed": seed})
            statistics = result.table if statistics is None else statistics

            progress(f"seed {seed + 1}/{seeds}: memory bank on the {label(kind)} encoder")
            bank = MemoryBankDetector(autoencoder, **(memory_bank_params | {"seed": seed})).fit(images.good(size, 1))
            figures, _ = evaluate_detector(bank, images.test(size, 1), MEMORY_BANK_COLUMN)
            runs[f"memory_bank_{kind}"].append(figures | {"training_seconds": bank.training_seconds_, "seed": seed})

        for name in DETECTOR_NAMES:
            if name in AUTOENCODER_NAMES or name in refused:
                continue
            progress(f"seed {seed + 1}/{seeds}: {label(name)}")
            detector = new_detector(name, **comparison_parameters(name, seed, autoencoder_params, memory_bank_params))
            channels = int(getattr(detector, "channels", 1))
            try:
                detector.fit(images.good(int(detector.input_size), channels))
            except (ValueError, BackboneUnavailable) as error:   # it cannot fit these images: say so in its row
                refused[name] = str(error)
                continue
            figures, _ = evaluate_detector(detector, images.test(int(detector.input_size), channels))
            figures.pop("image_auroc_by_column")
            runs[name].append(figures | {"training_seconds": detector.training_seconds_, "seed": seed})

        test = images.test(size, 1)
        for classifier in CLASSIFIERS:
            figures, _ = supervised_figures(statistics, test.labels, classifier, folds, seed)
            runs[classifier].append(figures | {"seed": seed})

    detectors = {}
    for name, seed_runs in runs.items():
        detectors[name] = {
            "label": DETECTOR_LABELS[name],
            "label_free": name not in CLASSIFIERS,
            **{metric: _mean_std([run[metric] for run in seed_runs]) for metric in METRICS},
            "per_seed": seed_runs,
        }
        if name in refused:
            detectors[name]["refused"] = refused[name]
    for kind, columns in per_column.items():
        detectors[kind]["image_auroc_by_column"] = {
            column: _mean_std([seed_columns[column] for seed_columns in columns]) for column in columns[0]}
    for classifier in CLASSIFIERS:
        detectors[classifier]["fold_f1"] = _mean_std([f for run in runs[classifier] for f in run["fold_f1"]])
        detectors[classifier]["fold_accuracy"] = _mean_std(
            [a for run in runs[classifier] for a in run["fold_accuracy"]])
    label_free = [name for name, entry in detectors.items() if entry["label_free"] and "refused" not in entry]
    best = max(label_free, key=lambda name: detectors[name]["image_auroc"]["mean"])
    test = images.test(size, 1)
    return {
        "data": dataset.summary() | {"source": str(dataset.root)},
        "seeds": int(seeds),
        "n_good": int((test.labels == "good").sum()),
        "n_defect": int((test.labels == "defect").sum()),
        "autoencoder_score_column": AUTOENCODER_SCORE_COLUMN,
        "autoencoder_params": ResidualDetector(**autoencoder_params).run_parameters(),
        "memory_bank_params": MemoryBankDetector(**memory_bank_params).run_parameters(),
        "best_label_free": best,
        "supervised_warning": SUPERVISED_WARNING,
        "detectors": detectors,
    }


class _ImagesAtSize:
    """The data set's good training and labelled test images, decoded once per working size and channels."""

    def __init__(self, dataset: Dataset):
        self.dataset, self._good, self._test = dataset, {}, {}

    def good(self, size: int, channels: int) -> np.ndarray:
        if (size, channels) not in self._good:
            self._good[size, channels] = self.dataset.load(self.dataset.train_good, size, channels=channels).images
        return self._good[size, channels]

    def test(self, size: int, channels: int) -> TestImages:
        if (size, channels) not in self._test:
            self._test[size, channels] = load_test_images(self.dataset, size, channels=channels)
        return self._test[size, channels]


def comparison_parameters(name: str, seed: int, autoencoder_params: dict, memory_bank_params: dict) -> dict:
    """How the comparison builds detector ``name`` (not an autoencoder): at its own resolution, in colour when it
    reads ImageNet features; a network like the autoencoders' at their resolution, for at most the autoencoders'
    epochs and at most its own default; the memory bank with the comparison's bank settings, on the packaged
    backbone."""
    options = training_options(name)
    choices = {"channels": 3 if options.colour == "imagenet" else 1}
    if options.epochs is not None:
        choices["epochs"] = min(int(autoencoder_params.get("epochs", options.epochs)), options.epochs)
    if options.network:
        choices |= {key: autoencoder_params[key] for key in ("input_size", "widths", "bottleneck")
                    if key in autoencoder_params}
    if options.backbone:
        choices |= {"backbone": PACKAGED_BACKBONE} | {key: value for key, value in memory_bank_params.items()
                                                    if key == "coreset_ratio"}
    parameters = training_parameters(name, seed, **choices)
    if options.network and "batch_size" in autoencoder_params:
        parameters["batch_size"] = autoencoder_params["batch_size"]
    return parameters


def supervised_figures(statistics: pd.DataFrame, labels: np.ndarray, classifier: str, folds: int = 5,
                       seed: int = 0):
    """Cross-validated figures of ``classifier`` on residual statistics; out-of-fold scores stand in for scores."""
    started = time.perf_counter()
    validation = cross_validate(statistics.assign(label=labels), STATISTIC_NAMES, classifier, folds=folds, seed=seed)
    figures = image_figures(validation.out_of_fold_probability, labels)
    figures |= {"pixel_auroc": None, "pixel_aupro": None, "training_seconds": time.perf_counter() - started,
                "scoring_images_per_second": None, "fold_f1": validation.folds["f1"].tolist(),
                "fold_accuracy": validation.folds["accuracy"].tolist()}
    return figures, validation


def compare_fitted(detectors: dict, test: TestImages, folds: int = 5, seed: int = 0) -> dict:
    """Figures and ROC curves for detectors that are already fitted — no training, so it is quick.

    ``detectors`` maps a name to ``(detector, score column)``. When one of them is an autoencoder,
    the supervised reference is cross-validated on its residual statistics and added.
    """
    figures, curves, folds_by_classifier = {}, {}, {}
    statistics = None
    for name, (detector, column) in detectors.items():
        figures[name], result = evaluate_detector(detector, test, column)
        curves[name] = (*_roc(result.table[column].to_numpy(), test.labels), figures[name]["image_auroc"])
        if statistics is None and set(STATISTIC_NAMES) <= set(result.table.columns):
            statistics = result.table
    smallest_class = min((test.labels == "good").sum(), (test.labels == "defect").sum())
    if statistics is not None and smallest_class >= MIN_PER_CLASS:
        for classifier in CLASSIFIERS:
            name = DETECTOR_LABELS[classifier]
            figures[name], validation = supervised_figures(statistics, test.labels, classifier, folds, seed)
            curves[name] = (*_roc(validation.out_of_fold_probability, test.labels), figures[name]["image_auroc"])
            folds_by_classifier[name] = validation.folds
    return {"figures": figures, "curves": curves, "folds": folds_by_classifier}


def fitted_comparison_to_json(comparison: dict) -> dict:
    """:func:`compare_fitted`'s result as plain JSON types (its curves as lists, its folds as rows)."""
    def plain(value):
        if isinstance(value, dict):
            return {str(key): plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple, np.ndarray)):
            return [plain(item) for item in value]
        return None if value is None else float(value) if isinstance(value, (int, float, np.number)) else value

    return {"figures": plain(comparison["figures"]),
            "curves": {name: [plain(fpr), plain(tpr), float(auroc)] for name, (fpr, tpr, auroc)
                       in comparison["curves"].items()},
            "folds": {name: folds.to_dict(orient="list") for name, folds in comparison["folds"].items()}}


def fitted_comparison_from_json(document: dict) -> dict:
    """The inverse of :func:`fitted_comparison_to_json`; ``ValueError`` (or ``KeyError``/``TypeError``) for a
    document that is not one."""
    figures = {str(name): {str(key): value for key, value in values.items()}
               for name, values in document["figures"].items()}
    curves = {}
    for name, (fpr, tpr, auroc) in document["curves"].items():
        fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
        if fpr.ndim != 1 or fpr.shape != tpr.shape or not (np.isfinite(fpr).all() and np.isfinite(tpr).all()):
            raise ValueError(f"the ROC curve of {name!r} is damaged")
        curves[str(name)] = (fpr, tpr, float(auroc))
    folds = {str(name): pd.DataFrame(columns) for name, columns in document["folds"].items()}
    if set(curves) != set(figures):
        raise ValueError("the figures and the curves name different detectors")
    return {"figures": figures, "curves": curves, "folds": folds}


def _roc(scores: np.ndarray, labels: np.ndarray):
    false_positive_rate, true_positive_rate, _ = ThresholdTable(scores, labels).roc_curve()
    return false_positive_rate, true_positive_rate


def comparison_rows(report: dict) -> list[dict]:
    """One row per detector, figures formatted ``mean ± std``: the printed table and the dashboard's."""
    rows = []
    for name, entry in report["detectors"].items():
        rows.append({
            "detector": entry["label"],
            "label-free": "yes" if entry["label_free"] else "no (needs labelled defects)",
            "image AUROC": format_mean_std(entry["image_auroc"]),
            "AUPRC": format_mean_std(entry["image_auprc"]),
            "best F1": format_mean_std(entry["best_f1"]),
            "pixel AUROC": format_mean_std(entry["pixel_auroc"]),
            "AUPRO": format_mean_std(entry["pixel_aupro"]),
            "train s": format_mean_std(entry["training_seconds"], digits=1),
            "images/s": format_mean_std(entry["scoring_images_per_second"], digits=0),
        })
        if "refused" in entry:   # its figures are all "—"; the reason stands where its AUROC would
            rows[-1]["image AUROC"] = f"refused: {entry['refused']}"
    return rows


def format_mean_std(value: dict | None, digits: int = 4) -> str:
    if not value or value.get("mean") is None:
        return "—"
    return f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"


def _mean_std(values: list) -> dict | None:
    numbers = [float(value) for value in values if value is not None]
    if not numbers:
        return None
    return {"mean": float(np.mean(numbers)), "std": float(np.std(numbers)), "values": numbers}
