"""The command line as a user runs it: a real subprocess, real exit codes, real stderr."""

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.bundles import MODEL_FILE, read_manifest
from core.detector import SCORE_COLUMNS
from core.thresholds import THRESHOLD_FORMAT

from tests.unit.test_images import header_only_png

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*arguments, cwd=None):
    environment = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core", *map(str, arguments)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=environment, timeout=600)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("demo-data", "train", "score", "evaluate"):
        assert command in result.stdout
    for command in ("demo-data", "train", "score", "evaluate"):
        assert run_cli(command, "--help").returncode == 0


def test_score_writes_the_scores_csv_contract_with_verdicts(tiny_run, small_demo_dir, tmp_path):
    manifest = read_manifest(tiny_run)
    threshold_file = tmp_path / "threshold.json"
    threshold_file.write_text(json.dumps({
        "format": THRESHOLD_FORMAT, "run": {"id": "tiny", "model_sha256": manifest["model_sha256"]},
        "score_column": "max", "threshold": 0.2, "review_band": {"review_from": 0.1, "reject_from": 0.2},
        "metrics": None, "created": "2026-01-01T00:00:00+00:00"}))
    out = tmp_path / "scores.csv"
    result = run_cli("score", "--run", tiny_run, "--data", small_demo_dir, "--out", out,
                     "--threshold-file", threshold_file)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["path", "label", "defect_type", *SCORE_COLUMNS, "verdict"]
    assert len(table) == 16 and set(table["label"]) == {"good", "defect"}
    expected = np.where(table["max"] >= 0.2, "NG", np.where(table["max"] >= 0.1, "REVIEW", "OK"))
    assert table["verdict"].tolist() == expected.tolist()
    assert (table.loc[table.label == "good", "defect_type"] == "").all()


def test_score_loose_files_keeps_going_past_a_bad_one(tiny_run, small_demo_dir, tmp_path):
    good = sorted((small_demo_dir / "test" / "good").glob("*.png"))[:2]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "loose.csv"
    result = run_cli("score", "--run", tiny_run, "--data", *good, bad, "--out", out)
    assert result.returncode == 0
    assert "warning: skipped" in result.stderr and "notes.png" in result.stderr
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 2 and (table["label"] == "").all()


def test_evaluate_json_follows_the_design_contract(tiny_run, small_demo_dir):
    result = run_cli("evaluate", "--run", tiny_run, "--data", small_demo_dir, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report["n_good"], int) and isinstance(report["n_defect"], int)
    for column in SCORE_COLUMNS:
        values = report["scores"][column]
        assert {"image_auroc", "image_auprc", "best_f1", "best_f1_threshold", "pixel_auroc"} <= set(values)
        assert all(isinstance(values[key], float) for key in ("image_auroc", "image_auprc", "best_f1"))


def _png_bytes(size=16):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size, size), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_input_gives_exit_2_and_one_line(tiny_run, tmp_path):
    assert_one_line_error(run_cli("train", "--data", tmp_path / "missing", "--out", tmp_path / "r1"),
                          "no such file or folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("train", "--data", tmp_path / "empty", "--out", tmp_path / "r2"),
                          "Accepted layouts")
    assert_one_line_error(run_cli("score", "--run", tiny_run, "--data", tmp_path / "empty", "--out",
                                  tmp_path / "s.csv"), "empty")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(_png_bytes()[:40])
    assert_one_line_error(run_cli("score", "--run", tiny_run, "--data", corrupt, "--out", tmp_path / "s.csv"),
                          "corrupt.png")
    text = tmp_path / "text.png"
    text.write_text("hello, I am text")
    assert_one_line_error(run_cli("score", "--run", tiny_run, "--data", text, "--out", tmp_path / "s.csv"),
                          "text.png", "not a PNG")
    huge = tmp_path / "huge.png"
    huge.write_bytes(header_only_png(20000, 20000))
    assert_one_line_error(run_cli("score", "--run", tiny_run, "--data", huge, "--out", tmp_path / "s.csv"),
                          "huge.png", "pixels")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("train/good/0.png", _png_bytes())
        bundle.writestr("../evil.png", _png_bytes())
    assert_one_line_error(run_cli("train", "--data", evil, "--out", tmp_path / "r3"), "outside the archive")
    assert not (tmp_path.parent / "evil.png").exists()
    altered = tmp_path / "altered"
    shutil.copytree(tiny_run, altered)
    (altered / MODEL_FILE).write_bytes((altered / MODEL_FILE).read_bytes()[:-10] + b"0123456789")
    assert_one_line_error(run_cli("score", "--run", altered, "--data", corrupt, "--out", tmp_path / "s.csv"),
                          "SHA-256")
    assert_one_line_error(run_cli("train", "--data", "demo", "--model", "vae", "--out", tmp_path / "r4"),
                          "invalid choice")
    assert not (tmp_path / "s.csv").exists()
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3", "r4"))


def test_demo_data_refuses_to_overwrite(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert_one_line_error(run_cli("demo-data", "--out", tmp_path / "full"), "not an empty folder")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
