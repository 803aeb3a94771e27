"""Threshold metrics: curves, areas, the numbers at any threshold, and threshold presets.

Convention everywhere: a higher score means more anomalous, and a threshold ``t`` rejects a part
when ``score >= t``. "Positive" means defect. The false-reject rate is the share of good parts
rejected; the escape rate is the share of defects accepted.

:class:`ThresholdTable` sorts the scores once (O(n log n)); every later question about a
threshold is two binary searches (O(log n)), which is what lets a slider recompute live.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core.decision import threshold_rejecting_at_most

GOOD, DEFECT = "good", "defect"


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    true_positives: int   # defects rejected
    false_positives: int  # good parts rejected
    true_negatives: int   # good parts accepted
    false_negatives: int  # defects accepted (escapes)
    precision: float
    recall: float
    f1: float
    accuracy: float
    false_reject_rate: float
    escape_rate: float

    def confusion_matrix(self) -> np.ndarray:
        """Rows: actual good, actual defect; columns: accepted, rejected."""
        return np.array([[self.true_negatives, self.false_positives],
                         [self.false_negatives, self.true_positives]])

    def to_dict(self) -> dict:
        return asdict(self)


class ThresholdTable:
    """Scores of good and defect samples, prepared for fast threshold look-ups."""

    def __init__(self, scores, labels):
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels)
        if scores.shape != labels.shape or scores.ndim != 1:
            raise ValueError("`scores` and `labels` must be one-dimensional and of equal length.")
        if np.isnan(scores).any():
            raise ValueError("`scores` contains NaN.")
        is_defect = _as_defect_mask(labels)
        self.good_scores = np.sort(scores[~is_defect])
        self.defect_scores = np.sort(scores[is_defect])
        self.n_good = len(self.good_scores)
        self.n_defect = len(self.defect_scores)

    def rejected_counts(self, threshold: float) -> tuple[int, int]:
        """(good rejected, defects rejected) at ``threshold``: counts of scores >= threshold."""
        good = self.n_good - int(np.searchsorted(self.good_scores, threshold, side="left"))
        defect = self.n_defect - int(np.searchsorted(self.defect_scores, threshold, side="left"))
        return good, defect

    def at(self, threshold: float) -> OperatingPoint:
        false_positives, true_positives = self.rejected_counts(threshold)
        false_negatives = self.n_defect - true_positives
        true_negatives = self.n_good - false_positives
        rejected = true_positives + false_positives
        precision = true_positives / rejected if rejected else (1.0 if self.n_defect == 0 else 0.0)
        recall = true_positives / self.n_defect if self.n_defect else math.nan
        f1 = (2 * true_positives / (2 * true_positives + false_positives + false_negatives)
              if self.n_defect else math.nan)
        total = self.n_good + self.n_defect
        return OperatingPoint(
            threshold=float(threshold),
            true_positives=true_positives, false_positives=false_positives,
            true_negatives=true_negatives, false_negatives=false_negatives,
            precision=float(precision), recall=float(recall), f1=float(f1),
            accuracy=(true_positives + true_negatives) / total if total else math.nan,
            false_reject_rate=false_positives / self.n_good if self.n_good else math.nan,
            escape_rate=false_negatives / self.n_defect if self.n_defect else math.nan,
        )

    # -- curves ---------------------------------------------------------------------------------

    def candidate_thresholds(self) -> np.ndarray:
        """Every distinct score, high to low, after +inf (reject nothing): all distinct operating points."""
        distinct = np.unique(np.concatenate([self.good_scores, self.defect_scores]))[::-1]
        return np.concatenate([[np.inf], distinct])

    def _sweep(self):
        thresholds = self.candidate_thresholds()
        good_rejected = self.n_good - np.searchsorted(self.good_scores, thresholds, side="left")
        defect_rejected = self.n_defect - np.searchsorted(self.defect_scores, thresholds, side="left")
        return thresholds, good_rejected, defect_rejected

    def roc_curve(self):
        """(false-positive rate, true-positive rate, thresholds), as scikit-learn's with drop_intermediate=False."""
        self._require_both_classes("a ROC curve")
        thresholds, good_rejected, defect_rejected = self._sweep()
        return good_rejected / self.n_good, defect_rejected / self.n_defect, thresholds

    def pr_curve(self):
        """(precision, recall, thresholds) for every distinct threshold, from high to low threshold."""
        self._require_both_classes("a precision-recall curve")
        thresholds, good_rejected, defect_rejected = self._sweep()
        thresholds, good_rejected, defect_rejected = thresholds[1:], good_rejected[1:], defect_rejected[1:]
        precision = defect_rejected / np.maximum(defect_rejected + good_rejected, 1)
        return precision, defect_rejected / self.n_defect, thresholds

    def auroc(self) -> float:
        false_positive_rate, true_positive_rate, _ = self.roc_curve()
        return float(np.trapezoid(true_positive_rate, false_positive_rate))

    def auprc(self) -> float:
        """Average precision: sum over thresholds of precision × recall step (no interpolation)."""
        precision, recall, _ = self.pr_curve()
        steps = np.diff(np.concatenate([[0.0], recall]))
        return float(np.sum(steps * precision))

    # -- presets --------------------------------------------------------------------------------

    def best_f1_threshold(self) -> float:
        self._require_both_classes("the best-F1 threshold")
        thresholds, good_rejected, defect_rejected = self._sweep()
        f1 = 2 * defect_rejected / (defect_rejected + good_rejected + self.n_defect)
        return float(thresholds[int(np.argmax(f1))])

    def youden_threshold(self) -> float:
        """Maximises Youden's J = recall − false-reject rate."""
        self._require_both_classes("Youden's J threshold")
        thresholds, good_rejected, defect_rejected = self._sweep()
        j = defect_rejected / self.n_defect - good_rejected / self.n_good
        return float(thresholds[int(np.argmax(j))])

    def zero_escape_threshold(self) -> float:
        """The highest threshold that still rejects every known defect: the lowest defect score."""
        if not self.n_defect:
            raise ValueError("The zero-escape threshold needs at least one defect sample.")
        return float(self.defect_scores[0])

    def target_false_reject_threshold(self, rate: float) -> float:
        """The lowest threshold whose false-reject rate is at most ``rate``; uses good scores only."""
        if not self.n_good:
            raise ValueError("A false-reject-rate threshold needs at least one good sample.")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"`rate` must be between 0 and 1, got {rate!r}.")
        return self.threshold_rejecting_at_most(int(math.floor(rate * self.n_good + 1e-9)))

    def threshold_rejecting_at_most(self, allowed: int) -> float:
        """The lowest threshold that rejects at most ``allowed`` of the good scores."""
        return threshold_rejecting_at_most(self.good_scores, allowed)

    def minimum_cost_threshold(self, escape_cost: float, false_reject_cost: float) -> float:
        """Minimises escape_cost × escapes + false_reject_cost × false rejects."""
        if escape_cost < 0 or false_reject_cost < 0:
            raise ValueError("Costs must be zero or positive.")
        thresholds, good_rejected, defect_rejected = self._sweep()
        cost = escape_cost * (self.n_defect - defect_rejected) + false_reject_cost * good_rejected
        best = int(np.argmin(cost))
        threshold = thresholds[best]
        return float(threshold if np.isfinite(threshold) else np.nextafter(self._max_score(), np.inf))

    def _max_score(self) -> float:
        tops = [scores[-1] for scores in (self.good_scores, self.defect_scores) if len(scores)]
        return float(max(tops))

    def _require_both_classes(self, what: str) -> None:
        if not self.n_good or not self.n_defect:
            raise ValueError(f"Computing {what} needs both good and defect samples "
                             f"(have {self.n_good} good, {self.n_defect} defect).")


