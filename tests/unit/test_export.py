"""The exported inspector gives the verdicts and scores of `python -m core score` on the demo test set, loaded
with plain TensorFlow, and so does its ONNX copy under plain ONNX Runtime."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.unit.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
DEMO_RUN = ROOT / "assets" / "demo_model"

# run in a fresh interpreter that imports TensorFlow, NumPy and Pillow only: nothing of this project. Its arguments
# are (inspector, images) pairs, so that one interpreter judges every inspector of a module; a list of answers,
# one per pair: verdicts and scores by file, or the error that inspector raised
PLAIN_TENSORFLOW = """
import json, sys
import numpy as np
import tensorflow as tf
from PIL import Image
assert not any(name == "core" or name.startswith("core.") for name in sys.modules)
answers = []
for model_dir, images_json in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        inspector = tf.saved_model.load(model_dir).signatures["serving_default"]
        rows = {}
        for group in json.loads(open(images_json).read()):   # one call per image size and kind, as a camera sends them
            batch = np.stack([np.asarray(Image.open(path)) for path in group])
            if batch.ndim == 3:
                batch = batch[..., None]
            result = inspector(images=tf.constant(batch, tf.uint8))
            for path, score, verdict in zip(group, result["score"].numpy(), result["verdict"].numpy()):
                rows[path] = [float(score), verdict.decode()]
        answers.append(rows)
    except Exception as error:
        answers.append({"error": f"{type(error).__name__}: {error}"})
