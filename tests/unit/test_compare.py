import json

import numpy as np
import pytest

from core.cli import main
from core.evaluation.compare import DETECTOR_LABELS, compare_detectors, comparison_rows
from core.data.datasets import open_dataset

from tests.conftest import TINY_MODEL


@pytest.fixture(scope="module")
def report(small_demo_dir, keras_home):
    with open_dataset(small_demo_dir) as dataset:
        return compare_detectors(dataset, seeds=2, autoencoder_params=TINY_MODEL,
                                 memory_bank_params={"coreset_ratio": 0.05}, folds=3)


def test_every_registered_detector_is_reported_for_every_seed_or_refused_with_its_reason(report):
    from core.detectors import DETECTOR_NAMES

    assert set(DETECTOR_NAMES) <= set(report["detectors"]) == set(DETECTOR_LABELS)
    # the demo castings are no periodic surface: the lattice detector says so instead of a figure
    lattice = report["detectors"]["lattice"]
    assert "periodic" in lattice["refused"] and lattice["image_auroc"] is None and lattice["per_seed"] == []
    row = next(row for row in comparison_rows(report) if row["detector"] == lattice["label"])
    assert row["image AUROC"].startswith("refused: ") and "periodic" in row["image AUROC"]
    for name, entry in report["detectors"].items():
        if "refused" in entry:
            continue
        assert [run["seed"] for run in entry["per_seed"]] == [0, 1], name
        values = [run["image_auroc"] for run in entry["per_seed"]]
        assert entry["image_auroc"]["mean"] == pytest.approx(np.mean(values))
        assert entry["image_auroc"]["std"] == pytest.approx(np.std(values))
    # the ImageNet memory bank finds the generated defects; the report names the best label-free detector
    assert report["detectors"]["memory_bank"]["image_auroc"]["mean"] > 0.9
    best = report["best_label_free"]
    assert report["detectors"][best]["label_free"] and "refused" not in report["detectors"][best]
    assert all(report["detectors"][best]["image_auroc"]["mean"] >= entry["image_auroc"]["mean"]
               for entry in report["detectors"].values() if entry["label_free"] and entry["image_auroc"])


def test_pixel_figures_for_label_free_detectors_and_folds_for_the_supervised_ones(report):
    detectors = report["detectors"]
    for name in ("ncae", "cae", "memory_bank_ncae", "memory_bank_cae", "memory_bank", "padim", "draem"):
        assert detectors[name]["label_free"]
        assert len(detectors[name]["pixel_auroc"]["values"]) == 2 and len(detectors[name]["pixel_aupro"]["values"]) == 2
        assert detectors[name]["scoring_images_per_second"]["mean"] > 0
    for name in ("logistic_regression", "gradient_boosting"):
        assert not detectors[name]["label_free"]
        assert detectors[name]["pixel_auroc"] is None
        assert all(len(run["fold_f1"]) == 3 for run in detectors[name]["per_seed"])
    assert "labelled defect" in report["supervised_warning"]


def test_both_autoencoders_get_the_same_settings_and_the_table_shows_mean_and_std(report):
    assert report["autoencoder_params"]["widths"] == list(TINY_MODEL["widths"])
    assert set(report["detectors"]["ncae"]["image_auroc_by_column"]) == \
        set(report["detectors"]["cae"]["image_auroc_by_column"])
    rows = comparison_rows(report)
    assert [row["detector"] for row in rows] == list(DETECTOR_LABELS.values())
    assert all("±" in row["image AUROC"] for row in rows if not row["image AUROC"].startswith("refused"))
    assert rows[-1]["pixel AUROC"] == "—"


def test_compare_command_prints_one_json_object_or_a_table_with_every_row(report, small_demo_dir, monkeypatch,
                                                                          capsys):
    """The command's own part: its options reach the comparison, and the report is printed whole (the comparison
    itself is the fixture's, measured above, not trained a second time)."""
    import core.evaluation.compare as compare

    asked = []

    def comparison(dataset, seeds, autoencoder_params, memory_bank_params, progress):
        asked.append((seeds, autoencoder_params, memory_bank_params))
        return report

    monkeypatch.setattr(compare, "compare_detectors", comparison)
    arguments = ["compare", "--data", str(small_demo_dir), "--seeds", "2", "--epochs", "1", "--image-size", "32",
                 "--coreset-ratio", "0.02"]
    assert main([*arguments, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(report))
    assert asked == [(2, {"input_size": 32, "epochs": 1}, {"coreset_ratio": 0.02})]
    assert main(arguments) == 0
    table = capsys.readouterr().out.splitlines()
    for entry in report["detectors"].values():   # a refused detector too, with its reason
        line = next(line for line in table if line.startswith(entry["label"]))
        assert ("refused: " in line) == ("refused" in entry)


def test_compare_command_refuses_bad_arguments_in_one_line(small_demo_dir, tmp_path, capsys):
    assert main(["compare", "--data", str(tmp_path / "missing")]) == 2
    assert main(["compare", "--data", str(small_demo_dir), "--coreset-ratio", "0.5"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "coreset-ratio" in errors[1]


def test_a_saved_quick_comparison_reads_back_as_it_was_and_a_damaged_one_is_refused():
    """What Compare keeps on disk between restarts: the same figures, curves and folds after a round trip through
    JSON; a curve that is not one, or curves for other detectors than the figures, are refused (and recomputed)."""
    import pandas as pd

    from core.evaluation.compare import fitted_comparison_from_json, fitted_comparison_to_json

    comparison = {"figures": {"NCAE": {"image_auroc": np.float64(0.93), "pixel_auroc": None,
                                       "image_auroc_by_column": {"map_max": 0.93}}},
                  "curves": {"NCAE": (np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.9, 1.0]), 0.93)},
                  "folds": {"Supervised": pd.DataFrame({"fold": [1, 2], "f1": [0.8, 0.9]})}}
    document = json.loads(json.dumps(fitted_comparison_to_json(comparison)))
    back = fitted_comparison_from_json(document)
    assert back["figures"] == {"NCAE": {"image_auroc": 0.93, "pixel_auroc": None,
                                        "image_auroc_by_column": {"map_max": 0.93}}}
    np.testing.assert_array_equal(back["curves"]["NCAE"][1], [0.0, 0.9, 1.0])
    assert back["folds"]["Supervised"]["f1"].tolist() == [0.8, 0.9]
    for damage in ({"curves": {"NCAE": [[0.0, 1.0], [0.0], 0.9]}},          # true positives shorter than false
                   {"curves": {"NCAE": [["x"], ["y"], 0.9]}},                # not numbers
                   {"curves": {"Other": document["curves"]["NCAE"]}}):       # another detector than the figures
        with pytest.raises((ValueError, KeyError, TypeError)):
            fitted_comparison_from_json(document | damage)
