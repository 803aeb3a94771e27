import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from core.decision import Decision, default_decision
from core.evaluation.metrics import ThresholdTable, pixel_aupro, pixel_auroc, threshold_summary


def _tied_scores(seed=0, n=300):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    scores = np.round(rng.normal(labels * 1.2, 1.0), 1)  # rounding makes many ties across classes
    return scores, labels


def _brute_force(scores, labels, threshold):
    rejected = scores >= threshold
    tp, fp = int(np.sum(rejected & labels)), int(np.sum(rejected & ~labels))
    fn, tn = int(np.sum(~rejected & labels)), int(np.sum(~rejected & ~labels))
    return tp, fp, tn, fn


@pytest.mark.parametrize("seed", range(4))
def test_areas_match_scikit_learn_with_ties(seed):
    scores, labels = _tied_scores(seed)
    table = ThresholdTable(scores, labels)
    assert table.auroc() == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert table.auprc() == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    fpr, tpr, thresholds = table.roc_curve()
    reference = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, reference[0])
    np.testing.assert_allclose(tpr, reference[1])
    np.testing.assert_allclose(thresholds[1:], reference[2][1:])


def test_any_threshold_matches_a_brute_force_count():
    scores, labels = _tied_scores(5)
    table = ThresholdTable(scores, np.where(labels, "defect", "good"))
    for threshold in np.r_[np.unique(scores), np.unique(scores) + 0.05, -10, 10]:
        point = table.at(threshold)
        tp, fp, tn, fn = _brute_force(scores, labels, threshold)
        assert (point.true_positives, point.false_positives, point.true_negatives, point.false_negatives) == \
            (tp, fp, tn, fn)
        assert point.false_reject_rate == pytest.approx(fp / (fp + tn))
        assert point.escape_rate == pytest.approx(fn / (fn + tp))
        assert point.accuracy == pytest.approx((tp + tn) / len(scores))
        if tp + fp:
            assert point.precision == pytest.approx(tp / (tp + fp))
        assert point.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert point.confusion_matrix().tolist() == [[tn, fp], [fn, tp]]


def test_presets_are_optimal_over_every_candidate_threshold():
    scores, labels = _tied_scores(7)
    table = ThresholdTable(scores, labels)
    candidates = np.r_[np.unique(scores), np.inf]

    def metric(threshold, name):
        tp, fp, tn, fn = _brute_force(scores, labels, threshold)
        return {"f1": 2 * tp / (2 * tp + fp + fn), "j": tp / (tp + fn) - fp / (fp + tn),
                "cost": 5 * fn + 1 * fp}[name]

    assert metric(table.best_f1_threshold(), "f1") == pytest.approx(max(metric(t, "f1") for t in candidates))
    assert metric(table.youden_threshold(), "j") == pytest.approx(max(metric(t, "j") for t in candidates))
    assert metric(table.minimum_cost_threshold(5, 1), "cost") == min(metric(t, "cost") for t in candidates)


def test_zero_escape_is_the_highest_threshold_that_rejects_every_defect():
    scores, labels = _tied_scores(2)
    table = ThresholdTable(scores, labels)
    threshold = table.zero_escape_threshold()
    assert table.at(threshold).escape_rate == 0.0
    assert table.at(np.nextafter(threshold, np.inf)).escape_rate > 0.0


def test_target_false_reject_rate_uses_good_images_only_and_works_without_defects():
    good = np.array([0.1, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    table = ThresholdTable(good, np.zeros(10, bool))
    for rate in (0.0, 0.1, 0.15, 0.2, 0.5, 0.85, 1.0):
        threshold = table.target_false_reject_threshold(rate)
        point = table.at(threshold)
        assert point.false_reject_rate <= rate + 1e-12
        lower = good[good < threshold]
        if len(lower):  # one step lower would break the target, so the threshold is the lowest possible
            assert table.at(lower.max()).false_reject_rate > rate
    assert table.target_false_reject_threshold(0.0) > good.max()
    assert table.at(0.5).escape_rate != table.at(0.5).escape_rate  # NaN: no defects to escape


def test_minimum_cost_may_reject_nothing_when_false_rejects_are_expensive():
    table = ThresholdTable([0.1, 0.2, 0.3], ["good", "defect", "good"])
    assert table.at(table.minimum_cost_threshold(escape_cost=1, false_reject_cost=100)).true_positives == 0


def test_curves_refuse_a_single_class_with_a_clear_message():
    table = ThresholdTable([0.1, 0.2], ["good", "good"])
    with pytest.raises(ValueError, match="needs both good and defect samples"):
        table.auroc()
    assert threshold_summary([0.1, 0.2], ["good", "good"])["image_auroc"] is None


def test_review_band_gives_three_verdicts_and_what_cannot_be_measured_is_invalid():
    decision = Decision("max", 0.7, 0.4)
    assert decision.verdicts([0.1, 0.4, 0.69, 0.7, 0.9, float("nan"), float("inf")]).tolist() == \
        ["OK", "REVIEW", "REVIEW", "NG", "NG", "INVALID", "INVALID"]
    verdicts, reasons = decision.judge([0.1, 0.9, 0.1], ["", "", "frame check: blank frame"])
    assert verdicts.tolist() == ["OK", "NG", "INVALID"]
    assert reasons[0] == "" and "0.9 ≥ threshold 0.7" in reasons[1] and reasons[2] == "frame check: blank frame"
    with pytest.raises(ValueError, match="start at or below"):
        Decision("max", 0.7, 0.8)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), True, "0.5", None])
