"""Every detector is trained with ``train --model NAME``, saved as a run, and scored, evaluated and
judged from that run exactly as it was when fitted; a tampered run is refused without being read."""

import json

import numpy as np
import pandas as pd
import pytest

from core.data.datasets import open_dataset
from core.detectors import DETECTOR_NAMES, detector_class, new_detector
from core.detectors.base import BaseDetector, TrainingCancelled
from core.detectors.draem.detector import DraemDetector
from core.detectors.draem.synthetic_anomalies import augment, perlin_mask
from core.errors import BundleError
from core.evaluation.thresholds import threshold_document
from core.runs.bundles import MANIFEST_DIGEST, MANIFEST_FILE, load_bundle, manifest_digest, read_manifest, save_bundle
from tests.unit.test_cli import assert_one_line_error, run_cli

TINY_DRAEM = dict(input_size=32, widths=(8, 16), bottleneck=4, epochs=2, batch_size=16, seed=0)


@pytest.fixture(scope="module")
def good_and_test(small_demo_dir):
    with open_dataset(small_demo_dir) as dataset:
        return dataset.load(dataset.train_good, 224).images, dataset.load(dataset.test, 224).images


def test_every_registered_detector_implements_the_interface():
    for name in DETECTOR_NAMES:
        detector = new_detector(name)
        assert isinstance(detector, BaseDetector), name
        assert detector.kind == name and detector.primary_score in detector.score_columns
        cls = detector_class(name)
        for method in ("fit", "score", "bundle_state"):   # each its own, not the base class's placeholder
            assert getattr(cls, method) is not getattr(BaseDetector, method), (name, method)
        assert cls.from_bundle.__func__ is not BaseDetector.from_bundle.__func__, name


