"""Lattice self-similarity: a detector for periodic surfaces (woven fabric, mesh, knurling, perforated sheet).

A periodic surface repeats itself: shifted by one of its lattice vectors, a good image lands on
itself. So each image is compared with itself, not with a model of the training images:

1. Uneven lighting is taken out (the image minus a wide Gaussian blur of it).
2. The lattice vectors are the strongest peaks of the image's autocorrelation that are not
   parallel to each other, refined to a fraction of a pixel.
   An image is judged only if it is the surface trained on: its lattice at least half as strong as
   the weakest good image's, and its dominant spatial frequency within 15 % of the good images'.
   A blank frame, a surface that does not repeat, or a weave of another period would otherwise agree
   with itself and pass; they get :data:`NO_LATTICE`, far above any threshold.
3. For each vector, each pixel is compared with the pixels one vector before and one after (cubic
   interpolation, edges repeated); the smaller difference counts, so the edge of a defect is not
   blamed on the good pixels beside it. The map is the mean over the vectors, divided by the image's
   median, so contrast and exposure do not matter, and smoothed.
4. Within one vector of the border only one side of the comparison lies inside the image, so good
   images disagree more there (1.6 against 1.2 in the middle, at 128 px on the woven texture). Each
   pixel is therefore rescaled by the mean and spread that the good training images show at the
   same distance from the border (the memory bank's :class:`~core.detectors.common.border.BorderCalibration`).
   Without it the border decided the score: 0.90 image AUROC on the woven texture instead of 1.00.
   ``lattice_score`` is the largest rescaled value.

What it sees that features learned elsewhere miss: a row of the weave shifted by half a period
is locally a perfect weave, and ImageNet features see nothing there; but it does not line up with
the rows one period away. What it cannot do: judge a surface that does not repeat (stone, wood,
a part on a background). Its figures on every set are in the README's "Which detector?" table.

Chosen on texture sets generated with seeds 1 and 2 (never on the recorded set, seed 0): three
directions rather than two or four, the map smoothed by σ = size / 64 rather than size / 128 or
size / 43, and the mean over directions rather than the maximum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from core.detectors.lattice import DEFAULT_LATTICE_INPUT_SIZE, MIN_LATTICE_INPUT_SIZE
from core.detectors.base import BaseDetector, ScoreResult, TrainingCancelled, saved_parameters
from core.detectors.common.border import BorderCalibration

LATTICE_COLUMN = "lattice_score"
# lighting is what varies over more than a few periods: the blur that estimates it (pixels at 128 px)
LIGHTING_SIGMA = 8.0
# peaks are looked for up to a quarter of the image away, so that every shifted copy mostly overlaps the image
LONGEST_VECTOR_SHARE = 0.25
SHORTEST_VECTOR = 3.0
# a peak within this angle of a vector already chosen is the same direction (a multiple, or its neighbour)
PARALLEL_SINE = 0.3
# what a surface must show to be judged as the one trained on, as shares of the good training images' range:
# its lattice at least this strong (autocorrelation at its vectors) against the weakest good image ...
STRENGTH_SHARE = 0.5
# ... and its dominant spatial frequency within this margin of the good images' lowest and highest
FREQUENCY_MARGIN = 0.15
# below this standard deviation (of [0, 1] grey values, lighting removed) an image is flat: nothing repeats in it
FLAT = 1e-4
# a median disagreement at or below this is an image that agrees with itself everywhere: nothing to scale by
NO_DISAGREEMENT = 1e-9
# the map of an image that fails those checks (blank, no repeating pattern, another period): far above any threshold
NO_LATTICE = 1e6


class LatticeDetector(BaseDetector):
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
    fitted_attribute = "border_calibration_"

    def __init__(self, input_size=DEFAULT_LATTICE_INPUT_SIZE, directions=3, map_sigma=None, seed=0):
        self.input_size = input_size
        self.directions = directions
        self.map_sigma = map_sigma
        self.seed = seed

    def fit(self, good_images: np.ndarray, image_sizes=None, progress=None, should_stop=None) -> "LatticeDetector":
        """Learn from the good images what their lattice looks like (strength, dominant frequency, longest
        vector) and how much they disagree with themselves at each distance from the border; set the default
        decision on 15 % of them held out (as the other detectors do)."""
        started = time.perf_counter()
        if int(self.input_size) < MIN_LATTICE_INPUT_SIZE:
            raise ValueError(f"`input_size` must be at least {MIN_LATTICE_INPUT_SIZE}, got {self.input_size!r}.")
        images = _grey_stack(good_images)
        if len(images) < 2:
            raise ValueError(f"The lattice detector needs at least 2 good images, got {len(images)}.")
        split = self._split(len(images))
        held_out, fitting = images[split.calibration], images[split.training]
        surfaces = [self._surface(image, should_stop) for image in fitting]
        reference = np.array([[surface.frequency, surface.strength, surface.longest] for surface in surfaces
                              if surface.vectors.size], dtype=np.float64).reshape(-1, 3)
        if not len(reference) or reference[:, 1].min() <= 0:
            raise ValueError("No repeating pattern was found in the good images: the lattice detector is for "
                             "periodic surfaces (fabric, mesh, knurling); choose another detector.")
        self.lattice_reference_ = reference
        maps = np.stack([self._map(surface) for surface in surfaces])
        judged = (maps < NO_LATTICE).all(axis=(1, 2))
        if not judged.any():
            raise ValueError("No good image could be compared with itself: the lattice detector is for periodic "
                             "surfaces (fabric, mesh, knurling); choose another detector.")
        # within one lattice vector of the border the comparison is one-sided: ring by ring out to the longest
        rings = min(64, int(np.ceil(reference[:, 2].max())))
        self.border_calibration_ = BorderCalibration.fit(maps[judged], rings=rings)
        self.n_train_images_, self.n_held_out_images_ = len(fitting), len(held_out)
        judged_scores = []
        if len(held_out):
            # a held-out image the checks refuse is rejected whatever the threshold; it must not lift the threshold
            scores = self.score(held_out).table[LATTICE_COLUMN]
            judged_scores = scores[scores < NO_LATTICE]
            if not len(judged_scores):
                raise ValueError("None of the held-out good images showed the lattice the others have: these images "
                                 "are not one periodic surface; choose another detector.")
        self._calibrate(images, image_sizes, judged_scores)
        self.training_seconds_ = time.perf_counter() - started
        return self

    def score(self, images: np.ndarray, with_maps: bool = False) -> ScoreResult:
        self._check_fitted()
        images = _grey_stack(images)
        maps = np.stack([self._map(self._surface(image)) for image in images]) if len(images) else \
            np.zeros((0, int(self.input_size), int(self.input_size)))
        refused = (maps >= NO_LATTICE).all(axis=(1, 2))
        maps = self.border_calibration_.apply(maps) if len(maps) else maps.astype(np.float32)
        maps[refused] = NO_LATTICE   # the rescaling must not bring a refused image back below the threshold
        table = pd.DataFrame({LATTICE_COLUMN: maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)})
        return ScoreResult(table, maps) if with_maps else ScoreResult(table)

    def is_this_surface(self, surface: "Surface") -> bool:
        """Whether an image shows the trained surface's lattice: strong enough and at its frequencies."""
        if not surface.vectors.size:
            return False
        lowest, highest = self.lattice_reference_[:, 0].min(), self.lattice_reference_[:, 0].max()
        return (surface.strength >= STRENGTH_SHARE * self.lattice_reference_[:, 1].min() and
                (1 - FREQUENCY_MARGIN) * lowest <= surface.frequency <= (1 + FREQUENCY_MARGIN) * highest)

    def bundle_state(self, directory: Path) -> dict:
        from core.detectors.saving import save_array

        self._check_fitted()
        return {"model_file": save_array(directory, "lattice_reference.npy", self.lattice_reference_),
                "border_calibration": self.border_calibration_.to_json()}

    @classmethod
    def from_bundle(cls, directory: Path, manifest: dict) -> "LatticeDetector":
        from core.detectors.saving import load_array

        detector = cls(**saved_parameters(cls, manifest))
        reference = load_array(directory, manifest, manifest["model_file"], dtype=np.float64, ndim=2)
        if reference.shape[1:] != (3,) or not len(reference) or not np.isfinite(reference).all() or \
                (reference <= 0).any():
            raise ValueError("the lattice reference is damaged")
        detector.lattice_reference_ = reference
        detector.border_calibration_ = BorderCalibration.from_json(manifest["border_calibration"])
        return detector

    def _surface(self, image: np.ndarray, should_stop=None) -> "Surface":
        if should_stop is not None and should_stop():
            raise TrainingCancelled("Training was cancelled.")
        return Surface.of(image, int(self.directions), SHORTEST_VECTOR, LONGEST_VECTOR_SHARE * int(self.input_size))

    def map_smoothing(self) -> float:
        return int(self.input_size) / 64 if self.map_sigma is None else float(self.map_sigma)

    def inspector_judge(self, tf):
        from core.detectors.lattice.inspector import LatticeJudge

        return LatticeJudge(tf, self)

    def _map(self, surface: "Surface") -> np.ndarray:
        """The image's uncalibrated map, or :data:`NO_LATTICE` everywhere when it is not this surface (before
        ``fit`` has learnt the surface, only an image with no lattice at all is refused)."""
        known = hasattr(self, "lattice_reference_")
        if not surface.vectors.size or (known and not self.is_this_surface(surface)):
            return np.full(surface.image.shape, NO_LATTICE)
        sigma = self.map_smoothing()
        return lattice_map(surface.image, surface.vectors, sigma)