print(json.dumps(answers))
"""

# the same with ONNX Runtime: neither TensorFlow nor this project is imported
PLAIN_ONNX = """
import json, sys
import numpy as np
import onnxruntime
from PIL import Image
answers = []
for model_file, images_json in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        session = onnxruntime.InferenceSession(model_file, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        rows = {}
        for group in json.loads(open(images_json).read()):
            batch = np.stack([np.asarray(Image.open(path)) for path in group])
            if batch.ndim == 3:
                batch = batch[..., None]
            result = dict(zip(names, session.run(None, {"images": batch.astype(np.uint8)})))
            for path, score, verdict in zip(group, result["score"], result["verdict"]):
                rows[path] = [float(score), str(verdict)]
        answers.append(rows)
    except Exception as error:
        answers.append({"error": f"{type(error).__name__}: {error}"})
assert not any(name == "tensorflow" or name == "core" or name.startswith("core.") for name in sys.modules)
print(json.dumps(answers))
"""


def _run(*arguments, **keywords):
    """``python -m core ...`` in this process (see ``run_cli``); a ``-c`` program in a fresh interpreter, since what
    it may import is its point."""
    if arguments[:2] == ("-m", "core"):
        return run_cli(*arguments[2:], cwd=keywords.get("cwd"))
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, timeout=600, **keywords)


class _FailingOptimizer:
    """A converter optimiser that fails, as one may on a graph its authors never saw."""

    graph_been_opt = False

    def optimize(self, graph, iteration):
        raise RuntimeError("this optimiser fails")


@pytest.fixture(scope="module")
def inspector(tmp_path_factory):
    """The demo model exported while one of the converter's optimisers fails: the export converts again the
    careful way (skipping it), and the tests below judge that ONNX copy. The other detectors' exports take the
    fast way."""
    from tf2onnx import optimizer

    out = tmp_path_factory.mktemp("export") / "inspector"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(optimizer._optimizers, "fails", _FailingOptimizer)
        completed = _run("-m", "core", "export", "--run", str(DEMO_RUN), "--out", str(out), cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    return out


@pytest.fixture(scope="module")
def judged_by_score(tmp_path_factory):
    """The demo test set plus three frames the demo never had, as `score` judges them, grouped by size and mode
    the way a camera would send them."""
    from core.data.datasets import open_dataset

    folder = tmp_path_factory.mktemp("frames")
    with open_dataset("demo") as demo:
        test = [sample.path for sample in demo.test]
    samples = sorted((ROOT / "assets" / "samples").glob("*.png"))
    # a wide crop and an RGB copy (and a dead frame, added below)
    Image.open(samples[0]).crop((0, 16, 128, 96)).save(folder / "wide.png")
    Image.open(samples[-1]).convert("RGB").save(folder / "colour.png")
    judged = _frames_as_score_judges_them(DEMO_RUN, [*test, folder / "wide.png", folder / "colour.png"], folder)
    assert len(judged[0]) > 140
    return judged


def _assert_same_decisions(expected: pd.DataFrame, exported: dict, column: str = "map_max",
                           tolerance: float = 1e-5) -> None:
    assert "error" not in exported, exported.get("error")
    assert len(exported) == len(expected)
    for row in expected.itertuples():
        score, verdict = exported[row.path]
        assert verdict == row.verdict, (row.path, verdict, row.verdict)
        if row.verdict != "INVALID":
            assert score == pytest.approx(getattr(row, column), rel=tolerance, abs=1e-7), row.path
    assert exported[next(path for path in exported if path.endswith("black.png"))][1] == "INVALID"
    assert {"OK", "NG"} <= {verdict for _, verdict in exported.values()}


def plain_answers(program: str, pairs: list, cwd: Path) -> list[dict]:
    """Each (inspector, images.json) pair judged by ``program`` in one fresh interpreter: one answer per pair."""
    completed = _run("-c", program, *[str(part) for pair in pairs for part in pair], cwd=cwd)
    assert completed.returncode == 0, completed.stderr
    answers = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(answers) == len(pairs)
    return answers


def _frames_as_score_judges_them(run: Path, files: list, folder: Path, *options) -> tuple[pd.DataFrame, Path]:
    """``files`` plus a dead frame, scored by `score` (with ``options``, such as a threshold file); and the files
    grouped by size and mode, as a camera sends them, for the exported inspector."""
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(folder / "black.png")
    files = [*files, folder / "black.png"]
    completed = _run("-m", "core", "score", "--run", str(run), "--data", *map(str, files), *map(str, options),
                     "--out", str(folder / "scores.csv"), cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    groups = {}
    for path in files:
        with Image.open(path) as image:
            groups.setdefault((image.size, image.mode), []).append(str(path))
    (folder / "images.json").write_text(json.dumps(list(groups.values())))
    return pd.read_csv(folder / "scores.csv", keep_default_na=False), folder / "images.json"


def export_with_a_review_band(run: Path, files: list, column: str, folder: Path) -> dict:
    """A threshold at the median of ``score``'s values and a review band from the 30th percentile (so every
    verdict occurs), the run exported with it, and ``score``'s verdicts under it: what the inspector must repeat."""
    from core.evaluation.metrics import ThresholdTable
    from core.evaluation.thresholds import threshold_document

    first, _ = _frames_as_score_judges_them(run, files, folder)
    scores = first.loc[first["verdict"] != "INVALID", column].astype(float)
    threshold, review_from = float(scores.quantile(0.5)), float(scores.quantile(0.3))
    point = ThresholdTable(scores.to_numpy(), first.loc[scores.index, "label"].to_numpy()).at(threshold)
    run_manifest = json.loads((run / "manifest.json").read_text())
    document = threshold_document({"id": "run", "model_sha256": run_manifest["model_sha256"]}, column, threshold,
                                  point, review_from)
    (folder / "threshold.json").write_text(json.dumps(document))
    inspector = folder / "inspector"
    completed = _run("-m", "core", "export", "--run", str(run), "--out", str(inspector), "--threshold-file",
                     str(folder / "threshold.json"), cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    expected, images_json = _frames_as_score_judges_them(run, files, folder, "--threshold-file",
                                                         folder / "threshold.json")
    return {"expected": expected, "images": images_json, "inspector": inspector, "column": column,
            "threshold": threshold, "review_from": review_from,
            "manifest": json.loads((inspector / "manifest.json").read_text())}


def test_the_export_decides_like_the_score_command(inspector, judged_by_score, tmp_path):
    expected, images_json = judged_by_score
    [answer] = plain_answers(PLAIN_TENSORFLOW, [(inspector / "saved_model", images_json)], tmp_path)
    _assert_same_decisions(expected, answer)


def test_its_onnx_copy_decides_the_same_under_onnx_runtime(inspector, judged_by_score, tmp_path):
    manifest = json.loads((inspector / "manifest.json").read_text())
    assert manifest["onnx"]["written"], manifest["onnx"]
    assert manifest["onnx"]["largest_relative_score_difference"] <= 1e-5
    expected, images_json = judged_by_score
    [answer] = plain_answers(PLAIN_ONNX, [(inspector / "inspector.onnx", images_json)], tmp_path)
    _assert_same_decisions(expected, answer)


EXPORTED_KINDS = ("padim", "memory_bank", "draem", "lattice")


@pytest.fixture(scope="module")
def exported_kinds(keras_home, small_demo_dir, tmp_path_factory):
    """A run of every other detector trained, exported with a threshold file that has a review band, and judged by
    `score` under it; then every inspector run by one plain TensorFlow and one plain ONNX Runtime interpreter."""
    from core.data.synthetic import DemoSetSize, generate_demo_set
    from core.detectors import detector_class

    exported = {}
    for kind in EXPORTED_KINDS:
        folder = tmp_path_factory.mktemp(kind)
        data = small_demo_dir if kind != "lattice" else generate_demo_set(   # the lattice detector needs a weave
            folder / "weave", DemoSetSize(train_good=20, test_good=6, test_defect_per_type=2), seed=3, style="texture")
        completed = _run("-m", "core", "train", "--data", str(data), "--model", kind, "--out", str(folder / "run"),
                         *(["--epochs", "2"] if kind == "draem" else []), cwd=ROOT)
        assert completed.returncode == 0, completed.stderr
        test = sorted(path for path in (data / "test").rglob("*.png"))
        exported[kind] = export_with_a_review_band(folder / "run", test, detector_class(kind).primary_score, folder)
    scratch = tmp_path_factory.mktemp("plain")
    for engine, program, model in (("tensorflow", PLAIN_TENSORFLOW, "saved_model"),
                                   ("onnx", PLAIN_ONNX, "inspector.onnx")):
        answers = plain_answers(program, [(exported[kind]["inspector"] / model, exported[kind]["images"])
                                          for kind in EXPORTED_KINDS], scratch)
        for kind, answer in zip(EXPORTED_KINDS, answers):
            exported[kind][engine] = answer
    return exported


@pytest.mark.parametrize("kind", EXPORTED_KINDS)
def test_every_detector_exports_an_inspector_that_decides_like_score(kind, exported_kinds):
    exported = exported_kinds[kind]
    manifest = exported["manifest"]
    assert manifest["run"]["model_kind"] == kind and manifest["onnx"]["written"], manifest["onnx"]
    # the threshold file's decision goes inside, review band included
    assert (manifest["threshold"], manifest["review_from"]) == (exported["threshold"], exported["review_from"])
    assert {"OK", "REVIEW", "NG", "INVALID"} == set(exported["expected"]["verdict"])
    for engine in ("tensorflow", "onnx"):
        # ImageNet features pass float32 round-off through 50 layers, and the memory bank's border calibration
        # divides it by a small spread: 1e-4 relative there, still far below any threshold's margin
        _assert_same_decisions(exported["expected"], exported[engine], exported["column"],
                               1e-5 if kind == "draem" else 1e-4)


def test_the_manifest_says_what_it_is_and_vouches_for_every_file(inspector):
    from core.detectors.saving import sha256_of

    manifest = json.loads((inspector / "manifest.json").read_text())
    run = json.loads((DEMO_RUN / "manifest.json").read_text())
    assert manifest["run"]["model_sha256"] == run["model_sha256"] and manifest["score"] == "map_max"
    assert manifest["threshold"] == pytest.approx(run["default_decision"]["threshold"])
    assert "inspector.onnx" in manifest["files"]
    assert all(sha256_of(inspector / name) == digest for name, digest in manifest["files"].items())


def test_an_existing_folder_is_not_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    completed = _run("-m", "core", "export", "--run", str(DEMO_RUN), "--out", str(tmp_path / "taken"), cwd=ROOT)
    assert completed.returncode == 2 and "already exists" in completed.stderr
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_a_disk_that_fills_during_the_onnx_copy_fails_the_export_in_one_line_and_leaves_nothing(tmp_path, monkeypatch,
                                                                                                 capsys):
    """Full disk while tf2onnx writes: the user's to fix (exit 2, one line naming it), not "the conversion did not
    reproduce the SavedModel" with an inspector that silently lacks its ONNX copy."""
    import errno
    import os

    from tf2onnx import utils

    from core.cli import main

    def full_disk(path, *arguments, **keywords):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(utils, "save_protobuf", full_disk)   # where the converter writes the .onnx file
    assert main(["export", "--run", str(DEMO_RUN), "--out", str(tmp_path / "inspector")]) == 2
    error = capsys.readouterr().err.strip()
    assert "no space left on the device" in error and "nothing was written" in error and "\n" not in error
    assert list(tmp_path.iterdir()) == []