def test_a_decision_refuses_thresholds_that_are_not_finite_numbers(bad):
    with pytest.raises(ValueError, match="must be a"):
        Decision("max", bad)
    with pytest.raises(ValueError, match="must be a"):
        Decision("max", 0.5, bad if bad is not None else float("nan"))


def test_the_default_decision_uses_good_images_only_and_rejects_above_all_of_a_few():
    held_out = [0.10, 0.12, 0.11, 0.30, 0.09]
    decision = default_decision(held_out, "map_max", false_reject_rate=0.01)
    # 1 % of 5 images allows no false reject: the threshold sits just above the highest good score
    assert decision.threshold > 0.30 and decision.verdicts(held_out).tolist() == ["OK"] * 5
    assert "5 held-out good" in decision.basis
    # 5 % of 200 would be 10 of them, but a new part would then be rejected with probability 11/201 > 5 %
    assert default_decision(np.linspace(0, 1, 200), "map_max", 0.05).verdicts(np.linspace(0, 1, 200)).tolist().count(
        "NG") == 9


@pytest.mark.parametrize("count", [5, 36, 98, 99, 100, 150, 199, 200, 1000, 2001])
@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_the_default_threshold_keeps_a_new_good_part_under_the_rate_by_the_order_statistic_bound(count, rate):
    """With r of n held-out scores at or above the threshold, a new good part is rejected with probability
    (r + 1) / (n + 1): the threshold lets through as many as that bound allows, and not one more."""
    scores = np.random.default_rng(count).normal(size=count)
    rejected = int((scores >= default_decision(scores, "map_max", rate).threshold).sum())
    assert (rejected + 1) / (count + 1) <= rate + 1e-12 or rejected == 0
    assert (rejected + 2) / (count + 1) > rate


def reference_aupro(maps, masks, limit=0.3, steps=400):
    """Straightforward version: loop over thresholds and regions."""
    regions = []
    for index in range(len(masks)):
        labelled, count = ndimage.label(masks[index])
        regions += [(index, labelled == region) for region in range(1, count + 1)]
    negatives = masks == 0
    fprs, pros = [], []
    for threshold in np.quantile(maps, np.linspace(0, 1, steps + 1)):
        flagged = maps >= threshold
        fprs.append(flagged[negatives].mean())
        pros.append(np.mean([flagged[index][region].mean() for index, region in regions]))
    fprs, pros = np.r_[0.0, fprs[::-1]], np.r_[0.0, pros[::-1]]
    area = 0.0
    for (x0, y0), (x1, y1) in zip(zip(fprs, pros), zip(fprs[1:], pros[1:])):
        if x0 >= limit:
            break
        if x1 > limit:  # cut the last segment at the limit
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def test_aupro_on_hand_checked_cases():
    masks = np.zeros((2, 10, 10))
    masks[0, 1:3, 1:3] = 1
    masks[1, 5:9, 5:9] = 1
    assert pixel_aupro(masks * 2.0 + 0.0, masks) == pytest.approx(1.0, abs=1e-3)  # perfect map
    inverted = 1.0 - masks
    assert pixel_aupro(inverted, masks) == pytest.approx(0.0, abs=1e-3)
    # a map that finds only the small region: each region counts equally, so the overlap is 0.5 at
    # FPR 0, then rises linearly to 1 at FPR 1 (0.65 at FPR 0.3): area (0.5 + 0.65) / 2 = 0.575
    half = np.zeros_like(masks)
    half[0, 1:3, 1:3] = 1
    assert pixel_aupro(half, masks) == pytest.approx(0.575, abs=1e-9)
    assert pixel_aupro(half, np.zeros_like(masks)) is None


def test_aupro_matches_a_straightforward_reference():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 24, 24))
    masks[0, 3:8, 3:9] = 1
    masks[1, 10:20, 2:5] = 1
    masks[1, 15:18, 15:18] = 1
    maps = rng.random(masks.shape) * 0.8 + masks * rng.random(masks.shape) * 0.6
    assert pixel_aupro(maps, masks, steps=400) == pytest.approx(reference_aupro(maps, masks), abs=0.01)


def test_pixel_auroc_matches_scikit_learn():
    rng = np.random.default_rng(1)
    masks = (rng.random((2, 8, 8)) < 0.2).astype(float)
    maps = rng.random((2, 8, 8)) + masks * 0.3
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


def test_a_threshold_just_above_a_score_stays_above_it_in_float32():
    """The exported inspector compares float32 scores with a float32 threshold: the step above the highest good
    score must survive that rounding, or the inspector rejects the part ``score`` passes."""
    for highest in (np.float32(1.6792011), np.float32(0.1), np.float32(7.0167503)):
        scores = np.array([0.5 * highest, highest], dtype=np.float32)
        threshold = default_decision(scores, "map_max").threshold
        assert np.float32(threshold) > highest and threshold > float(highest)
        assert default_decision(scores, "map_max").verdicts(scores).tolist() == ["OK", "OK"]
