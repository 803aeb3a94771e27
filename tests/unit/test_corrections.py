"""The review queue's corrections: kept beside the runs, applied to every table, used by retraining."""

import json

import pandas as pd
import pytest

from core.data.datasets import open_dataset
from core.runs.corrections import apply_to_table, corrected_dataset, corrections_file, load_corrections


def test_marks_are_kept_beside_the_runs_and_survive_a_reload(tmp_path, small_demo_dir):
    path = corrections_file(tmp_path / "runs", "/srv/runs/first", str(small_demo_dir))
    assert path.parent == tmp_path / "runs" / "corrections"
    marks = load_corrections(path)
    marks.mark("test/good/000.png", "good")
    marks.mark("test/crack/000.png", "exclude")
    marks.mark("test/good/001.png", "defect", " scratch ")
    again = load_corrections(path)
    assert again.of("good") == ["test/good/000.png"] and again.entries["test/good/001.png"]["defect_type"] == "scratch"
    again.undo("test/crack/000.png")
    assert "test/crack/000.png" not in load_corrections(path).entries
    assert not list(small_demo_dir.rglob("*.json"))     # the data folder is never written to
    with pytest.raises(ValueError, match="action"):
        again.mark("x.png", "maybe")


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "other"}),
                                     json.dumps({"format": "residual-lab-corrections/1",
                                                 "entries": {"a.png": {"action": "rm -rf"}}})])
def test_a_damaged_or_foreign_file_is_refused_in_one_sentence(tmp_path, content):
    path = tmp_path / "marks.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="marks.json"):
        load_corrections(path)


def test_every_table_follows_the_marks():
    table = pd.DataFrame({"path": ["a", "b", "c"], "label": ["good", "defect", "good"],
                          "defect_type": ["", "crack", ""], "score": [0.9, 0.1, 0.2]})
    from core.runs.corrections import Corrections

    marks = Corrections(path=None, entries={"a": {"action": "defect", "defect_type": "stain", "marked": ""},
                                            "b": {"action": "exclude", "defect_type": "", "marked": ""}})
    shown = apply_to_table(table, marks)
    assert shown["path"].tolist() == ["a", "c"]
    assert shown.set_index("path").loc["a", ["label", "defect_type", "corrected"]].tolist() == [
        "defect", "stain", "marked defect"]


def test_retraining_data_takes_the_marked_good_images_and_leaves_the_excluded_out(tmp_path, small_demo_dir):
    with open_dataset(small_demo_dir) as data:
        good_test = next(s for s in data.test if s.label == "good").display_path(data.root)
        defect_test = next(s for s in data.test if s.label == "defect").display_path(data.root)
        marks = load_corrections(tmp_path / "marks.json")
        marks.mark(good_test, "good")
        marks.mark(defect_test, "exclude")
        corrected = corrected_dataset(data, marks)
        names = lambda samples: {s.display_path(data.root) for s in samples}  # noqa: E731
        assert good_test in names(corrected.train_good) and good_test not in names(corrected.test)
        assert defect_test not in names(corrected.samples)
        assert len(corrected.train_good) == len(data.train_good) + 1
        assert len(corrected.test) == len(data.test) - 2


def test_an_upload_marked_on_inspect_is_kept_and_trained_on(tmp_path, small_demo_dir):
    sample = next((small_demo_dir / "test" / "good").iterdir())
    marks = load_corrections(tmp_path / "runs" / "corrections" / "run-x.json")
    key = marks.mark_upload("line-7/part.png", sample.read_bytes(), "good")
    kept = marks.files_folder / marks.entries[key]["file"]
    assert kept.read_bytes() == sample.read_bytes() and kept.parent.parent == tmp_path / "runs" / "corrections"
    with open_dataset(small_demo_dir) as data:
        corrected = corrected_dataset(data, load_corrections(marks.path))
        assert kept in {s.path for s in corrected.train_good}
    with pytest.raises(ValueError, match="only PNG"):
        marks.mark_upload("notes.txt", b"hello", "good")


def test_a_kept_upload_named_like_a_path_is_refused(tmp_path):
    path = tmp_path / "marks.json"
    path.write_text(json.dumps({"format": "residual-lab-corrections/1", "entries": {
        "upload:0:x.png": {"action": "good", "defect_type": "", "file": "../../etc/passwd"}}}))
    with pytest.raises(ValueError, match="not a corrections file"):
        load_corrections(path)
