"""The NCAE in feature space, end to end on real photographs: crops of GIMP's walnut photograph with pasted holes,
scratches and foreign patches (``tests/fixtures/walnut``, written by ``python -m tests.fixtures.make_walnut``).

Trained with ``train``, judged with ``score``, exported, and the exported inspector run under plain TensorFlow and
plain ONNX Runtime: the same verdicts, the same scores."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.detectors.common.residuals import SCORE_COLUMNS
from tests.unit.test_cli import run_cli
from tests.unit.test_export import PLAIN_ONNX, PLAIN_TENSORFLOW, _assert_same_decisions, _frames_as_score_judges_them, \
    _run

ROOT = Path(__file__).resolve().parents[2]
WALNUT = ROOT / "tests" / "fixtures" / "walnut"


@pytest.fixture(scope="module")
def walnut_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("walnut") / "run"
    done = run_cli("train", "--data", WALNUT, "--model", "ncae_features", "--epochs", "6", "--out", run)
    assert done.returncode == 0, done.stderr
    return run


def test_the_run_records_what_it_is_and_scores_every_residual_statistic(walnut_run, tmp_path):
    manifest = json.loads((walnut_run / "manifest.json").read_text())
    assert manifest["model_kind"] == "ncae_features" and manifest["input_size"] == 224
    # judged by the spread of the feature residual, the statistic chosen across eight sets
    assert manifest["primary_score"] == manifest["default_decision"]["column"] == "std"
    done = run_cli("score", "--run", walnut_run, "--data", WALNUT, "--out", tmp_path / "scores.csv")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False)
    on_disk = sorted(path for path in WALNUT.rglob("*.jpg"))
    assert len(table) == len(on_disk) and set(table["verdict"]) <= {"OK", "NG"}
    # every column the pixel autoencoders write, computed over the feature residual
    assert set(SCORE_COLUMNS) <= set(table.columns)
    assert np.isfinite(table[list(SCORE_COLUMNS)].to_numpy(float)).all()
    # real holes, scratches and foreign patches stand out from good wood even after six epochs
    # the heat scale is in the map's units (the held-out good images' largest map value), not the std threshold
    scale, threshold = manifest["map_scales"]["anomaly"], manifest["default_decision"]["threshold"]
    good_training = table[table["path"].str.startswith("train/")]
    assert scale != threshold and good_training["map_max"].median() <= scale <= good_training["map_max"].max()
    test = table[table["path"].str.startswith("test/")]
    defect = test["label"] == "defect"
    assert test.loc[defect, "std"].median() > test.loc[~defect, "std"].median()


def test_its_exported_inspector_decides_like_score_in_tensorflow_and_onnx(walnut_run, tmp_path):
    from core.evaluation.metrics import ThresholdTable
    from core.evaluation.thresholds import threshold_document

    test = sorted((WALNUT / "test").rglob("*.jpg"))
    first, images_json = _frames_as_score_judges_them(walnut_run, test, tmp_path)
    scores = first.loc[first["verdict"] != "INVALID", "std"].astype(float)
    threshold, review_from = float(scores.quantile(0.5)), float(scores.quantile(0.3))
    point = ThresholdTable(scores.to_numpy(), first.loc[scores.index, "label"].to_numpy()).at(threshold)
    run_manifest = json.loads((walnut_run / "manifest.json").read_text())
    document = threshold_document({"id": "run", "model_sha256": run_manifest["model_sha256"]}, "std", threshold,
                                  point, review_from)
    (tmp_path / "threshold.json").write_text(json.dumps(document))
    inspector = tmp_path / "inspector"
    done = run_cli("export", "--run", walnut_run, "--out", inspector, "--threshold-file",
                           tmp_path / "threshold.json")
    assert done.returncode == 0, done.stderr
    assert json.loads((inspector / "manifest.json").read_text())["onnx"]["written"]
    done = run_cli("score", "--run", walnut_run, "--data", *test, tmp_path / "black.png", "--threshold-file",
                           tmp_path / "threshold.json", "--out", tmp_path / "judged.csv")
    assert done.returncode == 0, done.stderr
    expected = pd.read_csv(tmp_path / "judged.csv", keep_default_na=False)
    assert {"OK", "REVIEW", "NG", "INVALID"} == set(expected["verdict"])
    for program, model in ((PLAIN_TENSORFLOW, inspector / "saved_model"), (PLAIN_ONNX, inspector / "inspector.onnx")):
        completed = _run("-c", program, str(model), str(images_json), cwd=tmp_path)
        assert completed.returncode == 0, completed.stderr
        # ImageNet features carry float32 round-off through their layers: 1e-4 relative, far below any margin
        _assert_same_decisions(expected, json.loads(completed.stdout.strip().splitlines()[-1]), "std", 1e-4)
