"""The promise of the README: default training on the demo set separates good from defect parts."""

from pathlib import Path

import pytest

from core.runs.bundles import load_bundle
from core.data.datasets import open_dataset
from core.detectors.autoencoder.detector import ResidualDetector
from core.evaluation.evaluate import evaluate


DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "assets" / "demo_model"


def _best_auroc(report):
    best = max(values["image_auroc"] for values in report["scores"].values())
    return best, {name: round(values["image_auroc"], 4) for name, values in report["scores"].items()}


@pytest.mark.slow
def test_default_ncae_and_the_shipped_demo_model_reach_auroc_099_on_the_demo_set():
    with open_dataset("demo") as dataset:
        detector = ResidualDetector(model="ncae")
        decoded = dataset.load(dataset.train_good, detector.input_size)
        detector.fit(decoded.images)
        trained, _ = evaluate(detector, dataset)
        shipped, _ = evaluate(load_bundle(DEMO_BUNDLE), dataset)
    for report in (trained, shipped):
        best, table = _best_auroc(report)
        assert best >= 0.99, table
        assert report["pixel"]["pixel_auroc"] >= 0.97
