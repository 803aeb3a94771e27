"""The promise of the README: default training on the demo set separates good from defect parts."""

from pathlib import Path

import pytest

from core.decision import PRIMARY_SCORE
from core.runs.bundles import load_bundle
from core.data.datasets import open_dataset
from core.detectors.autoencoder.detector import ResidualDetector
from core.evaluation.evaluate import evaluate


DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "assets" / "demo_model"


# README, "Which detector?": on the generated castings the NCAE's primary score reaches 0.956 ± 0.016 over three
# seeds at 64 px (whole images, the class's default); below the mean minus two spreads is a regression
TRAINED_AT_LEAST = 0.92
# the shipped demo model is one of those trainings (0.978 when it was built)
SHIPPED_AT_LEAST = 0.95


@pytest.mark.slow
def test_the_default_ncae_and_the_shipped_demo_model_separate_the_demo_parts_on_their_primary_score():
    """Judged on the column that decides (``map_max``), not on whichever column happens to win on the test labels."""
    with open_dataset("demo") as dataset:
        detector = ResidualDetector(model="ncae")
        decoded = dataset.load(dataset.train_good, detector.input_size)
        detector.fit(decoded.images)
        trained, _ = evaluate(detector, dataset)
        shipped, _ = evaluate(load_bundle(DEMO_BUNDLE), dataset)
    for report, floor in ((trained, TRAINED_AT_LEAST), (shipped, SHIPPED_AT_LEAST)):
        figures = {name: round(values["image_auroc"], 4) for name, values in report["scores"].items()}
        assert report["scores"][PRIMARY_SCORE]["image_auroc"] >= floor, figures
        assert report["pixel"]["pixel_auroc"] >= 0.97
