"""Runs saved before the detectors moved into folders of their own still load and score as they did: the same
verdicts and reasons, the scores to float32 round-off."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "runs_before_folders"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
INPUTS = {"ncae": ROOT / "assets" / "samples", "memory_bank": ROOT / "assets" / "samples",
          "lattice": FIXTURES / "inputs", "ncae_features": ROOT / "assets" / "samples"}


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
        # 2e-6: the ImageNet network has run with its batch norms folded into its convolutions since (round-off of
        # up to 1.6e-6 relative in the memory bank's scores, ranks unchanged); a real change moves scores far more
        np.testing.assert_allclose(now[column].astype(float), then[column].astype(float), rtol=2e-6, atol=1e-9,
                                   err_msg=f"{name}: {column}")
    assert now["verdict"].tolist() == then["verdict"].tolist()
    # the reasons say the same, and the scores they print (six digits) agree but for the last one's round-off
    words_now, words_then = ([NUMBER.sub("#", reason) for reason in table["reason"]] for table in (now, then))
    assert words_now == words_then
    printed_now, printed_then = ([float(value) for reason in table["reason"] for value in NUMBER.findall(reason)]
                                 for table in (now, then))
    np.testing.assert_allclose(printed_now, printed_then, rtol=1e-5, err_msg=f"{name}: reason")
