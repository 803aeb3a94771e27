import numpy as np
import pytest
from scipy import stats

from core.detectors.common.residuals import ENTROPY_BINS, STATISTIC_NAMES, residual_maps, residual_statistics


def test_statistics_match_plain_reference_definitions():
    rng = np.random.default_rng(0)
    images = rng.random((4, 12, 12))
    reconstructions = rng.random((4, 12, 12))
    residuals = residual_maps(images, reconstructions)
    values = residual_statistics(residuals)
    assert tuple(values) == STATISTIC_NAMES
    for index in range(4):
        signed = (images[index] - reconstructions[index]).ravel()
        absolute = np.abs(signed)
        histogram, _ = np.histogram(absolute, bins=ENTROPY_BINS, range=(0, 1))
        probability = histogram[histogram > 0] / absolute.size
        expected = {
            "mean": absolute.mean(), "std": absolute.std(), "var": absolute.var(),
            "kurtosis": stats.kurtosis(absolute), "skewness": stats.skew(absolute),
            "range": np.ptp(absolute), "min": absolute.min(), "max": absolute.max(),
            "cumsum": np.cumsum(absolute)[-1], "entropy": -(probability * np.log2(probability)).sum(),
            "mse": np.mean(signed ** 2),
        }
        for name, value in expected.items():
            assert values[name][index] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_a_local_defect_raises_every_oriented_statistic():
    rng = np.random.default_rng(1)
    calm = rng.normal(0, 0.01, (1, 32, 32))
    defect = calm.copy()
    defect[0, 10:13, 10:13] += 0.6
    before, after = residual_statistics(calm), residual_statistics(defect)
    for name in ("mean", "std", "var", "kurtosis", "range", "max", "cumsum", "entropy", "mse"):
        assert after[name][0] > before[name][0], name


def test_constant_residual_gives_finite_shape_statistics():
    values = residual_statistics(np.zeros((2, 8, 8)))
    assert all(np.isfinite(column).all() for column in values.values())
    assert values["kurtosis"][0] == 0.0 and values["entropy"][0] == 0.0
