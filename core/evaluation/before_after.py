"""Before and after a retraining: two runs judged on the same test images, each at its own default decision.

The test images are the corrected data set's (:func:`core.runs.corrections.corrected_dataset`): the images
marked good have joined the new run's training set and so are judged by neither run; excluded images are
left out; labels are the corrected ones.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def compare_runs(before, after, dataset: Dataset, names: tuple[str, str] = ("before", "after")) -> BeforeAfter:
    from core.runs.pipeline import score_samples

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
    return BeforeAfter(cards, curves, changed, len(samples))
