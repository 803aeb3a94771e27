"""Three outcomes (OK / REVIEW / NG) and the per-defect-type breakdown, against counts made by hand."""

import numpy as np
import pytest

from core.evaluation.metrics import ThresholdTable
from core.evaluation.outcomes import outcomes, per_defect_type

SCORES = np.array([0.1, 0.2, 0.35, 0.5, 0.9, 0.3, 0.45, 0.6, 0.8, 0.95])
LABELS = np.array(["good"] * 5 + ["defect"] * 5)
TYPES = np.array([""] * 5 + ["crack", "crack", "pinhole", "pinhole", "stain"])


def test_a_review_band_is_a_third_outcome():
    result = outcomes(SCORES, LABELS, threshold=0.6, review_from=0.4)
    assert result.good == (3, 1, 1) and result.defect == (1, 1, 3)      # (OK, REVIEW, NG)
    assert result.escape_rate == pytest.approx(1 / 5) and result.false_reject_rate == pytest.approx(1 / 5)
    assert result.review_rate == pytest.approx(2 / 10)
    assert result.recall == pytest.approx(3 / 5) and result.precision == pytest.approx(3 / 4)
    assert result.accuracy == pytest.approx((3 + 3) / 8)                # of the parts decided automatically
    assert list(result.matrix().columns) == ["OK", "REVIEW", "NG"]


def test_without_a_band_the_outcomes_are_the_roc_operating_point():
    result = outcomes(SCORES, LABELS, threshold=0.45)
    point = ThresholdTable(SCORES, LABELS).at(0.45)
    assert result.good[1] == result.defect[1] == 0
    assert (result.recall, result.false_reject_rate, result.escape_rate) == pytest.approx(
        (point.recall, point.false_reject_rate, point.escape_rate))


def test_the_types_that_escape_come_first():
    table = per_defect_type(SCORES, LABELS, TYPES, threshold=0.6, review_from=0.4)
    assert table["defect type"].tolist() == ["crack", "pinhole", "stain"]
    crack = table.iloc[0]
    assert (crack["images"], crack["caught (NG)"], crack["to review"], crack["escaped (OK)"]) == (2, 0, 1, 1)
    assert table["recall"].tolist() == pytest.approx([0.0, 1.0, 1.0])
