"""The frame check: is this image a plausible picture of a part at all, before any score is trusted?

A dead camera, a lens cap, a blown-out exposure or a wrong file can produce a frame that a
residual statistic happens to like. So every image is first measured by a few plain numbers, and
compared with the same numbers of the good training images:

- ``brightness``: mean intensity;
- ``contrast``: standard deviation of the intensity (a blank frame has almost none);
- ``clipped``: share of pixels at pure black or pure white (saturation);
- ``aspect``: width / height of the file as it was, before resizing;
- ``pixels``: width × height of the file as it was.

The limits are learned from the training images (:meth:`FrameLimits.fit`), never constants: an
image is refused when a number lies far outside the range the good parts showed — beyond the
training range widened by four robust standard deviations of that number and a quarter of the
range itself (size: a factor of 16 in pixel count, 1.5 in aspect). A refused frame gets the
verdict ``INVALID`` with the reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

CLIP_LOW, CLIP_HIGH = 0.5 / 255, 254.5 / 255
PIXEL_FACTOR = 16.0
ASPECT_FACTOR = 1.5
# a frame is blank when its contrast is below this share of the lowest contrast among the good images
BLANK_SHARE = 0.25


def frame_numbers(images: np.ndarray) -> dict[str, np.ndarray]:
    """brightness, contrast and clipped share per image of an ``(n, h, w)`` stack in [0, 1]."""
    flat = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    return {
        "brightness": flat.mean(axis=1).astype(np.float64),
        "contrast": flat.std(axis=1).astype(np.float64),
        "clipped": ((flat <= CLIP_LOW) | (flat >= CLIP_HIGH)).mean(axis=1).astype(np.float64),
    }


def _widened(values: np.ndarray, low_floor: float, high_ceiling: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    spread = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    margin = 4.0 * spread + 0.25 * float(values.max() - values.min())
    return max(low_floor, float(values.min()) - margin), min(high_ceiling, float(values.max()) + margin)


@dataclass(frozen=True)
class FrameLimits:
    brightness: tuple[float, float]
    contrast: tuple[float, float]
    clipped_max: float
    aspect: tuple[float, float] | None = None
    pixels: tuple[float, float] | None = None

    @classmethod
    def fit(cls, images: np.ndarray, sizes=None) -> "FrameLimits":
        """Limits from good images (``(n, h, w)`` in [0, 1]) and, when known, their ``(width, height)``."""
        numbers = frame_numbers(images)
        if len(numbers["brightness"]) < 2:
            raise ValueError("The frame check needs at least 2 good images.")
        # 1/255 keeps a margin of one grey level for training sets whose numbers hardly vary
        brightness = _widened(numbers["brightness"], 0.0, 1.0)
        brightness = (max(0.0, brightness[0] - 1 / 255), min(1.0, brightness[1] + 1 / 255))
        contrast_low = BLANK_SHARE * float(numbers["contrast"].min())
        contrast_high = min(0.5, _widened(numbers["contrast"], 0.0, 0.5)[1] + 1 / 255)
        clipped_max = min(1.0, _widened(numbers["clipped"], 0.0, 1.0)[1] + 0.02)
        aspect = pixels = None
        if sizes is not None and len(sizes):
            widths = np.array([size[0] for size in sizes], dtype=np.float64)
            heights = np.array([size[1] for size in sizes], dtype=np.float64)
            ratios, counts = widths / heights, widths * heights
            aspect = (float(ratios.min()) / ASPECT_FACTOR, float(ratios.max()) * ASPECT_FACTOR)
            pixels = (float(counts.min()) / PIXEL_FACTOR, float(counts.max()) * PIXEL_FACTOR)
        return cls(brightness, (contrast_low, contrast_high), clipped_max, aspect, pixels)

    def reasons(self, images: np.ndarray, sizes=None) -> list[str]:
        """One reason per image why it is not a plausible frame, or ``""`` when it passes."""
        numbers = frame_numbers(images)
        reasons = []
        for index in range(len(numbers["brightness"])):
            size = None if sizes is None else sizes[index]
            reasons.append(self._reason(numbers["brightness"][index], numbers["contrast"][index],
                                        numbers["clipped"][index], size))
        return reasons

    def _reason(self, brightness: float, contrast: float, clipped: float, size) -> str:
        if size is not None and self.pixels is not None:
            width, height = size
            if not self.pixels[0] <= width * height <= self.pixels[1]:
                return (f"frame check: {width}×{height} pixels is far from the training images' size "
                        f"({_pixels_text(self.pixels)})")
            if not self.aspect[0] <= width / height <= self.aspect[1]:
                return (f"frame check: aspect ratio {width / height:.2f} is far from the training images' "
                        f"({self.aspect[0]:.2f}–{self.aspect[1]:.2f})")
        if contrast < self.contrast[0]:
            return (f"frame check: blank frame (contrast {contrast:.3f}, the good images have at least "
                    f"{self.contrast[0] / BLANK_SHARE:.3f})")
        if clipped > self.clipped_max:
            return (f"frame check: saturated ({clipped:.0%} of pixels pure black or white, the good images "
                    f"at most {self.clipped_max:.0%})")
        if not self.brightness[0] <= brightness <= self.brightness[1]:
            return (f"frame check: brightness {brightness:.3f} is far outside the good images' range "
                    f"({self.brightness[0]:.3f}–{self.brightness[1]:.3f})")
        if contrast > self.contrast[1]:
            return (f"frame check: contrast {contrast:.3f} is far above the good images' "
                    f"(up to {self.contrast[1]:.3f}); noise or a different scene")
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
            if not isinstance(value, list) or len(value) != 2 or not all(_finite(item) for item in value) \
                    or value[0] > value[1]:
                raise ValueError(f"frame limit {key!r} must be two finite numbers, low first.")
            return float(value[0]), float(value[1])

        clipped = payload.get("clipped_max")
        if not _finite(clipped):
            raise ValueError("frame limit 'clipped_max' must be a finite number.")
        return cls(pair("brightness"), pair("contrast"), float(clipped), pair("aspect", True), pair("pixels", True))


def _finite(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _pixels_text(pixels: tuple[float, float]) -> str:
    low, high = (math.sqrt(value * PIXEL_FACTOR) if index == 0 else math.sqrt(value / PIXEL_FACTOR)
                 for index, value in enumerate(pixels))
    return f"about {low:.0f}² to {high:.0f}² pixels"
