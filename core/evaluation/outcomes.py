"""What a decision does to labelled parts when it has three outcomes: accept (OK), review, reject (NG).

A part is NG when ``score >= threshold``, REVIEW when ``review_from <= score < threshold`` and OK
below (without a review band, nothing is reviewed). The rates are those of the *automatic*
decisions: an escape is a defect accepted as OK, a false reject a good part rejected as NG; parts
sent to review are neither, and the review rate says how many there are. Recall and precision
are about the NG decision (a defect sent to review is not counted as caught), so they match the
ROC and PR curves' operating point at ``threshold``.

The Threshold page's live component computes the same numbers in the browser; the end-to-end
test checks it against these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

OUTCOMES = ("OK", "REVIEW", "NG")
ACCURACY_OF = "parts decided automatically (OK or NG); parts sent to review are left out"


@dataclass(frozen=True)
class Outcomes:
    """Counts per actual class (good, defect) and outcome (OK, REVIEW, NG)."""

    threshold: float
    review_from: float | None
    good: tuple[int, int, int]
    defect: tuple[int, int, int]

    @property
    def n_good(self) -> int:
        return sum(self.good)

    @property
    def n_defect(self) -> int:
        return sum(self.defect)

    def _share(self, part: int, whole: int) -> float:
        return part / whole if whole else float("nan")

    @property
    def recall(self) -> float:
        return self._share(self.defect[2], self.n_defect)

    @property
    def precision(self) -> float:
        return self._share(self.defect[2], self.defect[2] + self.good[2])

    @property
    def accuracy(self) -> float:
        """Share of the automatically decided parts (OK or NG) that were decided right."""
        return self._share(self.good[0] + self.defect[2], self.good[0] + self.good[2] + self.defect[0] + self.defect[2])

    @property
    def escape_rate(self) -> float:
        return self._share(self.defect[0], self.n_defect)

    @property
    def false_reject_rate(self) -> float:
        return self._share(self.good[2], self.n_good)

    @property
    def review_rate(self) -> float:
        return self._share(self.good[1] + self.defect[1], self.n_good + self.n_defect)

    @property
    def f1(self) -> float:
        precision, recall = self.precision, self.recall
        return 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")

    def to_dict(self) -> dict:
        """Counts and rates exactly as the Threshold page shows them; a rate without images is ``None``.

        The two-way counts (``true_positives`` …) are the NG decision's, as in the ROC curve; ``accuracy``
        is over the automatically decided parts only, parts sent to review left out (``accuracy_of`` says so)."""
        def share(value: float) -> float | None:
            return None if value != value else float(value)

        return {
            "threshold": self.threshold, "review_from": self.review_from,
            "good_ok": self.good[0], "good_review": self.good[1], "good_ng": self.good[2],
            "defect_ok": self.defect[0], "defect_review": self.defect[1], "defect_ng": self.defect[2],
            "true_positives": self.defect[2], "false_positives": self.good[2],
            "true_negatives": self.good[0] + self.good[1], "false_negatives": self.defect[0] + self.defect[1],
            "precision": share(self.precision), "recall": share(self.recall), "f1": share(self.f1),
            "accuracy": share(self.accuracy), "accuracy_of": ACCURACY_OF,
            "false_reject_rate": share(self.false_reject_rate), "escape_rate": share(self.escape_rate),
            "review_rate": share(self.review_rate),
        }

    def matrix(self) -> pd.DataFrame:
        """The 2×3 confusion: rows actual good / defect, columns OK / REVIEW / NG."""
        return pd.DataFrame([self.good, self.defect], index=["actual good", "actual defect"], columns=list(OUTCOMES))


def outcome_codes(scores, threshold: float, review_from: float | None = None) -> np.ndarray:
    """0 (OK), 1 (REVIEW) or 2 (NG) per score."""
    scores = np.asarray(scores, dtype=np.float64)
    codes = np.where(scores >= threshold, 2, 0)
    if review_from is not None:
        codes = np.where((scores >= review_from) & (scores < threshold), 1, codes)
    return codes


def outcomes(scores, labels, threshold: float, review_from: float | None = None) -> Outcomes:
    codes, labels = outcome_codes(scores, threshold, review_from), np.asarray(labels)
    count = lambda label: tuple(int(((labels == label) & (codes == code)).sum()) for code in range(3))  # noqa: E731
    return Outcomes(float(threshold), review_from, count("good"), count("defect"))


def per_defect_type(scores, labels, defect_types, threshold: float, review_from: float | None = None) -> pd.DataFrame:
    """Per defect type: images, caught (NG), sent to review, escaped (OK) and recall; worst recall first, so
    the types that escape are on top."""
    codes, labels, kinds = outcome_codes(scores, threshold, review_from), np.asarray(labels), np.asarray(defect_types)
    rows = []
    for kind in sorted(set(kinds[labels == "defect"])):
        members = (labels == "defect") & (kinds == kind)
        caught, review, escaped = (int((codes[members] == code).sum()) for code in (2, 1, 0))
        rows.append({"defect type": kind, "images": int(members.sum()), "caught (NG)": caught, "to review": review,
                     "escaped (OK)": escaped, "recall": caught / int(members.sum())})
    frame = pd.DataFrame(rows, columns=["defect type", "images", "caught (NG)", "to review", "escaped (OK)", "recall"])
    return frame.sort_values(["recall", "defect type"]).reset_index(drop=True)