def threshold_summary(scores, labels) -> dict:
    """AUROC, AUPRC, best F1 and its threshold, or ``None`` for each when a class is missing."""
    table = ThresholdTable(scores, labels)
    if not table.n_good or not table.n_defect:
        return {"image_auroc": None, "image_auprc": None, "best_f1": None, "best_f1_threshold": None}
    threshold = table.best_f1_threshold()
    return {"image_auroc": table.auroc(), "image_auprc": table.auprc(), "best_f1": table.at(threshold).f1,
            "best_f1_threshold": threshold}


def _as_defect_mask(labels: np.ndarray) -> np.ndarray:
    if labels.dtype == bool:
        return labels
    if np.issubdtype(labels.dtype, np.number):
        return labels.astype(bool)
    return labels.astype(str) == DEFECT


# -- pixel level --------------------------------------------------------------------------------

def pixel_auroc(anomaly_maps: np.ndarray, masks: np.ndarray) -> float | None:
    """AUROC over all pixels of all images; ``None`` when no pixel is marked defective."""
    truth = np.asarray(masks).ravel() > 0.5
    if not truth.any() or truth.all():
        return None
    return ThresholdTable(np.asarray(anomaly_maps, dtype=np.float64).ravel(), truth).auroc()


def pixel_aupro(anomaly_maps: np.ndarray, masks: np.ndarray, max_false_positive_rate: float = 0.3,
                steps: int = 2000) -> float | None:
    """Area under the per-region-overlap curve up to ``max_false_positive_rate``, normalised to [0, 1].

    As in the MVTec AD papers: each connected defect region counts equally, whatever its size. The
    threshold sweep uses ``steps`` quantiles of the anomaly scores.
    """
    from scipy import ndimage

    maps = np.asarray(anomaly_maps, dtype=np.float64)
    truth = np.asarray(masks) > 0.5
    if not truth.any() or truth.all():
        return None
    regions = np.zeros(truth.shape, dtype=np.int64)
    region_count = 0
    for index in range(len(truth)):
        labelled, found = ndimage.label(truth[index])
        regions[index] = np.where(labelled > 0, labelled + region_count, 0)
        region_count += found
    edges = np.unique(np.quantile(maps, np.linspace(0.0, 1.0, steps + 1)))
    bins = np.searchsorted(edges, maps, side="right") - 1   # bin b holds scores >= edges[b]
    size = len(edges)
    negative_counts = np.bincount(bins[~truth], minlength=size)
    region_counts = np.bincount((regions[truth] - 1) * size + bins[truth], minlength=region_count * size)
    region_counts = region_counts.reshape(region_count, size)
    # at threshold edges[b], a pixel is flagged when its bin is >= b: reverse cumulative sums
    false_positive_rate = np.cumsum(negative_counts[::-1])[::-1] / max(negative_counts.sum(), 1)
    overlap = np.cumsum(region_counts[:, ::-1], axis=1)[:, ::-1] / region_counts.sum(axis=1, keepdims=True)
    per_region_overlap = overlap.mean(axis=0)
    # walk the curve from the strictest threshold down; FPR and overlap never decrease on the way
    false_positive_rate = np.concatenate([[0.0], false_positive_rate[::-1]])
    per_region_overlap = np.concatenate([[0.0], per_region_overlap[::-1]])
    limit = max_false_positive_rate
    cut = int(np.searchsorted(false_positive_rate, limit, side="right"))
    fpr_kept, pro_kept = false_positive_rate[:cut], per_region_overlap[:cut]
    if cut < len(false_positive_rate):
        before, after = cut - 1, cut
        share = (limit - false_positive_rate[before]) / (false_positive_rate[after] - false_positive_rate[before])
        fpr_kept = np.append(fpr_kept, limit)
        pro_kept = np.append(pro_kept, per_region_overlap[before] + share * (
            per_region_overlap[after] - per_region_overlap[before]))
    return float(np.trapezoid(pro_kept, fpr_kept) / limit)
