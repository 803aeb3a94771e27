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
import pytest
import pandas as pd
from PIL import Image

from core.detectors.saving import MODEL_FILE
from core.runs.bundles import read_manifest
from core.detectors.autoencoder.detector import SCORE_COLUMNS
from core.evaluation.thresholds import THRESHOLD_FORMAT

from tests.unit.test_images import header_only_png

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*arguments, cwd=None):
    """``python -m core ARGUMENTS`` run in this process (``core.cli.main``, which is all ``python -m core`` does):
    its exit code and what it printed, without a new interpreter importing TensorFlow for every call. The
    environment variables a command sets for itself are restored after it. Tests whose point is the process
    (signals, two processes at once, the interpreter's own exit) use :func:`run_cli_process`."""
    import contextlib
    import io

    from core.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    environment = dict(os.environ)
    try:
        with contextlib.chdir(cwd or ROOT), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main([str(argument) for argument in arguments])
            except SystemExit as exit_:   # argparse's --help ends the program, as it does in a process
                code = exit_.code
    finally:
        os.environ.clear()
        os.environ.update(environment)
    return subprocess.CompletedProcess(["python", "-m", "core", *map(str, arguments)], code, stdout.getvalue(),
                                       stderr.getvalue())


def run_cli_process(*arguments, cwd=None):
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
    result = run_cli_process("--help")   # the real entry point, python -m core, once
    assert result.returncode == 0
    for command in ("demo-data", "train", "score", "evaluate", "export", "compare"):
        assert command in result.stdout
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
    assert list(table.columns) == ["path", "label", "defect_type", *SCORE_COLUMNS, "verdict", "reason"]
    # every image under the folder, training images too: score leaves no file without a row
    images = [path for path in small_demo_dir.rglob("*.png") if "ground_truth" not in path.parts]
    assert len(table) == len(images) == 40 and set(table["label"]) == {"good", "defect"}
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
    assert "warning: unreadable" in result.stderr and "notes.png" in result.stderr
    table = pd.read_csv(out, keep_default_na=False)
    # nothing is dropped: the unreadable file has its row, rejected as INVALID with the reason
    assert table["path"].tolist() == [*map(str, good), str(bad)] and (table["label"] == "").all()
    assert table["verdict"].iloc[2] == "INVALID" and "not a PNG" in table["reason"].iloc[2]
    assert table["max"].iloc[2] == ""


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


def _write_png(path, array, mode=None):
    Image.fromarray(array, mode).save(path)
    return path