@pytest.mark.parametrize("name", ["memory_bank", "padim", "ncae_features"])
def test_a_saved_feature_detector_scores_exactly_as_it_did_when_fitted(name, keras_home, good_and_test, tmp_path):
    good, test = good_and_test
    detector = new_detector(name, seed=1, **({"epochs": 3} if name == "ncae_features" else {})).fit(good)
    before = detector.score(test, with_maps=True)
    save_bundle(detector, tmp_path / "run")
    manifest = read_manifest(tmp_path / "run")
    assert manifest["model_kind"] == name and manifest["primary_score"] == detector.primary_score
    # arrays only (and the autoencoder's Keras file): nothing that needs unpickling
    assert all(file.endswith(".npy") for file in manifest["files"])
    assert manifest["model_file"].endswith(".keras" if name == "ncae_features" else ".npy")
    loaded = load_bundle(tmp_path / "run")
    after = loaded.score(test, with_maps=True)
    np.testing.assert_allclose(after.table.to_numpy(), before.table.to_numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(after.anomaly_maps, before.anomaly_maps, rtol=1e-4, atol=1e-4)
    assert loaded.default_decision_ == detector.default_decision_
    assert loaded.frame_limits_ is not None


def test_a_padim_run_saved_before_its_layers_were_recorded_still_scores_as_it_did(keras_home, good_and_test, tmp_path):
    """Runs from before the one-layer default recorded no layers: they must load on the two layers they were
    fitted on, and score exactly as before, or their threshold files would judge a different score."""
    from core.detectors.padim.detector import EARLIER_PADIM_FEATURE_LAYERS, PadimDetector

    good, test = good_and_test
    earlier = PadimDetector(seed=1, feature_layers=EARLIER_PADIM_FEATURE_LAYERS).fit(good)
    before = earlier.score(test).table
    save_bundle(earlier, tmp_path / "run")
    manifest_path = tmp_path / "run" / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    del manifest["parameters"]["feature_layers"]
    del manifest[MANIFEST_DIGEST]   # those runs were not sealed either
    manifest_path.write_text(json.dumps(manifest))
    loaded = load_bundle(tmp_path / "run")
    assert loaded.feature_layers == EARLIER_PADIM_FEATURE_LAYERS
    np.testing.assert_allclose(loaded.score(test).table.to_numpy(), before.to_numpy(), rtol=1e-5)

    # layers that do not match the saved Gaussians, or that the network does not have: one clear refusal
    for layers in (["block_4_out"], ["no_such_layer"]):
        manifest["parameters"]["feature_layers"] = layers
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(BundleError, match="padim state is damaged"):
            load_bundle(tmp_path / "run")


def test_a_saved_draem_run_scores_exactly_as_it_did_when_fitted(small_demo_dir, tmp_path):
    with open_dataset(small_demo_dir) as dataset:
        good, test = dataset.load(dataset.train_good, 32).images, dataset.load(dataset.test, 32).images
    epochs_seen = []
    detector = DraemDetector(**TINY_DRAEM).fit(good, progress=lambda update: epochs_seen.append(update.epoch))
    assert epochs_seen == [1, 2] and len(detector.history_["val_loss"]) == 2
    before = detector.score(test, with_maps=True)
    assert before.reconstructions.shape == before.anomaly_maps.shape == (len(test), 32, 32)
    assert ((before.anomaly_maps >= 0) & (before.anomaly_maps <= 1)).all()
    save_bundle(detector, tmp_path / "run")
    after = load_bundle(tmp_path / "run").score(test, with_maps=True)
    np.testing.assert_allclose(after.table["draem_score"], before.table["draem_score"], rtol=1e-5, atol=1e-6)


def test_draem_training_stops_when_asked(small_demo_dir):
    with open_dataset(small_demo_dir) as dataset:
        good = dataset.load(dataset.train_good, 32).images
    with pytest.raises(TrainingCancelled):
        DraemDetector(**(TINY_DRAEM | {"epochs": 50})).fit(good, should_stop=lambda: True)


def test_synthetic_anomalies_change_the_image_exactly_where_their_mask_says():
    rng = np.random.default_rng(0)
    images = np.random.default_rng(1).uniform(0.3, 0.7, (40, 48, 48)).astype(np.float32)
    augmented, masks = augment(images, rng, anomaly_share=0.5)
    anomalous = masks.reshape(40, -1).max(axis=1) > 0
    assert 10 <= anomalous.sum() <= 30   # about half
    np.testing.assert_array_equal(augmented[~anomalous], images[~anomalous])
    changed = np.abs(augmented - images) > 0.02
    assert (changed[masks == 0] == 0).all() or (np.abs(augmented - images)[masks == 0] < 1e-6).all()
    assert changed[masks == 1].all()
    mask = perlin_mask(64, np.random.default_rng(5))
    assert set(np.unique(mask)) <= {0.0, 1.0} and 8 <= mask.sum() <= 0.5 * 64 * 64
    # the same seed gives the same anomalies: a training can be repeated
    again, _ = augment(images, np.random.default_rng(0), anomaly_share=0.5)
    np.testing.assert_array_equal(again, augmented)


@pytest.fixture(scope="module")
def bank_run(keras_home, small_demo_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "bank"
    result = run_cli("train", "--data", small_demo_dir, "--model", "memory_bank", "--out", run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


def test_train_help_names_every_detector_with_what_it_is_good_for():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for name in DETECTOR_NAMES:
        assert f"  {name} " in result.stdout


def test_a_memory_bank_run_scores_evaluates_and_takes_a_threshold_file(bank_run, small_demo_dir, tmp_path):
    scores = tmp_path / "scores.csv"
    result = run_cli("score", "--run", bank_run, "--data", small_demo_dir, "--out", scores)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(scores)
    assert list(table.columns[:4]) == ["path", "label", "defect_type", "patch_score"]
    assert set(table["verdict"]) <= {"OK", "REVIEW", "NG", "INVALID"}
    # EfficientNet-Lite0 features find the demo's defects: nearly every defect is rejected by the run's own decision
    defects = table[table["label"] == "defect"]
    assert (defects["verdict"] != "OK").mean() >= 0.75

    report = json.loads(run_cli("evaluate", "--run", bank_run, "--data", small_demo_dir, "--json").stdout)
    assert report["model_kind"] == "memory_bank" and report["scores"]["patch_score"]["image_auroc"] >= 0.9

    manifest = read_manifest(bank_run)
    threshold_at = float(table["patch_score"].median())
    document = threshold_document({"id": bank_run.name, "model_sha256": manifest["model_sha256"]}, "patch_score",
                                  threshold_at, None)
    (tmp_path / "threshold.json").write_text(json.dumps(document))
    judged = tmp_path / "judged.csv"
    result = run_cli("score", "--run", bank_run, "--data", small_demo_dir, "--out", judged,
                     "--threshold-file", tmp_path / "threshold.json")
    assert result.returncode == 0, result.stderr
    judged_table = pd.read_csv(judged)
    readable = judged_table["verdict"] != "INVALID"
    expected = np.where(judged_table.loc[readable, "patch_score"] >= threshold_at, "NG", "OK")
    assert judged_table.loc[readable, "verdict"].tolist() == expected.tolist()

    # a threshold on a column this run does not compute is refused in one sentence
    (tmp_path / "other.json").write_text(json.dumps(threshold_document({"id": "x"}, "map_max", 0.5, None)))
    assert_one_line_error(run_cli("score", "--run", bank_run, "--data", small_demo_dir, "--out", tmp_path / "o.csv",
                                  "--threshold-file", tmp_path / "other.json"), "map_max", "patch_score")


def test_options_that_do_not_apply_to_a_detector_are_refused(small_demo_dir, tmp_path):
    assert_one_line_error(run_cli("train", "--data", small_demo_dir, "--model", "padim", "--out", tmp_path / "a",
                                  "--epochs", "5"), "--epochs")
    assert_one_line_error(run_cli("train", "--data", small_demo_dir, "--model", "ncae", "--out", tmp_path / "b",
                                  "--backbone", "resnet50"), "--backbone")
    assert_one_line_error(run_cli("train", "--data", small_demo_dir, "--model", "memory_bank", "--out", tmp_path / "c",
                                  "--image-size", "64"), "224")
    assert not any((tmp_path / name).exists() for name in "abc")


def _copy_run(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


def test_a_tampered_bank_is_refused_before_it_is_read(bank_run, tmp_path):
    changed = _copy_run(bank_run, tmp_path / "changed")
    bank = np.load(changed / "memory_bank.npy")
    np.save(changed / "memory_bank.npy", bank * 0)
    with pytest.raises(BundleError, match="SHA-256"):
        read_manifest(changed)

    # an attacker who also rewrites the manifest's hash still cannot make the loader unpickle anything
    hostile = _copy_run(bank_run, tmp_path / "hostile")
    np.save(hostile / "memory_bank.npy", np.array([{"boom": 1}], dtype=object), allow_pickle=True)
    manifest = json.loads((hostile / MANIFEST_FILE).read_text())
    from core.detectors.saving import sha256_of

    manifest["model_sha256"] = sha256_of(hostile / "memory_bank.npy")
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)   # and re-seals the manifest
    (hostile / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not what this detector saves"):
        load_bundle(hostile)

    # a manifest that names a file outside the run folder is refused when the run is listed
    escaping = _copy_run(bank_run, tmp_path / "escaping")
    manifest = json.loads((escaping / MANIFEST_FILE).read_text())
    manifest["files"] = {"../../etc/passwd": "0" * 64}
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (escaping / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="plain file name"):
        read_manifest(escaping)


def test_the_command_line_states_draems_own_defaults():
    import re

    help_text = " ".join(run_cli("train", "--help").stdout.split())
    epochs = re.search(r"--epochs EPOCHS (.*?) --image-size", help_text).group(1)
    size = re.search(r"--image-size IMAGE_SIZE (.*?) --patch-size", help_text).group(1)
    assert re.search(rf"\bdraem {DraemDetector().epochs}\b", epochs), epochs
    assert re.search(rf"\bdraem {DraemDetector().input_size}\b", size), size


def test_an_anomaly_source_folder_feeds_draems_pastes_and_an_empty_one_is_refused(small_demo_dir, tmp_path):
    from PIL import Image

    from core.detectors.draem.detector import load_anomaly_sources
    from core.errors import DatasetError

    sources = tmp_path / "sources"
    (sources / "nested").mkdir(parents=True)
    stripes = (np.indices((40, 40)).sum(axis=0) % 6 < 3).astype(np.uint8) * 255
    Image.fromarray(stripes).save(sources / "nested" / "stripes.png")
    (sources / "notes.txt").write_text("not a picture")
    loaded = load_anomaly_sources(sources, 32)
    assert loaded.shape == (1, 32, 32) and loaded.std() > 0.3
    with open_dataset(small_demo_dir) as dataset:
        good = dataset.load(dataset.train_good, 32).images
    detector = DraemDetector(**(TINY_DRAEM | {"epochs": 1, "anomaly_source": str(sources)})).fit(good)
    assert detector.get_params()["anomaly_source"] == str(sources)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no readable pictures"):
        load_anomaly_sources(tmp_path / "empty", 32)


def test_a_bank_on_an_autoencoders_encoder_is_saved_with_that_network(tiny_run, small_demo_dir, tmp_path):
    from core.detectors.memory_bank.detector import MemoryBankDetector

    autoencoder = load_bundle(tiny_run)
    with open_dataset(small_demo_dir) as dataset:
        size = autoencoder.input_size
        good, test = dataset.load(dataset.train_good, size).images, dataset.load(dataset.test, size).images
    bank = MemoryBankDetector(autoencoder, backbone="encoder", seed=2).fit(good)
    save_bundle(bank, tmp_path / "run")
    assert "autoencoder.keras" in read_manifest(tmp_path / "run")["files"]
    loaded = load_bundle(tmp_path / "run")
    np.testing.assert_allclose(loaded.score(test).table["patch_score"], bank.score(test).table["patch_score"],
                               rtol=1e-5, atol=1e-6)
    # the inspector is exported for banks on the packaged backbone only: this one is refused in one line
    refused = run_cli("export", "--run", tmp_path / "run", "--out", tmp_path / "inspector")
    assert refused.returncode == 2 and "encoder backbone is not exported" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "inspector").exists()


def test_a_listed_run_altered_afterwards_is_refused_at_the_next_listing(bank_run, tmp_path):
    from core.runs.store import inspect_run

    run = _copy_run(bank_run, tmp_path / "listed")
    assert inspect_run(run).usable                       # hashed once, then reused while unchanged
    bank = np.load(run / "memory_bank.npy")
    np.save(run / "memory_bank.npy", bank[::-1])        # same size, other content
    listed = inspect_run(run)
    assert not listed.usable and "SHA-256" in listed.problem
