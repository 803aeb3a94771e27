"""Runs saved before the detectors moved into folders of their own still load and score exactly as they did."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "runs_before_folders"
INPUTS = {"ncae": ROOT / "assets" / "samples", "memory_bank": ROOT / "assets" / "samples",
          "lattice": FIXTURES / "inputs"}


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_a_run_saved_before_scores_as_it_did_then(name, tmp_path):
    out = tmp_path / "scores.csv"
    completed = run_cli("score", "--run", FIXTURES / name, "--data", INPUTS[name], "--out", out)
    assert completed.returncode == 0, completed.stderr
    then = pd.read_csv(FIXTURES / f"{name}_scores.csv", keep_default_na=False)
    now = pd.read_csv(out, keep_default_na=False)
    then["file"], now["file"] = then["path"].map(lambda path: Path(path).name), now["path"].map(lambda path: Path(path).name)
    then, now = then.set_index("file").sort_index(), now.set_index("file").sort_index()
    assert list(now.index) == list(then.index) and list(now.columns) == list(then.columns)
    columns = [column for column in then.columns if column not in ("path", "label", "defect_type", "verdict", "reason")]
    assert columns, name
    for column in columns:
        np.testing.assert_allclose(now[column].astype(float), then[column].astype(float), rtol=1e-6, atol=1e-9,
                                   err_msg=f"{name}: {column}")
    assert now["verdict"].tolist() == then["verdict"].tolist() and now["reason"].tolist() == then["reason"].tolist()
