"""The frame check: is this image a plausible picture of a part at all, before any score is trusted?

A dead camera, a lens cap, a blown-out exposure or a wrong file can produce a frame that a
residual statistic happens to like. So every image is first measured by a few plain numbers, and
compared with the same numbers of the good training images:

- ``brightness``: mean intensity;
- ``contrast``: standard deviation of the intensity (a blank frame has almost none);
- ``roughness``: mean absolute difference between neighbouring pixels (sensor noise, snow);
- ``clipped``: share of pixels at pure black or pure white (saturation);
- ``aspect``: width / height of the file as it was, before resizing;
- ``pixels``: width × height of the file as it was.

The limits are learned from the training images (:meth:`FrameLimits.fit`), never constants: an
image is refused when a number lies far outside what the good parts showed. Brightness and the
clipped share may leave the training range by half its width, three robust standard deviations
and four grey levels; contrast may
fall to a quarter of the lowest seen (below that the frame is blank) and rise to 1.5 times the
highest; roughness may rise to 1.5 times the highest; size may differ by a factor of 16 in pixel
count and 1.5 in aspect. A refused frame gets the verdict ``INVALID`` with the reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core.decision import is_finite_number

CLIP_LOW, CLIP_HIGH = 0.5 / 255, 254.5 / 255
PIXEL_FACTOR = 16.0
ASPECT_FACTOR = 1.5
RISE_FACTOR = 1.5  # how far above the highest training contrast or roughness a frame may go
GREY_LEVEL = 1 / 255
# a frame is blank when its contrast is below this share of the lowest contrast among the good images
BLANK_SHARE = 0.25


# images measured at a time: a few megabytes of temporaries stay in the cache, where whole stacks of them (hundreds
# of megabytes, fresh pages from the system on every call) took ten times as long for PaDiM's 240 training images
IMAGES_PER_CHUNK = 8
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def frame_numbers(images: np.ndarray) -> dict[str, np.ndarray]:
    """brightness, contrast, roughness and clipped share per image of an ``(n, h, w)`` stack in [0, 1] (colour
    ``(n, h, w, 3)`` stacks are judged on their ITU-R 601-2 luma, as grey files are read)."""
    stack = np.asarray(images, dtype=np.float32)
    numbers = {name: np.empty(len(stack), np.float64) for name in ("brightness", "contrast", "roughness", "clipped")}
    for start in range(0, len(stack), IMAGES_PER_CHUNK):
        chunk = stack[start:start + IMAGES_PER_CHUNK]
        if chunk.ndim == 4:
            chunk = chunk @ LUMA_WEIGHTS
        at = slice(start, start + len(chunk))
        flat = chunk.reshape(len(chunk), -1)
        across = np.abs(np.diff(chunk, axis=2)).reshape(len(chunk), -1).mean(axis=1)
        down = np.abs(np.diff(chunk, axis=1)).reshape(len(chunk), -1).mean(axis=1)
        numbers["brightness"][at] = flat.mean(axis=1)
        numbers["contrast"][at] = flat.std(axis=1)
        numbers["roughness"][at] = (across + down) / 2
        numbers["clipped"][at] = ((flat <= CLIP_LOW) | (flat >= CLIP_HIGH)).mean(axis=1)
    return numbers


def _widened(values: np.ndarray) -> tuple[float, float]:
    """The training range widened on each side by half its width, three robust standard deviations
    and four grey levels, within [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    spread = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    margin = 0.5 * (high - low) + 3 * spread + 4 * GREY_LEVEL
    return max(0.0, low - margin), min(1.0, high + margin)


@dataclass(frozen=True)
class FrameLimits:
    brightness: tuple[float, float]
    contrast: tuple[float, float]
    roughness_max: float
    clipped_max: float
    aspect: tuple[float, float] | None = None
    pixels: tuple[float, float] | None = None

    @classmethod
    def fit(cls, images: np.ndarray, sizes=None) -> "FrameLimits":
        """Limits from good images (``(n, h, w)`` in [0, 1]) and, when known, their ``(width, height)``."""
        numbers = frame_numbers(images)
        if len(numbers["brightness"]) < 2:
            raise ValueError("The frame check needs at least 2 good images.")
        brightness = _widened(numbers["brightness"])
        contrast = (BLANK_SHARE * float(numbers["contrast"].min()),
                    RISE_FACTOR * float(numbers["contrast"].max()) + GREY_LEVEL)
        roughness_max = RISE_FACTOR * float(numbers["roughness"].max()) + GREY_LEVEL
        clipped_max = _widened(numbers["clipped"])[1]
        aspect = pixels = None
        if sizes is not None and len(sizes):
            widths = np.array([size[0] for size in sizes], dtype=np.float64)
            heights = np.array([size[1] for size in sizes], dtype=np.float64)
            ratios, counts = widths / heights, widths * heights
            aspect = (float(ratios.min()) / ASPECT_FACTOR, float(ratios.max()) * ASPECT_FACTOR)
            pixels = (float(counts.min()) / PIXEL_FACTOR, float(counts.max()) * PIXEL_FACTOR)
        return cls(brightness, contrast, roughness_max, clipped_max, aspect, pixels)

    def reasons(self, images: np.ndarray, sizes=None) -> list[str]:
        """One reason per image why it is not a plausible frame, or ``""`` when it passes."""
        if not len(images):
            return []
        numbers = frame_numbers(images)
        reasons = []
        for index in range(len(numbers["brightness"])):
            size = None if sizes is None else sizes[index]
            reasons.append(self._reason(numbers["brightness"][index], numbers["contrast"][index],
                                        numbers["roughness"][index], numbers["clipped"][index], size))
        return reasons

    def _reason(self, brightness: float, contrast: float, roughness: float, clipped: float, size) -> str:
        if size is not None and self.pixels is not None:
            width, height = size
            if not self.pixels[0] <= width * height <= self.pixels[1]:
                return (f"frame check: {width}×{height} pixels is far from the training images' size "
                        f"({_pixels_text(self.pixels)})")
            if not self.aspect[0] <= width / height <= self.aspect[1]:
                return (f"frame check: aspect ratio {width / height:.2f} is far from the training images' "
                        f"({self.aspect[0]:.2f}–{self.aspect[1]:.2f})")
        if contrast < self.contrast[0]:
            level = "black" if brightness <= CLIP_LOW else "white" if brightness >= CLIP_HIGH else f"grey {brightness:.3f}"
            saturated = ", saturated" if clipped > self.clipped_max else ""
            return (f"frame check: blank frame (uniform {level}{saturated}; contrast {contrast:.3f}, the good "
                    f"images have at least {self.contrast[0] / BLANK_SHARE:.3f})")
        if clipped > self.clipped_max:
            return (f"frame check: saturated ({clipped:.0%} of pixels pure black or white, the good images "
                    f"at most {self.clipped_max:.0%})")
        if roughness > self.roughness_max:
            return (f"frame check: pixel-to-pixel noise {roughness:.3f} is far above the good images' "
                    f"(up to {(self.roughness_max - GREY_LEVEL) / RISE_FACTOR:.3f}); a noisy or broken frame")
        if not self.brightness[0] <= brightness <= self.brightness[1]:
            return (f"frame check: brightness {brightness:.3f} is far outside the good images' range "
                    f"({self.brightness[0]:.3f}–{self.brightness[1]:.3f})")
        if contrast > self.contrast[1]:
            return (f"frame check: contrast {contrast:.3f} is far above the good images' "
                    f"(up to {(self.contrast[1] - GREY_LEVEL) / RISE_FACTOR:.3f}); a different scene")
        return ""

    def to_json(self) -> dict:
        return {key: (list(value) if isinstance(value, tuple) else value) for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, payload) -> "FrameLimits":
        """Read limits saved by :meth:`to_json`; ``ValueError`` for anything malformed or not finite."""
        if not isinstance(payload, dict):
            raise ValueError("frame limits must be a JSON object.")

        def pair(key, optional=False):
            value = payload.get(key)
            if value is None and optional:
                return None
            if not isinstance(value, list) or len(value) != 2 or not all(is_finite_number(item) for item in value) \
                    or value[0] > value[1]:
                raise ValueError(f"frame limit {key!r} must be two finite numbers, low first.")
            return float(value[0]), float(value[1])

        single = {}
        for key in ("roughness_max", "clipped_max"):
            if not is_finite_number(payload.get(key)) or payload[key] < 0:
                raise ValueError(f"frame limit {key!r} must be a finite number, zero or more.")
            single[key] = float(payload[key])
        return cls(pair("brightness"), pair("contrast"), single["roughness_max"], single["clipped_max"],
                   pair("aspect", True), pair("pixels", True))


def _pixels_text(pixels: tuple[float, float]) -> str:
    low, high = (math.sqrt(value * PIXEL_FACTOR) if index == 0 else math.sqrt(value / PIXEL_FACTOR)
                 for index, value in enumerate(pixels))
    return f"about {low:.0f}² to {high:.0f}² pixels"
