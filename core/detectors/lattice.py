"""Lattice self-similarity: a detector for periodic surfaces (woven fabric, mesh, knurling, perforated sheet).

A periodic surface repeats itself: shifted by one of its lattice vectors, a good image lands on
itself. So each image is compared with itself, not with a model of the training images:

1. Uneven lighting is taken out (the image minus a wide Gaussian blur of it).
2. The lattice vectors are the strongest peaks of the image's autocorrelation that are not
   parallel to each other (refined to a fraction of a pixel), searched only at the lengths the good
   training images' lattices have, so a surface with another period cannot pass as self-consistent.
3. For each vector, each pixel is compared with the pixels one vector before and one after (cubic
   interpolation, edges repeated); the smaller difference counts, so the edge of a defect is not
   blamed on the good pixels beside it. The map is the mean over the vectors, divided by the image's
   median, so contrast and exposure do not matter, and smoothed.
4. Within one vector of the border only one side of the comparison lies inside the image, so good
   images disagree more there (1.6 against 1.2 in the middle, at 128 px on the woven texture). Each
   pixel is therefore rescaled by the mean and spread that the good training images show at the
   same distance from the border (the memory bank's :class:`~core.detectors.memory_bank.BorderCalibration`).
   Without it the border decided the score: 0.90 image AUROC on the woven texture instead of 1.00.
   ``lattice_score`` is the largest rescaled value.

What it sees that features learned elsewhere miss: a row of the weave shifted by half a period
is locally a perfect weave, and ImageNet features see nothing there; but it does not line up with
the rows one period away. What it cannot do: judge a surface that does not repeat (stone, wood,
a part on a background). Its figures on every set are in the README's "Which detector?" table.

Everything here is plain numpy arithmetic with fixed shapes, so the exported inspector
(:mod:`core.runs.export`) computes the same numbers in TensorFlow.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.detectors.base import MapsFromScore, ScoreResult, TrainingCancelled, map_scales, saved_parameters
from core.detectors.memory_bank import BorderCalibration

LATTICE_COLUMN = "lattice_score"
DEFAULT_LATTICE_INPUT_SIZE = 128
# lighting is what varies over more than a few periods: the blur that estimates it (pixels at 128 px)
LIGHTING_SIGMA = 8.0
# peaks are looked for up to a quarter of the image away, so that every shifted copy mostly overlaps the image
LONGEST_VECTOR_SHARE = 0.25
SHORTEST_VECTOR = 3.0
# a peak within this angle of a vector already chosen is the same direction (a multiple, or its neighbour)
PARALLEL_SINE = 0.3
# the lengths searched at scoring: this much shorter than the good images' shortest vector, longer than their longest
LENGTH_MARGIN = 0.2
# the map of an image with no lattice at the expected lengths, or none at all (a blank frame): far above any threshold
NO_LATTICE = 1e6


class LatticeDetector(MapsFromScore):
    """Compares each image with itself shifted by its lattice vectors; ``fit(good_images)``, ``score(images)``.

    Parameters:
        input_size: side of the square grey image it works on.
        directions: how many lattice vectors (non-parallel autocorrelation peaks) each image is compared along.
        map_sigma: Gaussian smoothing of the map in pixels, before the border rescaling (``None``: size / 64).
    """

    kind = "lattice"
    primary_score = LATTICE_COLUMN
    score_columns = (LATTICE_COLUMN,)
    channels = 1

    def __init__(self, input_size=DEFAULT_LATTICE_INPUT_SIZE, directions=3, map_sigma=None, seed=0):
        self.input_size = input_size
        self.directions = directions
        self.map_sigma = map_sigma
        self.seed = seed

    def get_params(self) -> dict:
        return {"input_size": self.input_size, "directions": self.directions, "map_sigma": self.map_sigma,
                "seed": self.seed}

    def fit(self, good_images: np.ndarray, image_sizes=None, progress=None, should_stop=None) -> "LatticeDetector":
        """Learn from the good images the lengths of their lattice vectors and how much they disagree with
        themselves at each distance from the border; set the default decision on 15 % of them held out (as
        the other detectors do)."""
        from core.data.frame_check import FrameLimits
        from core.detectors.memory_bank import held_out_split
        from core.evaluation.decision import default_decision

        started = time.perf_counter()
        images = _grey_stack(good_images)
        if len(images) < 2:
            raise ValueError(f"The lattice detector needs at least 2 good images, got {len(images)}.")
        held_out, fitting = held_out_split(images, int(self.seed))
        lengths = []
        for image in fitting:
            if should_stop is not None and should_stop():
                raise TrainingCancelled("Training was cancelled.")
            vectors = lattice_vectors(detrended(image), int(self.directions), *self._search_range())
            lengths.extend(np.hypot(vectors[:, 0], vectors[:, 1]))
        if not lengths:
            raise ValueError("No repeating pattern was found in the good images: the lattice detector is for "
                             "periodic surfaces (fabric, mesh, knurling); choose another detector.")
        self.vector_lengths_ = np.asarray(lengths, dtype=np.float64)
        maps = self._uncalibrated_maps(fitting, should_stop)
        judged = np.isfinite(maps).all(axis=(1, 2)) & (maps < NO_LATTICE).all(axis=(1, 2))
        if not judged.any():
            raise ValueError("No good image showed its lattice at the lengths the others have: the lattice "
                             "detector is for periodic surfaces; choose another detector.")
        # within one lattice vector of the border the comparison is one-sided: ring by ring out to the longest
        self.border_calibration_ = BorderCalibration.fit(maps[judged], rings=min(64, int(np.ceil(self.length_range()[1]))))
        self.n_train_images_, self.n_held_out_images_ = len(fitting), len(held_out)
        self.frame_limits_ = FrameLimits.fit(images, image_sizes)
        self.default_decision_ = (default_decision(self.score(held_out).table[LATTICE_COLUMN], LATTICE_COLUMN)
                                  if len(held_out) else None)
        self.map_scales_ = map_scales(self.default_decision_) if self.default_decision_ is not None else None
        self.training_seconds_ = time.perf_counter() - started
        return self

    def score(self, images: np.ndarray, with_maps: bool = False) -> ScoreResult:
        if not hasattr(self, "border_calibration_"):
            raise RuntimeError("This LatticeDetector is not fitted yet; call fit() first.")
        maps = self._uncalibrated_maps(_grey_stack(images))
        maps = self.border_calibration_.apply(maps) if len(maps) else maps.astype(np.float32)
        table = pd.DataFrame({LATTICE_COLUMN: maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)})
        return ScoreResult(table, maps) if with_maps else ScoreResult(table)

    def _uncalibrated_maps(self, images: np.ndarray, should_stop=None) -> np.ndarray:
        shortest, longest = self.length_range()
        maps = []
        for image in images:
            if should_stop is not None and should_stop():
                raise TrainingCancelled("Training was cancelled.")
            maps.append(lattice_map(image, int(self.directions), shortest, longest, self._sigma()))
        return np.stack(maps) if maps else np.zeros((0, self.input_size, self.input_size))

    def length_range(self) -> tuple[float, float]:
        """The lattice vector lengths looked for at scoring: the good images' range, widened by :data:`LENGTH_MARGIN`."""
        low, high = self._search_range()
        shortest = max(low, float(np.percentile(self.vector_lengths_, 1)) * (1 - LENGTH_MARGIN))
        longest = min(high, float(np.percentile(self.vector_lengths_, 99)) * (1 + LENGTH_MARGIN))
        return shortest, max(longest, shortest + 1.0)

    def bundle_state(self, directory: Path) -> dict:
        from core.runs.bundles import save_array

        if not hasattr(self, "vector_lengths_"):
            raise RuntimeError("This LatticeDetector is not fitted yet; call fit() first.")
        return {"model_file": save_array(directory, "lattice_vector_lengths.npy", self.vector_lengths_),
                "border_calibration": self.border_calibration_.to_json()}

    @classmethod
    def from_bundle(cls, directory: Path, manifest: dict) -> "LatticeDetector":
        from core.runs.bundles import load_array

        detector = cls(**saved_parameters(cls, manifest))
        lengths = load_array(directory, manifest, manifest["model_file"], dtype=np.float64, ndim=1)
        if not len(lengths) or not np.isfinite(lengths).all() or (lengths <= 0).any():
            raise ValueError("the lattice vector lengths are damaged")
        detector.vector_lengths_ = lengths
        detector.border_calibration_ = BorderCalibration.from_json(manifest["border_calibration"])
        return detector

    def _search_range(self) -> tuple[float, float]:
        return SHORTEST_VECTOR, LONGEST_VECTOR_SHARE * int(self.input_size)

    def _sigma(self) -> float:
        return int(self.input_size) / 64 if self.map_sigma is None else float(self.map_sigma)