def test_score_without_a_threshold_file_rejects_dead_frames_with_a_reason(tiny_run, small_demo_dir, tmp_path):
    """The run's own default decision judges; blank, saturated, tiny and noise frames never pass."""
    rng = np.random.default_rng(0)
    frames = {
        "black.png": _write_png(tmp_path / "black.png", np.zeros((64, 64), np.uint8)),
        "white.png": _write_png(tmp_path / "white.png", np.full((64, 64), 255, np.uint8)),
        "1x1.png": _write_png(tmp_path / "1x1.png", np.full((1, 1), 128, np.uint8)),
        "noise.png": _write_png(tmp_path / "noise.png", rng.integers(0, 256, (64, 64), dtype=np.uint8)),
        "transparent.png": _write_png(tmp_path / "transparent.png", np.zeros((64, 64, 4), np.uint8), "RGBA"),
    }
    good = sorted((small_demo_dir / "test" / "good").glob("*.png"))
    out = tmp_path / "scores.csv"
    result = run_cli("score", "--run", tiny_run, "--data", *frames.values(), *good, "--out", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    for name, path in frames.items():
        row = table.loc[str(path)]
        assert row["verdict"] in ("INVALID", "NG"), (name, row["verdict"], row["max"])
        assert row["reason"], name
    assert table.loc[str(frames["black.png"]), "verdict"] == "INVALID"
    assert "blank" in table.loc[str(frames["black.png"]), "reason"]
    assert "saturated" in table.loc[str(frames["white.png"]), "reason"]
    assert "pixels" in table.loc[str(frames["1x1.png"]), "reason"]
    # the same default decision, taken from the run, decides the good parts: most of them pass
    decision = read_manifest(tiny_run)["default_decision"]
    good_rows = table.loc[[str(path) for path in good]]
    expected = np.where(good_rows[decision["column"]].astype(float) >= decision["threshold"], "NG", "OK")
    assert good_rows["verdict"].tolist() == expected.tolist()
    assert (good_rows["verdict"] == "OK").sum() >= len(good) // 2


@pytest.mark.parametrize("threshold, band", [
    ("NaN", None), ("Infinity", None), ("-Infinity", None), ("1e400", None), ("true", None), ('"0.2"', None),
    ("0.2", '{"review_from": NaN, "reject_from": 0.2}'), ("0.2", '{"review_from": 0.1, "reject_from": 0.3}'),
    ("0.2", '{"review_from": 0.3, "reject_from": 0.2}'), ("0.2", '{"review_from": 0.1}'),
])
def test_a_threshold_file_that_is_not_finite_or_disagrees_is_refused(tiny_run, small_demo_dir, tmp_path,
                                                                     threshold, band):
    threshold_file = tmp_path / "threshold.json"
    threshold_file.write_text(f'{{"format": "{THRESHOLD_FORMAT}", "run": {{"id": "tiny"}}, "score_column": "max", '
                              f'"threshold": {threshold}, "review_band": {band or "null"}}}')
    image = sorted((small_demo_dir / "test" / "good").glob("*.png"))[0]
    result = run_cli("score", "--run", tiny_run, "--data", image, "--out", tmp_path / "s.csv",
                     "--threshold-file", threshold_file)
    assert_one_line_error(result, "threshold.json")
    assert not (tmp_path / "s.csv").exists()


def test_devices_pipes_and_odd_outputs_give_exit_2(tiny_run, small_demo_dir, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for data in ("/dev/null", fifo):
        assert_one_line_error(run_cli("score", "--run", tiny_run, "--data", data, "--out", tmp_path / "s.csv"),
                              "not a")
        assert_one_line_error(run_cli("train", "--data", data, "--out", tmp_path / "r"), "not a")
    image = tmp_path / "part.png"
    shutil.copy(sorted((small_demo_dir / "test" / "good").glob("*.png"))[0], image)
    before = image.read_bytes()
    assert_one_line_error(run_cli("score", "--run", tiny_run, "--data", image, "--out", image), "--out")
    assert image.read_bytes() == before
    weird = tmp_path / "bad\nname.png"
    weird.write_text("not an image")
    assert_one_line_error(run_cli("score", "--run", tiny_run, "--data", weird, "--out", tmp_path / "s.csv"),
                          "bad\\nname.png")
    assert_one_line_error(run_cli("train", "--data", small_demo_dir, "--noise-std", "nan", "--out", tmp_path / "r"),
                          "--noise-std")
    few = tmp_path / "few"
    for index in range(5):
        (few / "good").mkdir(parents=True, exist_ok=True)
        shutil.copy(image, few / "good" / f"{index}.png")
    assert_one_line_error(run_cli("train", "--data", few, "--out", tmp_path / "r"), "at least 8 good images")
    assert not (tmp_path / "r").exists()


def test_text_cells_that_look_like_formulas_are_defused(tiny_run, small_demo_dir, tmp_path):
    source = sorted((small_demo_dir / "test" / "good").glob("*.png"))[0]
    names = ["=HYPERLINK(1).png", "+1.png", "@cmd.png"]
    for name in names:
        shutil.copy(source, tmp_path / name)
    result = run_cli("score", "--run", tiny_run, "--data", *names, "--out", "s.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    paths = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)["path"].tolist()
    assert paths == [f"'{name}" for name in names]
    from core.runs.store import scores_csv

    assert scores_csv(pd.DataFrame({"path": ["-1+1", "ok.png"], "max": [-0.5, 0.5]})).splitlines()[1:] == \
        ["'-1+1,-0.5", "ok.png,0.5"]


TINY_TRAIN = ("--epochs", "2", "--image-size", "32", "--widths", "8,16", "--bottleneck", "4")


def test_two_trainings_into_one_folder_one_wins_the_other_gets_exit_2(small_demo_dir, tmp_path):
    out = tmp_path / "shared-run"
    environment = os.environ | {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "core", "train", "--data", str(small_demo_dir), "--out", str(out), *TINY_TRAIN]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
                 for _ in range(2)]
    results = [process.communicate(timeout=600) + (process.returncode,) for process in processes]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 2], results
    loser = next(stderr for _, stderr, code in results if code == 2)
    assert "claimed" in loser or "not an empty folder" in loser
    assert read_manifest(out)["model_kind"] == "ncae"


def test_ctrl_c_during_training_leaves_a_cancelled_run(small_demo_dir, tmp_path):
    import signal
    import time

    from core.runs.store import inspect_run, read_status

    out = tmp_path / "interrupted"
    environment = os.environ | {"PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "core", "train", "--data", str(small_demo_dir), "--out",
                                str(out), "--epochs", "500", "--image-size", "32", "--widths", "8,16"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    deadline = time.monotonic() + 300
    while read_status(out).get("epoch", 0) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # polling for the first finished epoch, not waiting for a duration
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert read_status(out)["state"] == "cancelled"
    run = inspect_run(out)
    assert not run.usable and not run.interrupted


def test_sigterm_during_training_leaves_a_run_that_says_it_was_stopped(small_demo_dir, tmp_path, monkeypatch):
    """A service manager stopping `train` (SIGTERM): exit 143, and a run that says it was stopped, not one that
    "failed" with an internal class name as its message."""
    import signal

    from core.detectors.autoencoder.detector import ResidualDetector
    from core.runs.store import inspect_run, read_status

    def terminated_while_fitting(self, *arguments, **keywords):
        signal.raise_signal(signal.SIGTERM)   # the command's own handler runs, as for a real signal

    monkeypatch.setattr(ResidualDetector, "fit", terminated_while_fitting)
    out = tmp_path / "stopped"
    result = run_cli("train", "--data", small_demo_dir, "--out", out, *TINY_TRAIN)
    assert result.returncode == 143 and "terminated" in result.stderr
    status = read_status(out)
    assert status["state"] == "cancelled" and "terminated" in status["message"], status
    assert not inspect_run(out).usable


def test_demo_data_on_a_failing_disk_leaves_nothing_that_loads(tmp_path, monkeypatch):
    import errno

    import core.data.synthetic
    from core.cli import main

    def fill_the_disk(out_dir, *args, **kwargs):
        (Path(out_dir) / "train" / "good").mkdir(parents=True)
        (Path(out_dir) / "train" / "good" / "000.png").write_bytes(_png_bytes())
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(core.data.synthetic, "generate_demo_set", fill_the_disk)
    assert main(["demo-data", "--out", str(tmp_path / "demo")]) != 0
    assert not (tmp_path / "demo").exists()
    assert [entry.name for entry in tmp_path.iterdir()] == []


def test_score_on_the_built_in_demo_passes_most_good_parts_and_rejects_most_defects(tmp_path):
    out = tmp_path / "demo.csv"
    result = run_cli("score", "--run", ROOT / "assets" / "demo_model", "--data", "demo", "--out", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out, keep_default_na=False)
    good, defect = table[table["label"] == "good"], table[table["label"] == "defect"]
    assert len(good) == 60 and len(defect) == 80
    assert (good["verdict"] == "OK").mean() >= 0.8 and (defect["verdict"].isin(["NG", "INVALID"])).mean() >= 0.8
