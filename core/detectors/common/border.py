"""Border calibration: what good images show at each distance from the border, to rescale a patch score by.

Near the border a network's receptive field sees padding, and a self-comparison (the lattice
detector) is one-sided: good images score differently there. Each ring of positions at the same
distance from the border gets its own mean and spread from held-out good images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

@dataclass(frozen=True)
class BorderCalibration:
    """Patch distances in units of what good images show at the same distance from the border.

    A CNN sees padding near the image border, so border patches of a good image lie farther from
    the bank than inner ones, and the image score (the largest patch distance) ends up measuring
    the border: on the real-photo sets EfficientNet-Lite0 gave brick 0.61 image AUROC. Grouping
    the grid into rings by distance from the nearest edge (the last ring: everything further in)
    and rescaling each patch's distance by its ring's mean and standard deviation over held-out
    good images gives brick 1.00, burlap 1.00, granite 1.00 and walnut 1.00. The ring statistics
    pool every position of a ring over all held-out images, so a few images suffice. With it the
    image score is the largest calibrated distance; the paper's re-weighting is not applied.
    """

    mean: np.ndarray
    spread: np.ndarray
    rings: int = 4

    @classmethod
    def fit(cls, distances: np.ndarray, rings: int = 4) -> "BorderCalibration":
        ring = border_rings(*distances.shape[1:], rings)
        mean = np.array([distances[:, ring == r].mean() for r in range(rings + 1)], np.float32)
        spread = np.array([distances[:, ring == r].std() for r in range(rings + 1)], np.float32)
        return cls(mean, np.maximum(spread, 1e-6), rings)

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "spread": self.spread.tolist(), "rings": int(self.rings)}

    @classmethod
    def from_json(cls, payload: dict) -> "BorderCalibration":
        rings = int(payload["rings"])
        mean, spread = (np.array(payload[key], np.float32) for key in ("mean", "spread"))
        if not 0 <= rings <= 64 or mean.shape != (rings + 1,) or spread.shape != (rings + 1,) or \
                not (np.isfinite(mean).all() and np.isfinite(spread).all() and (spread > 0).all()):
            raise ValueError("the border calibration is damaged")
        return cls(mean, spread, rings)

    def apply(self, distances: np.ndarray) -> np.ndarray:
        """Calibrated ``(n, h, w)`` distance grids."""
        count, height, width = distances.shape
        return self.apply_at(distances.reshape(count, -1), np.arange(height * width), height, width).reshape(
            distances.shape)

    def apply_at(self, distances: np.ndarray, positions: np.ndarray, height: int, width: int) -> np.ndarray:
        """:meth:`apply` for some patches of an ``height × width`` grid: ``positions`` index the flattened grid."""
        mean, spread = (grid.reshape(-1)[positions] for grid in self.grids(height, width))
        return ((np.asarray(distances, np.float32) - mean) / spread).astype(np.float32)

    def grids(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Each position's ring mean and spread as ``height × width`` grids: what :meth:`apply_at` rescales by, and
        what the exported inspectors carry as constants."""
        ring = border_rings(height, width, self.rings)
        return self.mean[ring], self.spread[ring]


def border_rings(height: int, width: int, rings: int) -> np.ndarray:
    """Each grid position's distance from the nearest edge, capped at ``rings``."""
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.minimum(np.minimum(np.minimum(rows, columns), np.minimum(height - 1 - rows, width - 1 - columns)), rings)
