"""`score --engine dask` gives the rows of the single-process `score`, on a local cluster it starts and on an
existing one, loads the run once per worker, and finishes an interrupted job without mixing two jobs."""

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DEMO_RUN = ROOT / "assets" / "demo_model"


def _core(*arguments):
    """``python -m core`` in a process of its own: a Dask engine starts a cluster and workers, which a test process
    shared with the rest of the suite must not be left holding."""
    return subprocess.run([sys.executable, "-m", "core", *map(str, arguments)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def _refused(*arguments):
    """A command refused before any scoring (or a plain one): run in this process (``run_cli``)."""
    from tests.unit.test_cli import run_cli

    return run_cli(*arguments)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The demo test set, a file that is not an image and a black frame: every kind of row."""
    from core.data.datasets import open_dataset

    folder = tmp_path_factory.mktemp("odd")
    (folder / "broken.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(folder / "black.png")
    with open_dataset("demo") as demo:
        paths = [sample.path for sample in demo.test]
    return [*paths, folder / "broken.png", folder / "black.png"]


@pytest.fixture(scope="module")
def plain_rows(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "scores.csv"
    completed = _refused("score", "--run", DEMO_RUN, "--data", *images, "--out", out)
    assert completed.returncode == 0, completed.stderr
    from core.runs.store import read_scores_csv

    return read_scores_csv(out)


def _assert_same_rows(rows: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The same rows: text exactly, scores to float32 round-off (a shard is scored in batches of another size,
    which the network's kernels block differently), so the reason's printed score only to its last digit."""
    rows, expected = rows.reset_index(drop=True), expected.reset_index(drop=True)
    pd.testing.assert_frame_equal(rows.drop(columns="reason"), expected.drop(columns="reason"), rtol=1e-5, atol=1e-6)
    words = lambda reasons: reasons.str.replace(r"\d+\.\d+", "#", regex=True)  # noqa: E731
    pd.testing.assert_series_equal(words(rows["reason"]), words(expected["reason"]))


@pytest.fixture(scope="module")
def sharded(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("engine") / "shards"
    arguments = ("score", "--run", DEMO_RUN, "--data", *images, "--out", out, "--engine", "dask", "--workers", "2",
                 "--shard-size", "25")
    completed = _core(*arguments)
    assert completed.returncode == 0, completed.stderr
    return out, arguments, completed.stderr


def test_the_engine_writes_the_rows_of_plain_score(sharded, plain_rows, images):
    from core.runs.dask_scoring import read_shards

    out, _, told = sharded
    rows = read_shards(out)
    assert len(rows) == len(images) == len(plain_rows)
    _assert_same_rows(rows.sort_values("path"), plain_rows.sort_values("path"))
    assert set(rows.loc[rows["path"].str.endswith(("broken.png", "black.png")), "verdict"]) == {"INVALID"}
    assert f"scored {len(images)}/{len(images)} images" in told and "1 INVALID" not in told


def test_each_worker_loads_the_run_once_for_all_its_shards(sharded, images):
    job = json.loads((sharded[0] / "job.json").read_text())
    assert job["state"] == "complete" and job["shards"] == -(-len(images) // 25)
    workers = job["workers"].values()
    assert len(workers) == 2 and sum(worker["shards"] for worker in workers) == job["shards"]
    assert all(worker["model_loads"] == 1 for worker in workers)
    assert max(worker["shards"] for worker in workers) >= 2
    assert all(worker["peak_memory_bytes"] > 50 * 2**20 for worker in workers)


def test_an_interrupted_job_is_finished_and_another_job_refused(sharded, plain_rows):
    from core.runs.dask_scoring import read_shards

    out, arguments, _ = sharded
    kept = {path.name: path.stat().st_mtime_ns for path in out.glob("part-*.csv") if path.name != "part-00002.csv"}
    (out / "part-00002.csv").unlink()   # as if the job had been stopped before this shard was written
    completed = _core(*arguments)
    assert completed.returncode == 0, completed.stderr
    assert f"{len(kept)} shards were already written" in completed.stderr
    assert {path.name: path.stat().st_mtime_ns for path in out.glob("part-*.csv") if path.name in kept} == kept
    assert len(read_shards(out)) == len(plain_rows)
    # the summary and job.json count every shard of the job, those written before too
    expected = plain_rows["verdict"].value_counts().to_dict()
    assert json.loads((out / "job.json").read_text())["verdicts"] == expected
    words = ", ".join(f"{expected[name]} {name}" for name in ("OK", "REVIEW", "NG", "INVALID") if name in expected)
    assert words in completed.stderr
    # a third run with every shard on disk: still the whole job's verdicts, with no cluster started (in this
    # process, then)
    again = _refused(*arguments)
    assert again.returncode == 0 and json.loads((out / "job.json").read_text())["verdicts"] == expected
    assert "shards of this job were already written" in again.stderr and "Dask" not in again.stderr
    assert words in again.stderr

    other = _refused(*arguments[:-1], "30")   # another shard size: the folder belongs to another job
    assert other.returncode == 2 and "another job" in other.stderr and "Traceback" not in other.stderr
    assert len(read_shards(out)) == len(plain_rows)


def test_an_existing_cluster_scores_a_list_of_paths_and_uris(images, plain_rows, tmp_path):
    from distributed import LocalCluster

    from core.data.datasets import ScoreItem
    from core.errors import InputError
    from core.runs.dask_scoring import score_on_dask

    listing = tmp_path / "images.txt"
    # a plant's list: plain paths, file:// URIs, a comment and a blank line
    entries = [Path(path).as_uri() if index % 2 else str(path) for index, path in enumerate(images)]
    listing.write_text("# today's parts\n\n" + "\n".join(entries) + "\n")
    plain = tmp_path / "plain.csv"
    assert _refused("score", "--run", DEMO_RUN, "--data", f"@{listing}", "--out", plain).returncode == 0
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        completed = _core("score", "--run", DEMO_RUN, "--data", f"@{listing}", "--out", tmp_path / "shards",
                          "--engine", "dask", "--scheduler", cluster.scheduler_address)
        assert completed.returncode == 0, completed.stderr
        assert f"the Dask cluster at {cluster.scheduler_address}" in completed.stderr
        from core.runs.dask_scoring import read_shards
        from core.runs.store import read_scores_csv

        rows, listed = read_shards(tmp_path / "shards"), read_scores_csv(plain)
        _assert_same_rows(rows, listed)
        # the URIs were read: their rows carry the scores of the same files given as paths
        by_path = plain_rows.set_index("path")
        uri_rows = rows[rows["path"].str.startswith("file://")]
        assert len(uri_rows) > 60
        for row in uri_rows.itertuples():
            same_file = by_path.loc[unquote(urlparse(row.path).path)]
            assert row.verdict == same_file["verdict"] and row.map_max == pytest.approx(same_file["map_max"], abs=1e-6)

        with pytest.raises(InputError, match="not the same run"):   # a worker that would load another model
            score_on_dask(DEMO_RUN, "0" * 64, [ScoreItem(str(images[0]), "one.png")], None, tmp_path / "other",
                          scheduler=cluster.scheduler_address)


def test_engine_options_without_the_engine_and_a_file_as_the_folder_are_refused(images, tmp_path, monkeypatch):
    alone = _refused("score", "--run", DEMO_RUN, "--data", images[0], "--out", tmp_path / "a.csv", "--workers", "2")
    assert alone.returncode == 2 and "only apply with --engine dask" in alone.stderr
    (tmp_path / "taken.csv").write_text("keep")
    onto_file = _refused("score", "--run", DEMO_RUN, "--data", images[0], "--out", tmp_path / "taken.csv",
                      "--engine", "dask")
    assert onto_file.returncode == 2 and "is a file" in onto_file.stderr
    assert (tmp_path / "taken.csv").read_text() == "keep"
    missing = _refused("score", "--run", DEMO_RUN, "--data", f"@{tmp_path / 'nowhere.txt'}", "--out",
                       tmp_path / "b.csv")
    assert missing.returncode == 2 and "cannot read the list of images" in missing.stderr
    # the discard port: nothing listens there (no cluster is started: asked in this process, waiting 2 s, not 10)
    monkeypatch.setattr("core.runs.dask_scoring.CONNECT_SECONDS", 2)
    nobody = _refused("score", "--run", DEMO_RUN, "--data", images[0], "--out", tmp_path / "c", "--engine", "dask",
                      "--scheduler", "tcp://127.0.0.1:9")
    assert nobody.returncode == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 2 s" in nobody.stderr
    assert len(nobody.stderr.strip().splitlines()) <= 2 and not (tmp_path / "c").exists()
