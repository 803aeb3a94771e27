"""Detectors side by side on one data set, over several seeds: ``python -m core compare``.

Every seed trains the NCAE and the CAE with the *same* settings (nothing is tuned for one side
only), builds a memory bank on each one's encoder and one on EfficientNet-Lite0's ImageNet
features (at 224 px), fits PaDiM on the same features, trains the DRAEM-style judge (at the
autoencoders' input size and network; at most its own default number of epochs), and
cross-validates the supervised reference on the NCAE's residual statistics. All of them are
scored on the same labelled test images.

The autoencoders are judged on their primary score, fixed in advance (:data:`AUTOENCODER_SCORE_COLUMN`,
see :mod:`core.decision`),
not on whichever column happens to win on the test labels; the per-column figures are in the
JSON for reference.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd

from core.data.datasets import Dataset
from core.decision import PRIMARY_SCORE
from core.detectors.autoencoder import ResidualDetector
from core.errors import DatasetError
from core.detectors.memory_bank import MEMORY_BANK_COLUMN, PACKAGED_BACKBONE, MemoryBankDetector
from core.detectors.draem import DEFAULT_DRAEM_EPOCHS, DraemDetector
from core.detectors.padim import PADIM_COLUMN, PadimDetector
from core.evaluation.evaluate import TestImages, evaluate_detector, image_figures, load_test_images
from core.evaluation.metrics import ThresholdTable
from core.detectors.residuals import STATISTIC_NAMES
from core.evaluation.supervised import CLASSIFIERS, MIN_PER_CLASS, SUPERVISED_WARNING, cross_validate

AUTOENCODER_SCORE_COLUMN = PRIMARY_SCORE
DETECTOR_LABELS = {
    "ncae": f"NCAE residual ({AUTOENCODER_SCORE_COLUMN})",
    "cae": f"CAE residual ({AUTOENCODER_SCORE_COLUMN})",
    "memory_bank_ncae": "Memory bank on NCAE encoder",
    "memory_bank_cae": "Memory bank on CAE encoder",
    "memory_bank_imagenet": "Memory bank on EfficientNet-Lite0 (ImageNet)",
    "padim_imagenet": "PaDiM on EfficientNet-Lite0 (ImageNet)",
    "draem": "DRAEM-style NCAE + learned residual judge",
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
    good = dataset.load(dataset.train_good, size).images
    if len(good) == 0:
        raise DatasetError(f"{dataset.root}: none of the good training images could be read.")
    test = load_test_images(dataset, size)
    imagenet_size = MemoryBankDetector(backbone=PACKAGED_BACKBONE).input_size
    imagenet_good = dataset.load(dataset.train_good, imagenet_size, channels=3).images
    imagenet_test = load_test_images(dataset, imagenet_size, channels=3)
    runs: dict[str, list[dict]] = {name: [] for name in DETECTOR_LABELS}
    per_column: dict[str, list[dict]] = {"ncae": [], "cae": []}

    for seed in range(int(seeds)):
        for kind in ("ncae", "cae"):
            progress(f"seed {seed + 1}/{seeds}: training the {kind.upper()}")
            autoencoder = ResidualDetector(**(autoencoder_params | {"model": kind, "seed": seed})).fit(good)
            figures, result = evaluate_detector(autoencoder, test, AUTOENCODER_SCORE_COLUMN)
            per_column[kind].append(figures.pop("image_auroc_by_column"))
            runs[kind].append(figures | {"training_seconds": autoencoder.training_seconds_, "seed": seed})

            progress(f"seed {seed + 1}/{seeds}: memory bank on the {kind.upper()} encoder")
            bank = MemoryBankDetector(autoencoder, **(memory_bank_params | {"seed": seed})).fit(good)
            figures, _ = evaluate_detector(bank, test, MEMORY_BANK_COLUMN)
            runs[f"memory_bank_{kind}"].append(figures | {"training_seconds": bank.training_seconds_, "seed": seed})

            if kind == "ncae":
                progress(f"seed {seed + 1}/{seeds}: memory bank on EfficientNet-Lite0 ImageNet features")
                bank = MemoryBankDetector(**(memory_bank_params | {"backbone": PACKAGED_BACKBONE, "seed": seed}))
                bank.fit(imagenet_good)
                figures, _ = evaluate_detector(bank, imagenet_test, MEMORY_BANK_COLUMN)
                runs["memory_bank_imagenet"].append(figures | {"training_seconds": bank.training_seconds_,
                                                               "seed": seed})
                progress(f"seed {seed + 1}/{seeds}: PaDiM on EfficientNet-Lite0 ImageNet features")
                padim = PadimDetector(seed=seed).fit(imagenet_good)
                figures, _ = evaluate_detector(padim, imagenet_test, PADIM_COLUMN)
                runs["padim_imagenet"].append(figures | {"training_seconds": padim.training_seconds_, "seed": seed})
                progress(f"seed {seed + 1}/{seeds}: training the DRAEM-style judge")
                draem = DraemDetector(**draem_parameters(autoencoder_params, seed)).fit(good)
                figures, _ = evaluate_detector(draem, test)
                figures.pop("image_auroc_by_column")
                runs["draem"].append(figures | {"training_seconds": draem.training_seconds_, "seed": seed})
                for classifier in CLASSIFIERS:
                    figures, _ = supervised_figures(result.table, test.labels, classifier, folds, seed)
                    runs[classifier].append(figures | {"seed": seed})

    detectors = {}
    for name, seed_runs in runs.items():
        detectors[name] = {
            "label": DETECTOR_LABELS[name],
            "label_free": name not in CLASSIFIERS,
            **{metric: _mean_std([run[metric] for run in seed_runs]) for metric in METRICS},
            "per_seed": seed_runs,
        }
    for kind, columns in per_column.items():
        detectors[kind]["image_auroc_by_column"] = {
            column: _mean_std([seed_columns[column] for seed_columns in columns]) for column in columns[0]}
    for classifier in CLASSIFIERS:
        detectors[classifier]["fold_f1"] = _mean_std([f for run in runs[classifier] for f in run["fold_f1"]])
        detectors[classifier]["fold_accuracy"] = _mean_std(
            [a for run in runs[classifier] for a in run["fold_accuracy"]])
    label_free = [name for name, entry in detectors.items() if entry["label_free"]]
    best = max(label_free, key=lambda name: detectors[name]["image_auroc"]["mean"])
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


def draem_parameters(autoencoder_params: dict, seed: int) -> dict:
    """DRAEM with the autoencoders' input size and network, and at most its own default number of epochs."""
    shared = {key: autoencoder_params[key] for key in ("input_size", "widths", "bottleneck", "batch_size")
              if key in autoencoder_params}
    epochs = min(int(autoencoder_params.get("epochs", DEFAULT_DRAEM_EPOCHS)), DEFAULT_DRAEM_EPOCHS)
    return shared | {"epochs": epochs, "seed": seed}


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
