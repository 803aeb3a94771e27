"""Before and after a retraining: two runs judged on the same test images, each at its own default decision.

The test images are the corrected data set's (:func:`core.runs.corrections.corrected_dataset`): the images
marked good have joined the new run's training set and so are judged by neither run; excluded images are
left out; labels are the corrected ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from core.data.datasets import Dataset
from core.evaluation.metrics import ThresholdTable
from core.evaluation.outcomes import outcomes


@dataclass
class BeforeAfter:
    cards: pd.DataFrame                       # one row per figure, columns "before" and "after"
    curves: dict[str, tuple]                  # name -> (false-reject rate, recall, AUROC), for roc_comparison
    changed: pd.DataFrame                     # the images whose verdict changed
    images: int
    worse: dict[str, str] = field(default_factory=dict)   # figure -> what the second run does worse, in a sentence


# how much a figure may move before the second run is called worse: one image's worth on a small set is noise
# only below these
TOLERANCES = {"image AUROC": 0.01, "recall": 0.02, "F1": 0.02, "false-reject rate": 0.02, "escape rate": 0.02}
HIGHER_IS_BETTER = {"image AUROC": True, "recall": True, "F1": True, "false-reject rate": False, "escape rate": False}


def what_got_worse(before: dict, after: dict, good_images: int) -> dict[str, str]:
    """One plain sentence per figure on which ``after`` is worse than ``before`` beyond :data:`TOLERANCES`; a
    figure that exists before and cannot be computed after (no part rejected: no precision, no F1) is worse."""
    sentences = {}
    for name, tolerance in TOLERANCES.items():
        old, new = before.get(name), after.get(name)
        if old is None or old != old:
            continue
        where = (f" on the {good_images} good test images neither run was trained on" if name == "false-reject rate"
                 else " on the same test images")
        if new is None or new != new:
            sentences[name] = (f"{name} cannot be computed for the new run (it rejects no part){where}; "
                               f"it was {_figure(name, old)}.")
            continue
        change = new - old if HIGHER_IS_BETTER[name] else old - new
        if change < -tolerance:
            sentences[name] = (f"{name} {'falls' if HIGHER_IS_BETTER[name] else 'rises'} from {_figure(name, old)} "
                               f"to {_figure(name, new)}{where}.")
    return sentences


def _figure(name: str, value: float) -> str:
    return f"{value:.3f}" if name in ("image AUROC", "F1") else f"{100 * value:.1f} %"


def convergence_note(history: dict, max_epochs: int | None) -> str:
    """A sentence when a training stopped far from convergence, else ``""``: it ran every epoch it was allowed
    (early stopping never ended it) and its held-out loss still fell by more than 5 % over the last quarter
    of the epochs, or it ran fewer than 5 epochs."""
    losses = [value for value in (history or {}).get("val_loss") or (history or {}).get("loss") or []
              if value == value]
    if not losses or not max_epochs or len(losses) < max_epochs:
        return ""
    if len(losses) < 5:
        return (f"It trained for only {len(losses)} epoch(s), far too few to converge: its scores are not to be "
                "trusted. Train again with the run's usual number of epochs.")
    quarter = max(2, len(losses) // 4)
    earlier, last = min(losses[:-quarter]), min(losses[-quarter:])
    if earlier > 0 and last < 0.95 * earlier:
        return (f"It stopped far from convergence: its held-out loss was still falling ({100 * (1 - last / earlier):.0f} % "
                f"over the last {quarter} of its {len(losses)} epochs) when the epochs ran out. Train again with "
                "more epochs.")
    return ""


def compare_runs(before, after, dataset: Dataset, names: tuple[str, str] = ("before", "after")) -> BeforeAfter:
    from core.evaluation.scoring import score_samples

    samples = [sample for sample in dataset.test if sample.label in ("good", "defect")]
    tables, figures, verdicts, curves = {}, {}, {}, {}
    for name, detector in zip(names, (before, after)):
        scored = score_samples(detector, dataset, samples).table
        decision = detector.default_decision_
        column = decision.column
        tables[name] = scored
        verdicts[name] = decision.verdicts(scored[column].to_numpy())
        result = outcomes(scored[column], scored["label"], decision.threshold, decision.review_from)
        table = ThresholdTable(scored[column].to_numpy(), scored["label"].to_numpy())
        both = bool(table.n_good and table.n_defect)
        f1 = (2 * result.precision * result.recall / (result.precision + result.recall)
              if result.precision + result.recall > 0 else float("nan"))
        figures[name] = {"image AUROC": table.auroc() if both else float("nan"), "recall": result.recall,
                         "precision": result.precision, "F1": f1, "false-reject rate": result.false_reject_rate,
                         "escape rate": result.escape_rate, "threshold": decision.threshold,
                         "score column": column}
        if both:
            false_positive_rate, true_positive_rate, _ = table.roc_curve()
            curves[name] = (false_positive_rate, true_positive_rate, table.auroc())
    first, second = names
    changed = pd.DataFrame({
        "path": tables[first]["path"], "label": tables[first]["label"],
        f"verdict {first}": verdicts[first], f"verdict {second}": verdicts[second],
        f"score {first}": tables[first][figures[first]["score column"]].to_numpy(),
        f"score {second}": tables[second][figures[second]["score column"]].to_numpy()})
    changed = changed[changed[f"verdict {first}"] != changed[f"verdict {second}"]].reset_index(drop=True)
    cards = pd.DataFrame(figures).loc[["image AUROC", "recall", "precision", "F1", "false-reject rate",
                                       "escape rate", "threshold", "score column"]]
    good_images = sum(sample.label == "good" for sample in samples)
    return BeforeAfter(cards, curves, changed, len(samples), what_got_worse(figures[first], figures[second], good_images))
