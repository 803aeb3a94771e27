import json

import numpy as np
import pytest

from core.detectors.saving import MODEL_FILE
from core.runs.bundles import MANIFEST_FILE, load_bundle, read_manifest
from core.data.datasets import open_dataset
from core.detectors.autoencoder.detector import SCORE_COLUMNS, ResidualDetector, TrainingCancelled
from core.errors import BundleError
from core.evaluation.evaluate import evaluate
from core.runs.pipeline import train_run
from core.runs.store import list_runs, read_score_tables, read_status, write_score_table

from tests.conftest import TINY_MODEL


def test_training_records_progress_history_and_a_complete_status(tiny_run):
    status = read_status(tiny_run)
    assert status["state"] == "complete"
    manifest = read_manifest(tiny_run)
    assert manifest["model_kind"] == "ncae" and manifest["input_size"] == 32
    assert len(manifest["history"]["loss"]) == len(manifest["history"]["val_loss"]) >= 1
    assert set(manifest["versions"]) >= {"tensorflow", "keras", "numpy", "python"}
    assert manifest["training_data"]["layout"] == "mvtec"


def test_saved_bundle_scores_exactly_like_before_saving(tiny_run, small_demo_dir):
    detector = load_bundle(tiny_run)
    with open_dataset(small_demo_dir) as dataset:
        images = dataset.load(dataset.test, 32).images
    first = detector.score(images, with_maps=True)
    assert list(first.table.columns) == list(SCORE_COLUMNS)
    assert first.residuals.shape == (len(images), 32, 32)
    again = load_bundle(tiny_run).score(images)
    np.testing.assert_allclose(first.table.to_numpy(), again.table.to_numpy(), rtol=1e-5)
    # streaming in small batches changes nothing
    np.testing.assert_allclose(detector.score(images, batch_size=3).table.to_numpy(),
                               first.table.to_numpy(), rtol=1e-4, atol=1e-7)


