"""The detector check (``python -m core advise``): detectors ranked on good images alone, with synthetic defects
pasted on held-out good images."""

import json

import numpy as np
from PIL import Image

from core.data.datasets import open_dataset
from core.evaluation import detector_check as check
from dashboard import jobs
from tests.unit.test_cli import run_cli


def test_the_check_set_differs_from_the_held_out_good_images_only_where_a_defect_was_pasted(small_demo_dir, tmp_path):
    with open_dataset(small_demo_dir) as dataset:
        counts = check.write_check_set(dataset, tmp_path / "check", seed=1)
        originals = {path.resolve() for path in (sample.path for sample in dataset.train_good)}
    root = tmp_path / "check"
    training = sorted((root / "train" / "good").iterdir())
    held_out = sorted((root / "test" / "good").iterdir())
    assert counts["training_images"] == len(training) and counts["held_out_images"] == len(held_out)
    assert len(training) + len(held_out) == len(originals) and len(held_out) >= check.MIN_CHECK_IMAGES
    # training on the good images that were not held out, as they are
    assert {path.resolve() for path in training} <= originals
    for good in held_out:
        defective = root / "test" / check.SYNTHETIC_DEFECT / good.name
        mask = np.asarray(Image.open(root / "ground_truth" / check.SYNTHETIC_DEFECT / f"{good.stem}_mask.png")) > 127
        before, after = (np.asarray(Image.open(path), dtype=np.int16) for path in (good, defective))
        assert before.shape == after.shape and mask.any()
        # nothing but the defect tells them apart: its mask holds every pixel changed by 2 % or more, and there are
        # enough of them to see
        change = np.abs(after - before)
        assert (change[mask] >= 5).all() and (change[~mask] <= 6).all(), good.name
        assert mask.sum() >= check.MIN_DEFECT_SHARE * mask.size, good.name


def test_advise_ranks_the_detectors_and_says_how_far_to_trust_it(small_demo_dir):
    done = run_cli("advise", "--data", small_demo_dir, "--detectors", "lattice", "padim", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {row["detector"]: row for row in report["rows"]}
    assert "repeating pattern" in rows["lattice"]["refused"]             # castings are not a periodic surface
    assert rows["padim"]["check_auroc"] > 0.8 and report["pick"] == "padim"   # pasted defects are seen
    assert report["rows"][-1]["detector"] == "lattice"                   # a refusal ranks last
    assert report["how_far_to_trust_it"] == check.agreement_words()
    done = run_cli("advise", "--data", small_demo_dir, "--detectors", "padim", "lattice")
    lines = done.stdout.splitlines()
    assert lines[1].split()[:2] == ["rank", "detector"] and lines[2].split()[:2] == ["1", "PaDiM"]
    assert "refused:" in lines[3] and lines[-1].startswith("note: ")


def test_too_few_good_images_get_one_sentence(tmp_path, small_demo_dir):
    folder = tmp_path / "few" / "train" / "good"
    folder.mkdir(parents=True)
    for path in sorted((small_demo_dir / "train" / "good").iterdir())[:10]:
        (folder / path.name).write_bytes(path.read_bytes())
    done = run_cli("advise", "--data", tmp_path / "few", "--detectors", "padim")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "the detector check needs at least" in done.stderr
    assert "this set has 10" in done.stderr


def test_the_agreement_shown_is_the_one_measured():
    """The words every surface shows come from the recorded benchmark, not from a hand-typed figure."""
    from benchmarks.detector_check import RECORDED, agreement

    measured = agreement(json.loads(RECORDED.read_text()))
    assert check.AGREEMENT == measured
    assert check.is_recommendation() == (measured["top_pick_within_0.02"] >= check.RECOMMEND_ON)


def test_a_background_check_writes_its_report_and_the_page_shows_it(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import dashboard.resources
    from dashboard.session import DEMO_DATA
    from tests.app.test_pages import APP, as_read

    job = jobs.start_detector_check(tmp_path, DEMO_DATA.kind, DEMO_DATA.location, DEMO_DATA.label, names=("padim",))
    jobs.join(job.name, timeout=600)
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "complete", status
    report = json.loads((job / jobs.CHECK_FILE).read_text())
    assert report["pick"] == "padim" and report["rows"][0]["check_auroc"] > 0.8
    monkeypatch.setattr(dashboard.resources, "RUNS_ROOT", tmp_path)
    app = AppTest.from_file(APP, default_timeout=180).run()   # opens on the demo data: its check is shown
    assert not app.exception, app.exception
    shown = " ".join(as_read(item.value) for item in app.markdown)
    assert ("Recommended" if check.is_recommendation() else "First on this check") + ": **PaDiM**" in shown
    assert check.agreement_words() in " ".join(as_read(item.value) for item in app.caption)
    assert any(frame.value["detector"].tolist() == ["PaDiM"] for frame in app.dataframe)