@dataclass(frozen=True)
class Surface:
    """One detrended grey image and what its lattice looks like."""

    image: np.ndarray       # detrended
    vectors: np.ndarray     # (k, 2) lattice vectors (dy, dx), strongest first
    strength: float         # mean autocorrelation at the vectors (1 = the image repeats exactly)
    frequency: float        # dominant spatial frequency, in cycles per image (radius of the power spectrum's peak)
    longest: float          # length of the longest vector

    @classmethod
    def of(cls, image: np.ndarray, directions: int, shortest: float, longest: float) -> "Surface":
        flat = detrended(image)
        if not flat.std() > FLAT:
            return cls(flat, np.zeros((0, 2)), 0.0, 0.0, 0.0)
        power = power_spectrum(flat)   # one spectrum for the autocorrelation and the dominant frequency
        vectors, heights = lattice_vectors(autocorrelation(power), directions, shortest, longest)
        return cls(flat, vectors, float(np.mean(heights)) if len(heights) else 0.0, dominant_frequency(power),
                   float(np.hypot(vectors[:, 0], vectors[:, 1]).max()) if len(vectors) else 0.0)


def _grey_stack(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        images = images.mean(axis=-1) if images.shape[-1] == 3 else images[..., 0]
    return images


def detrended(image: np.ndarray) -> np.ndarray:
    """The image without its slow changes of lighting (a Gaussian blur of it, edges repeated)."""
    from scipy import ndimage

    return image - ndimage.gaussian_filter(image, LIGHTING_SIGMA * image.shape[0] / 128, mode="nearest")


def power_spectrum(image: np.ndarray) -> np.ndarray:
    """``|DFT(image)|²``, zero frequency first (numpy's layout)."""
    spectrum = np.fft.fft2(image)
    return spectrum.real ** 2 + spectrum.imag ** 2


def autocorrelation(power: np.ndarray) -> np.ndarray:
    """The circular autocorrelation of the image whose :func:`power_spectrum` is ``power``: zero shift in the
    middle (``[h // 2, w // 2]``), normalised to 1 there."""
    correlation = np.fft.fftshift(np.real(np.fft.ifft2(power)))
    centre = correlation[power.shape[0] // 2, power.shape[1] // 2]
    return correlation / centre if centre > 0 else correlation


@lru_cache(maxsize=8)
def search_region(height: int, width: int, shortest: float, longest: float) -> np.ndarray:
    """Where an autocorrelation (zero shift at ``[h // 2, w // 2]``) is searched for lattice vectors: the upper
    half-plane (a vector and its opposite are the same direction), not the outermost rows and columns (a peak
    is refined from its neighbours), at lengths in ``[shortest, longest]``. Read-only; the same for every image."""
    rows, columns = np.mgrid[0:height, 0:width]
    offset_y, offset_x = rows - height // 2, columns - width // 2
    length = np.hypot(offset_y, offset_x)
    upper = (offset_y > 0) | ((offset_y == 0) & (offset_x > 0))
    inside = (rows > 0) & (rows < height - 1) & (columns > 0) & (columns < width - 1)
    region = upper & inside & (length >= shortest) & (length <= longest)
    region.flags.writeable = False
    return region


@lru_cache(maxsize=8)
def frequency_radii(height: int, width: int) -> np.ndarray:
    """Each frequency's distance from zero frequency, rounded to whole cycles per image, in the
    :func:`power_spectrum`'s layout. Read-only; the same for every image."""
    rows, columns = np.mgrid[0:height, 0:width]
    radii = np.fft.ifftshift(np.rint(np.hypot(rows - height // 2, columns - width // 2)).astype(int))
    radii.flags.writeable = False
    return radii


def lattice_vectors(correlation: np.ndarray, directions: int, shortest: float,
                    longest: float) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``directions`` non-parallel lattice vectors ``(dy, dx)`` from an image's :func:`autocorrelation`,
    strongest first, and the autocorrelation at each.

    Candidates are the autocorrelation's local maxima (3×3) in the upper half-plane (a vector and its
    opposite are the same lattice direction) whose length lies in ``[shortest, longest]``; each is refined
    to a fraction of a pixel by a parabola through its neighbours along each axis.
    """
    height, width = correlation.shape
    centre_y, centre_x = height // 2, width // 2
    neighbours = np.stack([np.roll(correlation, (dy, dx), axis=(0, 1))
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    peak = (correlation >= neighbours.max(axis=0)) & search_region(height, width, float(shortest), float(longest))
    order = np.argsort(-correlation[peak], kind="stable")
    candidates = np.argwhere(peak)[order]   # row-major, as the heights correlation[peak] are listed
    chosen: list[np.ndarray] = []
    heights: list[float] = []
    for row, column in candidates:
        vector = np.array([row - centre_y + _parabola_peak(correlation[row - 1, column], correlation[row, column],
                                                           correlation[row + 1, column]),
                           column - centre_x + _parabola_peak(correlation[row, column - 1], correlation[row, column],
                                                              correlation[row, column + 1])])
        if all(abs(vector[0] * other[1] - vector[1] * other[0]) > PARALLEL_SINE * np.hypot(*vector) * np.hypot(*other)
               for other in chosen):
            chosen.append(vector)
            heights.append(float(correlation[row, column]))
            if len(chosen) == directions:
                break
    return np.asarray(chosen, dtype=np.float64).reshape(-1, 2), np.asarray(heights, dtype=np.float64)


def dominant_frequency(power: np.ndarray) -> float:
    """The radius (cycles per image) at which a :func:`power_spectrum`, averaged over directions, peaks; from 3
    cycles up, so what is left of the lighting does not count."""
    height, width = power.shape
    radius = frequency_radii(height, width).ravel()
    radial = np.bincount(radius, power.ravel()) / np.maximum(np.bincount(radius), 1)
    radial = radial[:min(height, width) // 2]
    radial[:3] = -1.0
    return float(np.argmax(radial))


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


def lattice_map(detrended_image: np.ndarray, vectors: np.ndarray, sigma: float) -> np.ndarray:
    """How much a detrended image disagrees with itself along its lattice ``vectors``, in units of its own median
    disagreement, smoothed; :data:`NO_LATTICE` everywhere for a flat image."""
    from scipy import ndimage

    disagreement = np.mean([np.minimum(np.abs(detrended_image - shifted(detrended_image, vector)),
                                       np.abs(detrended_image - shifted(detrended_image, -vector)))
                            for vector in vectors], axis=0)
    typical = float(np.median(disagreement))
    if not typical > NO_DISAGREEMENT:
        return np.full(detrended_image.shape, NO_LATTICE)
    disagreement = disagreement / typical
    return ndimage.gaussian_filter(disagreement, sigma, mode="nearest") if sigma > 0 else disagreement
