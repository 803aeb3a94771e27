import json

import numpy as np
import pytest

from core.cli import main
from core.evaluation.compare import DETECTOR_LABELS, compare_detectors, comparison_rows
from core.data.datasets import open_dataset

from tests.conftest import TINY_MODEL


@pytest.fixture(scope="module")
def report(small_demo_dir):
    with open_dataset(small_demo_dir) as dataset:
        return compare_detectors(dataset, seeds=2, autoencoder_params=TINY_MODEL,
                                 memory_bank_params={"coreset_ratio": 0.05}, folds=3)


def test_every_detector_is_reported_for_every_seed_with_mean_and_spread(report):
    assert set(report["detectors"]) == set(DETECTOR_LABELS)
    for name, entry in report["detectors"].items():
        assert [run["seed"] for run in entry["per_seed"]] == [0, 1], name
        values = [run["image_auroc"] for run in entry["per_seed"]]
        assert entry["image_auroc"]["mean"] == pytest.approx(np.mean(values))
        assert entry["image_auroc"]["std"] == pytest.approx(np.std(values))
        assert 0.0 <= entry["image_auroc"]["mean"] <= 1.0


def test_pixel_figures_for_label_free_detectors_and_folds_for_the_supervised_ones(report):
    detectors = report["detectors"]
    for name in ("ncae", "cae", "memory_bank_ncae", "memory_bank_cae", "memory_bank_imagenet", "padim_imagenet",
                 "draem"):
        assert detectors[name]["label_free"]
        assert 0.0 <= detectors[name]["pixel_auroc"]["mean"] <= 1.0
        assert 0.0 <= detectors[name]["pixel_aupro"]["mean"] <= 1.0
        assert detectors[name]["scoring_images_per_second"]["mean"] > 0
    for name in ("logistic_regression", "gradient_boosting"):
        assert not detectors[name]["label_free"]
        assert detectors[name]["pixel_auroc"] is None
        assert all(len(run["fold_f1"]) == 3 for run in detectors[name]["per_seed"])
    assert "labelled defect" in report["supervised_warning"]
    assert report["best_label_free"] in ("ncae", "cae", "memory_bank_ncae", "memory_bank_cae", "memory_bank_imagenet",
                                         "padim_imagenet", "draem")


def test_both_autoencoders_get_the_same_settings_and_the_table_shows_mean_and_std(report):
    assert report["autoencoder_params"]["widths"] == list(TINY_MODEL["widths"])
    assert set(report["detectors"]["ncae"]["image_auroc_by_column"]) == \
        set(report["detectors"]["cae"]["image_auroc_by_column"])
    rows = comparison_rows(report)
    assert [row["detector"] for row in rows] == list(DETECTOR_LABELS.values())
    assert all("±" in row["image AUROC"] for row in rows)
    assert rows[-1]["pixel AUROC"] == "—"


def test_compare_command_prints_one_json_object(small_demo_dir, capsys):
    code = main(["compare", "--data", str(small_demo_dir), "--seeds", "1", "--epochs", "1", "--image-size", "32",
                 "--json"])
    captured = capsys.readouterr()
    assert code == 0
    report = json.loads(captured.out)
    assert report["seeds"] == 1 and set(report["detectors"]) == set(DETECTOR_LABELS)


def test_compare_command_refuses_bad_arguments_in_one_line(small_demo_dir, tmp_path, capsys):
    assert main(["compare", "--data", str(tmp_path / "missing")]) == 2
    assert main(["compare", "--data", str(small_demo_dir), "--coreset-ratio", "0.5"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "coreset-ratio" in errors[1]