def _grey_stack(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        images = images.mean(axis=-1) if images.shape[-1] == 3 else images[..., 0]
    return images


def detrended(image: np.ndarray) -> np.ndarray:
    """The image without its slow changes of lighting (a Gaussian blur of it, edges repeated)."""
    from scipy import ndimage

    return image - ndimage.gaussian_filter(image, LIGHTING_SIGMA * image.shape[0] / 128, mode="nearest")


def autocorrelation(image: np.ndarray) -> np.ndarray:
    """Circular autocorrelation, zero shift in the middle (``[h // 2, w // 2]``), normalised to 1 there."""
    spectrum = np.fft.fft2(image)
    correlation = np.fft.fftshift(np.real(np.fft.ifft2(spectrum * np.conj(spectrum))))
    centre = correlation[image.shape[0] // 2, image.shape[1] // 2]
    return correlation / centre if centre > 0 else correlation


def lattice_vectors(image: np.ndarray, directions: int, shortest: float, longest: float) -> np.ndarray:
    """Up to ``directions`` non-parallel lattice vectors ``(dy, dx)`` of a detrended image, strongest first.

    Candidates are the autocorrelation's local maxima (3×3) in the upper half-plane (a vector and its
    opposite are the same lattice direction) whose length lies in ``[shortest, longest]``; each is refined
    to a fraction of a pixel by a parabola through its neighbours along each axis.
    """
    correlation = autocorrelation(image)
    height, width = correlation.shape
    centre_y, centre_x = height // 2, width // 2
    rows, columns = np.mgrid[0:height, 0:width]
    offset_y, offset_x = rows - centre_y, columns - centre_x
    length = np.hypot(offset_y, offset_x)
    upper = (offset_y > 0) | ((offset_y == 0) & (offset_x > 0))
    inside = (rows > 0) & (rows < height - 1) & (columns > 0) & (columns < width - 1)
    neighbours = np.stack([np.roll(correlation, (dy, dx), axis=(0, 1))
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    peak = (correlation >= neighbours.max(axis=0)) & upper & inside & (length >= shortest) & (length <= longest)
    order = np.argsort(-correlation[peak], kind="stable")
    candidates = np.stack([rows[peak], columns[peak]], axis=1)[order]
    chosen: list[np.ndarray] = []
    for row, column in candidates:
        vector = np.array([row - centre_y + _parabola_peak(correlation[row - 1, column], correlation[row, column],
                                                           correlation[row + 1, column]),
                           column - centre_x + _parabola_peak(correlation[row, column - 1], correlation[row, column],
                                                              correlation[row, column + 1])])
        if all(abs(vector[0] * other[1] - vector[1] * other[0]) > PARALLEL_SINE * np.hypot(*vector) * np.hypot(*other)
               for other in chosen):
            chosen.append(vector)
            if len(chosen) == directions:
                break
    return np.asarray(chosen, dtype=np.float64).reshape(-1, 2)


def _parabola_peak(before: float, at: float, after: float) -> float:
    """Where a parabola through three equally spaced samples peaks, relative to the middle one (within ±0.5)."""
    curvature = before - 2 * at + after
    return float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


def shifted(image: np.ndarray, vector) -> np.ndarray:
    """``image`` moved by ``vector`` (``out[p] = image[p - vector]``), cubic (Keys, a = −0.5), edges repeated."""
    height, width = image.shape
    out = image
    for axis, (amount, size) in enumerate(zip(vector, (height, width))):
        whole = int(np.floor(amount))
        fraction = float(amount) - whole
        weights = _cubic_weights(fraction)
        indices = np.arange(size)
        moved = np.zeros_like(out)
        # sample at p - amount = p - whole - fraction: taps at p - whole - 2 .. p - whole + 1
        for tap, weight in zip(range(-2, 2), weights):
            source = np.clip(indices - whole + tap, 0, size - 1)
            moved += weight * np.take(out, source, axis=axis)
        out = moved
    return out


def _cubic_weights(fraction: float) -> np.ndarray:
    """Keys cubic convolution weights of the four taps at offsets −2, −1, 0, +1 from ``p − whole``, for a sample
    ``fraction`` of a pixel before ``p − whole`` (the point ``p − whole − fraction``)."""
    distances = np.abs(np.array([-2.0, -1.0, 0.0, 1.0]) + fraction)
    a = -0.5
    near = (a + 2) * distances ** 3 - (a + 3) * distances ** 2 + 1
    far = a * distances ** 3 - 5 * a * distances ** 2 + 8 * a * distances - 4 * a
    return np.where(distances <= 1, near, np.where(distances < 2, far, 0.0))


def lattice_map(image: np.ndarray, directions: int, shortest: float, longest: float, sigma: float) -> np.ndarray:
    """The anomaly map of one grey image: its disagreement with itself along its lattice, smoothed.

    An image with no lattice at the expected lengths, or a flat one, gets :data:`NO_LATTICE` everywhere: it
    cannot be judged as this surface, so it is rejected rather than passed.
    """
    from scipy import ndimage

    detrended_image = detrended(image)
    vectors = lattice_vectors(detrended_image, directions, shortest, longest)
    if not len(vectors):
        return np.full(image.shape, NO_LATTICE)
    disagreement = np.mean([np.minimum(np.abs(detrended_image - shifted(detrended_image, vector)),
                                       np.abs(detrended_image - shifted(detrended_image, -vector)))
                            for vector in vectors], axis=0)
    typical = float(np.median(disagreement))
    if not typical > 1e-9:
        return np.full(image.shape, NO_LATTICE)
    disagreement = disagreement / typical
    return ndimage.gaussian_filter(disagreement, sigma, mode="nearest") if sigma > 0 else disagreement