def test_altered_or_missing_model_file_is_refused(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    with open(copy / MODEL_FILE, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="does not match the SHA-256"):
        load_bundle(copy)
    (copy / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(copy)
    (copy / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not readable JSON"):
        load_bundle(copy)


def test_same_seed_trains_the_same_model(small_demo_dir, tmp_path):
    with open_dataset(small_demo_dir) as dataset:
        images = dataset.load(dataset.train_good, 32).images
    first = ResidualDetector(**TINY_MODEL).fit(images).score(images[:4]).table
    second = ResidualDetector(**TINY_MODEL).fit(images).score(images[:4]).table
    np.testing.assert_allclose(first.to_numpy(), second.to_numpy(), rtol=1e-4)


def test_progress_callback_reports_each_epoch_and_cancel_stops(small_demo_dir, tmp_path):
    updates = []
    with open_dataset(small_demo_dir) as dataset:
        detector = ResidualDetector(**(TINY_MODEL | {"epochs": 2}))
        train_run(dataset, tmp_path / "run", detector, progress=updates.append)
        assert [update.epoch for update in updates] == [1, 2]
        assert all(update.loss > 0 and update.val_loss > 0 and update.seconds_left >= 0 for update in updates)
        assert updates[-1].seconds_left == 0
        with pytest.raises(TrainingCancelled):
            train_run(dataset, tmp_path / "cancelled", ResidualDetector(**TINY_MODEL), should_stop=lambda: True)
    assert read_status(tmp_path / "cancelled")["state"] == "cancelled"


def test_interrupted_runs_are_never_listed_as_usable(tiny_run, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "finished")
    shutil.copytree(tiny_run, runs / "interrupted")
    status = json.loads((runs / "interrupted" / "status.json").read_text())
    (runs / "interrupted" / "status.json").write_text(json.dumps(status | {"state": "training"}))
    (runs / "half_written").mkdir()
    (runs / "half_written" / MODEL_FILE).write_bytes(b"partial")
    assert [run.run_id for run in list_runs(runs)] == ["finished"]
    assert {run.run_id for run in list_runs(runs, usable_only=False)} == {"finished", "interrupted", "half_written"}


def test_evaluate_reports_every_column_and_pixel_metrics(tiny_run, small_demo_dir):
    with open_dataset(small_demo_dir) as dataset:
        report, scored = evaluate(load_bundle(tiny_run), dataset)
    assert report["n_good"] == 6 and report["n_defect"] == 10
    assert set(report["scores"]) == set(SCORE_COLUMNS)
    from sklearn.metrics import f1_score, roc_auc_score

    truth = (scored.table["label"] == "defect").to_numpy()
    for column, values in report["scores"].items():
        # checked against scikit-learn, a plain reference implementation, on the very rows scored
        assert values["image_auroc"] == pytest.approx(roc_auc_score(truth, scored.table[column]), abs=1e-9), column
        rejected = scored.table[column].to_numpy() >= values["best_f1_threshold"]
        assert values["best_f1"] == pytest.approx(f1_score(truth, rejected)), column
        assert values["pixel_auroc"] == report["pixel"]["pixel_auroc"]
    with open_dataset(small_demo_dir) as dataset:
        masks = dataset.load_masks(scored.kept_samples, 32)
    assert report["pixel"]["pixel_auroc"] == pytest.approx(
        roc_auc_score(masks.ravel() > 0.5, scored.anomaly_maps.ravel()), abs=1e-9)


def test_too_few_images_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 8 good images"):
        ResidualDetector(**TINY_MODEL).fit(np.zeros((3, 32, 32)))
    with pytest.raises(RuntimeError, match="not fitted"):
        ResidualDetector().score(np.zeros((1, 64, 64)))


def test_score_tables_are_kept_in_the_run_and_names_cannot_escape(tmp_path):
    import pandas as pd

    table = pd.DataFrame({"path": ["a.png"], "label": ["good"], "defect_type": [""], "max": [0.25]})
    write_score_table(tmp_path, "demo-test", table)
    assert list(read_score_tables(tmp_path)) == ["demo-test"]
    assert pd.read_csv(read_score_tables(tmp_path)["demo-test"])["max"].tolist() == [0.25]
    assert not list((tmp_path / "scores").glob("*.partial"))
    with pytest.raises(ValueError, match="plain file name"):
        write_score_table(tmp_path, "../outside", table)


def test_the_images_that_set_the_threshold_neither_trained_the_network_nor_chose_its_epoch():
    """The epoch is picked on one held-out share and the default threshold set on another: were they the same
    images, the threshold would be tuned to the images the epoch was chosen to fit, and promise too few false
    rejects. Every detector calibrates on the same images for the same seed."""
    from core.detectors.base import GoodImageSplit

    split = GoodImageSplit.of(60, seed=4, stopping_share=0.10)
    parts = [set(split.training.tolist()), set(split.stopping.tolist()), set(split.calibration.tolist())]
    assert len(parts[1]) == 6 and len(parts[2]) == 9
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert parts[0] | parts[1] | parts[2] == set(range(60))
    assert set(GoodImageSplit.of(60, seed=4).calibration.tolist()) == parts[2]

    images = np.random.default_rng(0).uniform(0.3, 0.7, (24, 32, 32)).astype(np.float32)
    detector = ResidualDetector(model="ncae", **(TINY_MODEL | {"epochs": 2})).fit(images)
    fitted = GoodImageSplit.of(24, seed=int(detector.seed), stopping_share=detector.validation_fraction)
    assert detector.n_held_out_images_ == len(fitted.calibration) and detector.n_train_images_ == len(fitted.training)
    assert sorted(detector.held_out_indices_.tolist()) == sorted(fitted.calibration.tolist())
    calibration_scores = detector.score(images[fitted.calibration]).table["map_max"]
    # fewer than 99 calibration images: no calibration image may be rejected
    assert set(detector.default_decision_.verdicts(calibration_scores)) == {"OK"}
