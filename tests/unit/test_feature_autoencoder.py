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
from tests.unit.test_export import PLAIN_ONNX, PLAIN_TENSORFLOW, _assert_same_decisions, export_with_a_review_band, \
    plain_answers

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
    exported = export_with_a_review_band(walnut_run, sorted((WALNUT / "test").rglob("*.jpg")), "std", tmp_path)
    assert exported["manifest"]["onnx"]["written"]
    assert {"OK", "REVIEW", "NG", "INVALID"} == set(exported["expected"]["verdict"])
    for program, model in ((PLAIN_TENSORFLOW, "saved_model"), (PLAIN_ONNX, "inspector.onnx")):
        [answer] = plain_answers(program, [(exported["inspector"] / model, exported["images"])], tmp_path)
        # ImageNet features carry float32 round-off through their layers: 1e-4 relative, far below any margin
        _assert_same_decisions(exported["expected"], answer, "std", 1e-4)


def test_good_wood_is_not_judged_by_its_border(walnut_run):
    """Near the border the ImageNet network sees padding, so even a good image's raw feature residual is larger there
    and the spread of the map measured the border (brick photographs 0.87 before, 1.00 with the calibration). The run
    rescales each ring of positions by what held-out good images show there: on good test wood the outer ring is no
    longer the brightest part of the map, and the defects still score above the good wood."""
    from core.data.datasets import open_dataset
    from core.detectors.common.border import border_rings
    from core.evaluation.evaluate import load_test_images
    from core.runs.bundles import load_bundle

    detector = load_bundle(walnut_run)
    assert detector.border_calibration_ is not None
    with open_dataset(WALNUT) as data:
        test = load_test_images(data, detector.input_size, detector.channels)
    good = test.images[test.labels == "good"]
    raw = np.abs(detector._residual_grid(good, calibrated=False))
    calibrated = detector._residual_grid(good)
    outer = border_rings(*raw.shape[1:], detector.border_calibration_.rings) == 0
    # the premise: padding makes the raw residual of good wood largest at the border
    assert raw[:, outer].mean() > 1.2 * raw[:, ~outer].mean()
    assert calibrated[:, outer].mean() < 1.2 * calibrated[:, ~outer].mean() + 0.05
    assert (calibrated >= 0).all()
    scores = detector.score(test.images).table["std"].to_numpy()
    assert np.median(scores[test.labels == "defect"]) > np.median(scores[test.labels == "good"])
