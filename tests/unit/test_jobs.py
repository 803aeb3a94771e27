"""Background jobs as the dashboard runs them: threads of one server process, state on disk."""

import numpy as np
import pytest

from core.runs.bundles import load_bundle
from core.data.datasets import open_dataset
from core.detectors.autoencoder.detector import ResidualDetector
from core.runs.pipeline import train_run
from core.runs.store import read_status
from dashboard import jobs

JOB = dict(model_kind="ncae", epochs=2, input_size=32, seed=7)


@pytest.fixture(scope="module")
def alone(tmp_path_factory, small_demo_dir):
    """The same training run alone, in the foreground: what every background job must reproduce."""
    run_dir = tmp_path_factory.mktemp("alone") / "run"
    with open_dataset(small_demo_dir) as dataset:
        train_run(dataset, run_dir, ResidualDetector(model="ncae", epochs=2, input_size=32, seed=7))
        images = dataset.load(dataset.test, 32).images
    return load_bundle(run_dir).score(images).table, images


def start(tmp_path, small_demo_dir):
    return jobs.start_training(tmp_path, "folder", str(small_demo_dir), **JOB)


def test_two_trainings_at_once_give_the_same_models_as_alone(tmp_path, small_demo_dir, alone):
    expected, images = alone
    runs = [start(tmp_path, small_demo_dir) for _ in range(2)]
    for run in runs:
        jobs.join(run.name, timeout=600)
    for run in runs:
        assert read_status(run)["state"] == "complete", read_status(run)
        np.testing.assert_allclose(load_bundle(run).score(images).table.to_numpy(), expected.to_numpy(),
                                   rtol=1e-5, atol=1e-7)


def test_a_training_beside_a_scoring_session_changes_neither(tmp_path, small_demo_dir, tiny_run, alone):
    expected, images = alone
    scorer = load_bundle(tiny_run)
    reference = scorer.score(images).table
    run = start(tmp_path, small_demo_dir)
    rounds = 0
    while jobs.is_alive(run.name) or rounds == 0:   # score for as long as the training runs
        np.testing.assert_allclose(scorer.score(images).table.to_numpy(), reference.to_numpy(), rtol=1e-6)
        rounds += 1
    jobs.join(run.name, timeout=600)
    assert read_status(run)["state"] == "complete"
    np.testing.assert_allclose(load_bundle(run).score(images).table.to_numpy(), expected.to_numpy(),
                               rtol=1e-5, atol=1e-7)


def test_the_server_caps_trainings_and_a_cancelled_queued_job_never_starts(tmp_path, small_demo_dir, monkeypatch):
    monkeypatch.setattr(jobs, "MAX_TRAINING_JOBS", 2)
    first, second = start(tmp_path, small_demo_dir), start(tmp_path, small_demo_dir)
    with pytest.raises(jobs.TooManyJobs, match="already training 2"):
        start(tmp_path, small_demo_dir)
    jobs.cancel(second)            # still queued behind the first one
    for run in (first, second):
        jobs.join(run.name, timeout=600)
    assert read_status(first)["state"] == "complete"
    assert read_status(second)["state"] == "cancelled"


def test_deleting_refuses_anything_but_a_run_folder(tmp_path):
    (tmp_path / "runs" / "old").mkdir(parents=True)
    with pytest.raises(ValueError):
        jobs.delete_run(tmp_path / "runs", "../runs")
    jobs.delete_run(tmp_path / "runs", "old")
    assert not (tmp_path / "runs" / "old").exists()


@pytest.mark.parametrize("model_kind", ["padim", "draem"])
def test_any_detector_trains_in_the_background_into_a_usable_run(tmp_path, small_demo_dir, monkeypatch, model_kind):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # PaDiM's converted weights go here
    run = jobs.start_training(tmp_path, "folder", str(small_demo_dir), model_kind, 2, 32, 0)
    jobs.join(run.name, timeout=600)
    status = read_status(run)
    assert status["state"] == "complete", status
    detector = load_bundle(run)
    assert detector.kind == model_kind and detector.default_decision_.column == detector.primary_score
    with open_dataset(small_demo_dir) as dataset:
        table = detector.score(dataset.load(dataset.test, detector.input_size).images).table
    assert list(table.columns) == [detector.primary_score] and np.isfinite(table.to_numpy()).all()


def test_a_lattice_job_trains_on_a_weave_and_says_why_it_cannot_on_a_casting(tmp_path, small_demo_dir):
    from core.data.synthetic import DemoSetSize, generate_demo_set

    weave = generate_demo_set(tmp_path / "weave", DemoSetSize(train_good=20, test_good=4, test_defect_per_type=1),
                              seed=2, style="texture")
    run = jobs.start_training(tmp_path / "runs", "folder", str(weave), "lattice", 1, 128, 0)
    jobs.join(run.name, timeout=600)
    assert read_status(run)["state"] == "complete", read_status(run)
    detector = load_bundle(run)
    assert detector.kind == "lattice" and detector.input_size == 128
    refused = jobs.start_training(tmp_path / "runs", "folder", str(small_demo_dir), "lattice", 1, 128, 0)
    jobs.join(refused.name, timeout=600)
    status = read_status(refused)
    assert status["state"] == "failed" and "periodic surfaces" in status["message"]
