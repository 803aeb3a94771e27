"""The fail-safe parts of the engine: frame check, manifest checks, run folders, the fused score."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from core.runs.bundles import MANIFEST_DIGEST, MANIFEST_FILE, load_bundle, manifest_digest, read_manifest
from core.data.datasets import extract_zip_safely, open_dataset
from core.errors import BundleError, DatasetError
from core.data.frame_check import FrameLimits
from core.evaluation.scoring import judged_rows, score_sources
from core.runs.store import claim_run_folder, inspect_run, list_runs, write_status
from core.detectors.autoencoder.stat_distance import StatDistance


def good_frames(count=20, size=32, seed=0):
    """Smooth, mid-grey frames with some texture: stand-ins for good parts."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    return np.stack([np.clip(0.45 + 0.15 * np.sin(6 * x + rng.uniform(0, 6)) * np.cos(4 * y)
                             + rng.normal(0, 0.01, (size, size)), 0, 1) for _ in range(count)]).astype(np.float32)


def test_frame_limits_come_from_the_training_images_and_refuse_dead_frames():
    frames = good_frames()
    limits = FrameLimits.fit(frames, [(128, 128)] * len(frames))
    assert limits.reasons(good_frames(seed=1), [(128, 128)] * 20) == [""] * 20
    rng = np.random.default_rng(3)
    dead = np.stack([np.zeros((32, 32)), np.ones((32, 32)), rng.uniform(0, 1, (32, 32)),
                     np.clip(good_frames(1)[0] + 0.45, 0, 1), good_frames(1)[0]]).astype(np.float32)
    sizes = [(128, 128)] * 4 + [(1, 1)]
    reasons = limits.reasons(dead, sizes)
    assert "blank" in reasons[0] and "black" in reasons[0]
    assert "saturated" in reasons[1]
    assert "noise" in reasons[2]
    assert "brightness" in reasons[3] or "saturated" in reasons[3]
    assert "pixels" in reasons[4]
    # limits are learned: a training set of bright parts accepts the bright frame the dark set refused
    bright = FrameLimits.fit(np.clip(frames + 0.45, 0, 1))
    assert bright.reasons(dead[3:4]) == [""]


def test_frame_limits_round_trip_and_refuse_tampering():
    limits = FrameLimits.fit(good_frames(), [(100, 80)] * 20)
    assert FrameLimits.from_json(json.loads(json.dumps(limits.to_json()))) == limits
    for key, value in (("brightness", [0.5, float("nan")]), ("contrast", [0.3, 0.1]), ("clipped_max", True),
                       ("roughness_max", -1), ("pixels", "many")):
        with pytest.raises(ValueError):
            FrameLimits.from_json(limits.to_json() | {key: value})


def test_the_fused_score_counts_only_more_error_than_good_parts():
    rng = np.random.default_rng(0)
    good = {name: np.exp(rng.normal(np.log(0.01), 0.1, 40)) for name in ("mean", "std", "var", "range", "min",
                                                                          "max", "cumsum", "mse")}
    good["entropy"] = rng.normal(2.0, 0.05, 40)
    good["kurtosis"] = rng.normal(3.0, 0.5, 40)
    reference = StatDistance.fit(good)
    assert "kurtosis" not in reference.columns and reference.one_sided
    cleaner = {name: values[:1] * (0.2 if name != "entropy" else 0.5) for name, values in good.items()}
    worse = {name: values[:1] * (5.0 if name != "entropy" else 1.5) for name, values in good.items()}
    assert reference.distance(cleaner)[0] == 0.0          # reconstructing better is not an anomaly
    assert reference.distance(worse)[0] > np.quantile(reference.distance(good), 0.99)
    two_sided = StatDistance.fit(good, one_sided=False)
    assert two_sided.distance(cleaner)[0] > np.quantile(two_sided.distance(good), 0.99)  # the old flaw
    # a reference saved before the one-sided fusion keeps its meaning
    saved = reference.to_json()
    del saved["one_sided"]
    assert not StatDistance.from_json(saved).one_sided


