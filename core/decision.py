"""The accept/reject decision: one object that the command line, every page and the report use.

The rule, everywhere: a higher score is more anomalous. With a threshold ``t`` a part is ``NG``
(rejected) when ``score >= t``; with a review band starting at ``r <= t`` it is ``REVIEW`` when
``r <= score < t``; below that it is ``OK``. A frame that fails the frame check
(:mod:`core.data.frame_check`), a file that could not be read, or a score that is not a finite number
is ``INVALID``: counted as a reject, with the reason. The gate never passes what it could not
measure.

**The primary score.** Each detector has one score column that decides by default, fixed in
advance. For the autoencoders it is :data:`PRIMARY_SCORE`, ``map_max``: the largest value of the
absolute residual after a light Gaussian smoothing (σ = 1 px). It was chosen by measurement across
every image set the project has — the three generated sets and four sets made from real
photographs, an NCAE and a CAE on each (``python -m benchmarks.primary_score``, recorded in
``benchmarks/recorded/primary_score.json``) — never by its AUROC on one set's test images:

- it must grow with the amount of error (scale-sensitive). ``kurtosis`` and ``skewness`` describe
  only the error's shape: a black, white, 1×1 or pure-noise frame can score lower than a good
  part, and on the real brick photographs ``kurtosis`` ranks defects *below* good parts (0.44);
- over the 14 set × network pairs, ``map_max`` has the best mean image AUROC of the single
  statistics (0.788; ``std`` 0.759, ``max`` 0.750, ``mse`` 0.742, ``mean`` 0.687) and a worst case
  (0.617) no lower than ``mse``'s. A small defect barely moves an image-wide average such as
  ``mse`` (0.85 on the generated castings, where ``map_max`` gives 0.98).
- no fusion earned the place: the fused ``stat_distance`` (mean 0.747) and simpler fusions of
  one-sided z-scores (0.784–0.788) are clearly below the best single statistic on the object set
  and on the granite photographs (see :mod:`core.detectors.autoencoder.stat_distance`).

**The default threshold** is set from good images only, the *calibration* share of the training
images (:class:`core.detectors.base.GoodImageSplit`: never trained on, and not the images that chose
the epoch): the lowest threshold at which a new good part is expected to be rejected with probability
at most :data:`DEFAULT_FALSE_REJECT_RATE`, by the order-statistic bound ``(r + 1) / (n + 1)`` for r of
n calibration images at or above it. Below 99 images that is simply above the highest of them, which
rejects rather than passes when in doubt; the decision's basis says the rate to expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VERDICTS = ("OK", "REVIEW", "NG", "INVALID")
REJECTING_VERDICTS = ("NG", "INVALID")
PRIMARY_SCORE = "map_max"
DEFAULT_FALSE_REJECT_RATE = 0.01


def is_finite_number(value) -> bool:
    """Whether ``value`` is a finite int or float. ``True``/``False`` are not numbers here: in a file a
    person or a program wrote, they are a mistake, not 1 and 0."""
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            and math.isfinite(float(value)))


def finite_number(value, what: str) -> float:
    """``value`` as a float, or ``ValueError`` naming ``what`` when it is not a finite number."""
    if not is_finite_number(value):
        kind = "a finite number" if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
        raise ValueError(f"{what} must be {kind}, got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class Decision:
    """Score column, threshold and optional review band; ``basis`` says in words how it was set."""

    column: str
    threshold: float
    review_from: float | None = None
    basis: str = ""

    def __post_init__(self):
        if not isinstance(self.column, str) or not self.column:
            raise ValueError(f"The score column must be a name, got {self.column!r}.")
        object.__setattr__(self, "threshold", finite_number(self.threshold, "The threshold"))
        if self.review_from is not None:
            review_from = finite_number(self.review_from, "The start of the review band")
            if review_from > self.threshold:
                raise ValueError(f"The review band starts at {review_from:g}, above the threshold "
                                 f"{self.threshold:g}; it must start at or below it.")
            object.__setattr__(self, "review_from", review_from)

    def verdicts(self, scores) -> np.ndarray:
        """OK / REVIEW / NG per score; a score that is not a finite number is INVALID."""
        scores = np.asarray(scores, dtype=np.float64)
        review_from = self.threshold if self.review_from is None else self.review_from
        verdicts = np.where(scores >= self.threshold, "NG", np.where(scores >= review_from, "REVIEW", "OK"))
        return np.where(np.isfinite(scores), verdicts, "INVALID").astype(object)

    def judge(self, scores, invalid_reasons=None) -> tuple[np.ndarray, np.ndarray]:
        """Verdicts and one reason per image; ``invalid_reasons`` (``""`` where none) forces INVALID."""
        scores = np.asarray(scores, dtype=np.float64)
        verdicts = self.verdicts(scores)
        reasons = np.array([self._reason(verdict, score) for verdict, score in zip(verdicts, scores)], dtype=object)
        if invalid_reasons is not None:
            forced = np.array([bool(reason) for reason in invalid_reasons], dtype=bool)
            verdicts = np.where(forced, "INVALID", verdicts).astype(object)
            reasons = np.where(forced, np.asarray(list(invalid_reasons), dtype=object), reasons).astype(object)
        return verdicts, reasons

    def _reason(self, verdict: str, score: float) -> str:
        if verdict == "INVALID":
            return f"{self.column} could not be computed"
        if verdict == "NG":
            return f"{self.column} {score:.6g} ≥ threshold {self.threshold:.6g}"
        if verdict == "REVIEW":
            return f"{self.column} {score:.6g} in the review band from {self.review_from:.6g}"
        return ""

    def describe(self) -> str:
        band = f", review from {self.review_from:.6g}" if self.review_from is not None else ""
        return f"{self.column} ≥ {self.threshold:.6g} → NG{band}"

    def to_json(self) -> dict:
        return {"column": self.column, "threshold": self.threshold, "review_from": self.review_from,
                "basis": self.basis}

    @classmethod
    def from_json(cls, payload) -> "Decision":
        if not isinstance(payload, dict):
            raise ValueError("A decision must be a JSON object.")
        basis = payload.get("basis", "")
        return cls(payload.get("column"), payload.get("threshold"), payload.get("review_from"),
                   basis if isinstance(basis, str) else "")


def threshold_rejecting_at_most(sorted_good_scores: np.ndarray, allowed: int) -> float:
    """The lowest threshold that rejects at most ``allowed`` of the good scores (sorted, ascending)."""
    count = len(sorted_good_scores)
    if not count:
        raise ValueError("A false-reject threshold needs at least one good sample.")
    if allowed >= count:
        return float(sorted_good_scores[0])
    # reject at most `allowed` good parts: the threshold must sit above the (n - allowed)-th score
    boundary = sorted_good_scores[count - allowed - 1]
    above = sorted_good_scores[sorted_good_scores > boundary]
    if len(above):
        return float(above[0])
    # the next float32 above the boundary, not the next float64: the exported inspector compares in float32, where a
    # float64 step would round back onto the boundary and reject the very part it lets through here
    return float(np.nextafter(np.float32(boundary), np.float32(np.inf)))


def default_decision(held_out_scores, column: str = PRIMARY_SCORE,
                     false_reject_rate: float = DEFAULT_FALSE_REJECT_RATE) -> Decision:
    """The decision a run ships with: ``column`` at a target false-reject rate on held-out good images."""
    scores = np.asarray(held_out_scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if not len(scores):
        raise ValueError("A default threshold needs held-out good images with finite scores.")
    if not 0 < false_reject_rate < 1:
        raise ValueError(f"The false-reject rate must be between 0 and 1, got {false_reject_rate!r}.")
    count = len(scores)
    # An order-statistic bound, not the empirical quantile: with r of n held-out images at or above the
    # threshold, a new good part exchangeable with them lands there with probability (r + 1) / (n + 1), so
    # the threshold may let at most r = floor(rate * (n + 1)) - 1 of them through. The empirical share r / n is
    # optimistic on a few dozen images; below 1 / rate - 1 images no r qualifies and the threshold sits above
    # the highest of them.
    allowed = max(0, math.floor(false_reject_rate * (count + 1) + 1e-9) - 1)
    threshold = threshold_rejecting_at_most(np.sort(scores), allowed)
    rejected = int((scores >= threshold).sum())
    expected = (rejected + 1) / (count + 1)
    basis = (f"at most {false_reject_rate:.0%} false rejects expected, from {count} held-out good training images "
             f"(no defect images used): expect about {100 * expected:.1f} % false rejects on new good parts"
             # with no held-out image allowed through, more images are the only way to a tighter threshold
             + ("; add good images for a tighter figure" if allowed == 0 else ""))
    return Decision(column, threshold, None, basis)
