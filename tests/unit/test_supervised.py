import numpy as np
import pandas as pd
import pytest

from core.evaluation.supervised import cross_validate, decision_boundary


def _table(seed=0, good=40, defect=20):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "max": np.r_[rng.normal(1.0, 0.3, good), rng.normal(5.0, 0.3, defect)],
        "mean": rng.normal(0, 1, good + defect),   # carries no information
        "label": ["good"] * good + ["defect"] * defect,
    })


@pytest.mark.parametrize("classifier", ["logistic_regression", "gradient_boosting"])
def test_cross_validation_scores_every_image_once_on_stratified_folds(classifier):
    table = _table()
    validation = cross_validate(table, ["max", "mean"], classifier, folds=4)
    assert validation.folds["fold"].tolist() == [1, 2, 3, 4]
    assert (validation.folds["f1"] == 1.0).all() and (validation.folds["accuracy"] == 1.0).all()
    probability = validation.out_of_fold_probability
    assert probability.shape == (60,)
    assert (probability[:40] < 0.5).all() and (probability[40:] > 0.5).all()
    assert validation.summary()["f1"] == {"mean": 1.0, "std": 0.0}


def test_cross_validation_on_noise_is_no_better_than_chance():
    table = _table()
    table["max"] = np.random.default_rng(1).normal(0, 1, len(table))
    validation = cross_validate(table, ["max", "mean"], "logistic_regression", folds=5)
    assert validation.folds["accuracy"].mean() < 0.8


def test_cross_validation_needs_both_classes():
    with pytest.raises(ValueError, match="at least 2 good and 2 defect"):
        cross_validate(_table(defect=1), ["max"], "logistic_regression")
    with pytest.raises(ValueError, match="classifier"):
        cross_validate(_table(), ["max"], "svm")


def test_two_statistic_boundary_separates_where_the_classes_do():
    boundary = decision_boundary(_table(), "max", "mean", resolution=50)
    assert boundary.probability.shape == (50, 50)
    column_left = np.searchsorted(boundary.x, 2.0)
    column_right = np.searchsorted(boundary.x, 4.0)
    assert (boundary.probability[:, column_left] < 0.5).all()
    assert (boundary.probability[:, column_right] > 0.5).all()