def _tampered(tiny_run, tmp_path, name, change):
    copy = tmp_path / name
    shutil.copytree(tiny_run, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    change(manifest)
    # re-sealed, as a careful forger would: the checks of the values themselves must still refuse it (an
    # unsealed edit is refused by its digest already: tests/unit/test_hardening.py)
    if MANIFEST_DIGEST in manifest:
        manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    return copy


TAMPERINGS = {
    "kind-5": lambda m: m.update(model_kind=5),
    "size-huge": lambda m: m.update(input_size=10**9),
    "size-bool": lambda m: m.update(input_size=True),
    "nan-reference": lambda m: m["stat_distance"]["centre"].__setitem__(0, float("nan")),
    "sigma-text": lambda m: m["parameters"].update(map_sigma="wide"),
    "decision-nan": lambda m: m["default_decision"].update(threshold=float("nan")),
    "decision-column": lambda m: m["default_decision"].update(column="__class__"),
    "frame-inf": lambda m: m["frame_check"].update(clipped_max=float("inf")),
    "history-text": lambda m: m.update(history={"loss": "low"}),
    "file-traversal": lambda m: m.update(model_file="../model.keras"),
    "scale-negative": lambda m: m["map_scales"].update(anomaly=-1.0),
    "scale-unknown": lambda m: m["map_scales"].update(colour="red"),
}


@pytest.mark.parametrize("name", TAMPERINGS)
def test_a_damaged_manifest_is_refused_in_one_sentence_and_skipped_in_the_run_list(tiny_run, tmp_path, name):
    copy = _tampered(tiny_run, tmp_path / "runs", name, TAMPERINGS[name])
    with pytest.raises(BundleError) as caught:
        read_manifest(copy)
    assert "\n" not in str(caught.value) and MANIFEST_FILE in str(caught.value)
    runs = list_runs(tmp_path / "runs", usable_only=False)
    assert [run.usable for run in runs] == [False] and runs[0].problem
    assert list_runs(tmp_path / "runs") == []


def test_a_run_saved_before_frame_checks_still_loads_and_scores(tiny_run, tmp_path, small_demo_dir):
    def strip(manifest):   # a run saved before frame checks, decisions and seals
        del manifest["frame_check"], manifest["default_decision"], manifest["map_scales"], manifest[MANIFEST_DIGEST]
    old = _tampered(tiny_run, tmp_path, "old", strip)
    detector = load_bundle(old)
    assert detector.frame_limits_ is None and detector.default_decision_ is None and detector.map_scales_ is None
    image = sorted((small_demo_dir / "test" / "good").glob("*.png"))[0]
    rows = judged_rows(score_sources(detector, [image], ["part.png"]), None)
    assert rows["path"].tolist() == ["part.png"] and "verdict" not in rows and rows["map_max"].iloc[0] > 0


def test_claiming_a_run_folder_lets_exactly_one_through(tmp_path):
    claim_run_folder(tmp_path / "run")
    with pytest.raises(FileExistsError):
        claim_run_folder(tmp_path / "run")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError):
        claim_run_folder(tmp_path / "full")


def test_a_run_left_training_by_a_dead_process_is_interrupted(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from core.runs.store import owner_fields

    write_status(tmp_path / "stale", state="training", epoch=3, **(owner_fields() | {"pid": int(dead.stdout)}))
    write_status(tmp_path / "alive", state="training", epoch=3, **owner_fields())
    write_status(tmp_path / "old-format", state="training", epoch=3)
    assert inspect_run(tmp_path / "stale").interrupted
    assert not inspect_run(tmp_path / "alive").interrupted
    assert inspect_run(tmp_path / "old-format").interrupted   # no owner recorded: nobody can be finishing it


def test_zip_entries_for_the_top_folder_are_fine_and_clashes_name_no_server_path(tmp_path, small_demo_dir):
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("./", b"")
        for path in sorted((small_demo_dir / "train" / "good").glob("*.png"))[:3]:
            bundle.write(path, f"./train/good/{path.name}")
    extract_zip_safely(archive, tmp_path / "out")
    assert len(list((tmp_path / "out" / "train" / "good").glob("*.png"))) == 3
    clash = tmp_path / "clash.zip"
    with zipfile.ZipFile(clash, "w") as bundle:
        bundle.writestr("a/b", b"file")
        bundle.writestr("a/b/c.png", b"inside a file")
    with pytest.raises(DatasetError) as caught:
        extract_zip_safely(clash, tmp_path / "clash-out")
    message = str(caught.value)
    assert message.startswith("clash.zip: ") and str(tmp_path) not in message and "a/b/c.png" in message


def test_devices_and_pipes_are_not_data_sets(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for path in ("/dev/null", tmp_path / "pipe"):
        with pytest.raises(DatasetError, match="not a folder or a .zip"):
            open_dataset(path)


def test_a_casting_layout_says_that_train_defects_join_the_test_set(tmp_path, small_demo_dir):
    images = sorted((small_demo_dir / "train" / "good").glob("*.png"))
    for split, folder, count in (("train", "ok_front", 10), ("train", "def_front", 3), ("test", "ok_front", 2),
                                 ("test", "def_front", 2)):
        (tmp_path / split / folder).mkdir(parents=True)
        for index in range(count):
            shutil.copy(images[index], tmp_path / split / folder / f"{index}.png")
    with open_dataset(tmp_path) as dataset:
        assert dataset.summary()["test_defect"] == 5
        assert len(dataset.notes) == 1 and "train/def_front" in dataset.notes[0] and "3 defect" in dataset.notes[0]


def test_frame_check_is_in_every_trained_run(tiny_run):
    manifest = read_manifest(tiny_run)
    limits = FrameLimits.from_json(manifest["frame_check"])
    assert limits.pixels[0] < 64 * 64 < limits.pixels[1]   # the small demo set is 64 px
    assert manifest["default_decision"]["column"] == "map_max"
    assert "held-out good" in manifest["default_decision"]["basis"]
