"""``stat_distance``: one label-free score fused from all residual statistics.

It is the robust Mahalanobis distance of an image's statistic vector from the statistic vectors of
held-out good training images (images the network never trained on, so their residuals look like
those of new good parts). Each statistic is first put on a log scale where it is positive and
heavy-tailed, centred on the median and scaled by the MAD; the covariance is then estimated with
the Minimum Covariance Determinant (robust to a stray bad image among the good ones) and shrunk
towards a scaled identity, because the statistics are strongly correlated (``var`` is ``std``²).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf, MinCovDet

from core.residuals import STATISTIC_NAMES

# statistics that are positive and spread over orders of magnitude read better on a log scale
LOG_SCALED = ("mean", "std", "var", "range", "max", "cumsum", "mse")


@dataclass
class StatDistance:
    """Fitted reference for ``stat_distance``; plain arrays so it saves to JSON."""

    columns: tuple[str, ...]
    centre: np.ndarray
    scale: np.ndarray
    location: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, statistics: dict[str, np.ndarray], seed: int = 0) -> "StatDistance":
        columns = tuple(name for name in STATISTIC_NAMES if name in statistics)
        raw = _stack(statistics, columns)
        if len(raw) < 3:
            raise ValueError(f"stat_distance needs at least 3 held-out good images, got {len(raw)}.")
        centre = np.median(raw, axis=0)
        scale = 1.4826 * np.median(np.abs(raw - centre), axis=0)
        scale = np.where(scale > 1e-12, scale, np.maximum(np.abs(centre) * 1e-3, 1e-12))
        standardised = (raw - centre) / scale
        support = np.ones(len(standardised), dtype=bool)
        if len(standardised) > 2 * len(columns):
            try:
                with warnings.catch_warnings():
                    # collinear statistics make MCD's determinant near-singular; shrinkage below handles that
                    warnings.simplefilter("ignore", (RuntimeWarning, UserWarning))
                    support = MinCovDet(random_state=seed, support_fraction=0.8).fit(standardised).support_
            except ValueError:
                pass
        shrunk = LedoitWolf().fit(standardised[support])
        return cls(columns, centre, scale, shrunk.location_, np.linalg.pinv(shrunk.covariance_))

    def distance(self, statistics: dict[str, np.ndarray]) -> np.ndarray:
        standardised = (_stack(statistics, self.columns) - self.centre) / self.scale - self.location
        squared = np.einsum("ij,jk,ik->i", standardised, self.precision, standardised)
        return np.sqrt(np.maximum(squared, 0.0))

    def to_json(self) -> dict:
        return {"columns": list(self.columns), "centre": self.centre.tolist(), "scale": self.scale.tolist(),
                "location": self.location.tolist(), "precision": self.precision.tolist()}

    @classmethod
    def from_json(cls, payload: dict) -> "StatDistance":
        columns = tuple(payload["columns"])
        arrays = {key: np.asarray(payload[key], dtype=np.float64) for key in ("centre", "scale", "location", "precision")}
        width = len(columns)
        if any(arrays[key].shape != (width,) for key in ("centre", "scale", "location")) or \
                arrays["precision"].shape != (width, width):
            raise ValueError("stat_distance reference has inconsistent shapes.")
        return cls(columns, **arrays)


def _stack(statistics: dict[str, np.ndarray], columns) -> np.ndarray:
    matrix = np.column_stack([np.asarray(statistics[name], dtype=np.float64) for name in columns])
    for index, name in enumerate(columns):
        if name in LOG_SCALED:
            matrix[:, index] = np.log(np.maximum(matrix[:, index], 1e-12))
    return matrix
