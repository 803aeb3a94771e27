"""A supervised reference: classifiers over the residual-statistic vector, cross-validated.

This is the classifier route of the MVTec/EfficientNet competition work, on this project's
features: given labelled good *and* defect images, learn good-vs-defect from the residual
statistics with logistic regression and gradient boosting, and measure it honestly with
stratified k-fold cross-validation (every image is scored by a model that never saw it).

It is a reference, not a detector to deploy: it needs labelled defects, and it can only learn
the defect types it has seen, so its figures overstate how it would do on a new kind of defect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SUPERVISED_WARNING = ("Supervised reference: it needs labelled defect images, and it learns the defect types it "
                      "was shown, so it can overfit to them and miss a new kind of defect. The label-free "
                      "detectors do not have that limit.")
CLASSIFIERS = ("logistic_regression", "gradient_boosting")
MIN_PER_CLASS = 2


@dataclass
class CrossValidation:
    """Per-fold figures and out-of-fold defect probabilities for one classifier."""

    classifier: str
    folds: pd.DataFrame            # fold, f1, accuracy
    out_of_fold_probability: np.ndarray

    def summary(self) -> dict:
        return {name: {"mean": float(self.folds[name].mean()), "std": float(self.folds[name].std(ddof=0))}
                for name in ("f1", "accuracy")}


def make_classifier(name: str, seed: int = 0):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logistic_regression":
        # statistics span orders of magnitude (var vs cumsum), so scale before a linear model
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    if name == "gradient_boosting":
        return GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.1, subsample=0.8,
                                          random_state=seed)
    raise ValueError(f"`classifier` must be one of {', '.join(CLASSIFIERS)}, got {name!r}.")


def cross_validate(table: pd.DataFrame, columns, classifier: str, folds: int = 5, seed: int = 0) -> CrossValidation:
    """Stratified ``folds``-fold cross-validation of ``classifier`` on the labelled rows of ``table``."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    features, target = labelled_features(table, columns)
    smallest = int(min(target.sum(), (~target).sum()))
    if smallest < MIN_PER_CLASS:
        raise ValueError(f"Cross-validation needs at least {MIN_PER_CLASS} good and {MIN_PER_CLASS} defect images.")
    folds = min(int(folds), smallest)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    probability = np.zeros(len(target))
    rows = []
    for fold, (train, test) in enumerate(splitter.split(features, target), start=1):
        model = make_classifier(classifier, seed).fit(features[train], target[train])
        probability[test] = model.predict_proba(features[test])[:, 1]
        predicted = probability[test] >= 0.5
        rows.append({"fold": fold, "f1": f1_score(target[test], predicted, zero_division=0.0),
                     "accuracy": accuracy_score(target[test], predicted)})
    return CrossValidation(classifier, pd.DataFrame(rows), probability)


def labelled_features(table: pd.DataFrame, columns) -> tuple[np.ndarray, np.ndarray]:
    labelled = table[table["label"].isin(["good", "defect"])]
    return labelled[list(columns)].to_numpy(dtype=np.float64), (labelled["label"] == "defect").to_numpy()


@dataclass
class DecisionBoundary:
    """Defect probability of a two-statistic logistic regression on a grid, for drawing as a contour."""

    x_column: str
    y_column: str
    x: np.ndarray
    y: np.ndarray
    probability: np.ndarray   # shape (len(y), len(x))


def decision_boundary(table: pd.DataFrame, x_column: str, y_column: str, resolution: int = 120) -> DecisionBoundary:
    """Fit logistic regression on two statistics of the labelled rows and evaluate it over their range."""
    features, target = labelled_features(table, [x_column, y_column])
    if target.all() or not target.any():
        raise ValueError("A decision boundary needs both good and defect images.")
    model = make_classifier("logistic_regression").fit(features, target)
    low, high = features.min(axis=0), features.max(axis=0)
    margin = (high - low) * 0.05 + 1e-12
    x = np.linspace(low[0] - margin[0], high[0] + margin[0], resolution)
    y = np.linspace(low[1] - margin[1], high[1] + margin[1], resolution)
    grid_x, grid_y = np.meshgrid(x, y)
    probability = model.predict_proba(np.column_stack([grid_x.ravel(), grid_y.ravel()]))[:, 1]
    return DecisionBoundary(x_column, y_column, x, y, probability.reshape(grid_x.shape))
