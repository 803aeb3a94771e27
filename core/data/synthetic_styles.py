"""Two more generated image sets, of a different character from the cast-impeller demo.

They exist so that choices about the detectors (capacity, input size, loss, memory bank) are made
on more than one kind of picture:

- ``texture``: a fine woven mesh that fills the frame (period 7–9 px at 128 px), slightly rotated
  and unevenly lit. Defects break the periodicity: ``hole`` (threads missing), ``broken_thread``
  (one thread displaced), ``contamination`` (a small foreign spot) and ``knot`` (the weave warped).
- ``object``: a small three-legged component centred on a plain background. Defects are about
  structure, not texture: ``missing_leg``, ``extra_part`` (a stray blob or leg), ``bent_leg``.

Both return ``(image, mask)`` float32 arrays like :func:`core.data.synthetic.render_part`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

TEXTURE_DEFECT_TYPES = ("hole", "broken_thread", "contamination", "knot")
OBJECT_DEFECT_TYPES = ("missing_leg", "extra_part", "bent_leg")


def render_texture(rng: np.random.Generator, size: int = 128, defect: str | None = None):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    period = size / 128 * rng.uniform(7.0, 9.0)
    tilt = np.deg2rad(rng.uniform(-4, 4))
    u = np.cos(tilt) * xx + np.sin(tilt) * yy + rng.uniform(0, period)
    v = -np.sin(tilt) * xx + np.cos(tilt) * yy + rng.uniform(0, period)
    mask = np.zeros((size, size), dtype=np.float32)

    if defect == "knot":
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        spread = size * rng.uniform(0.05, 0.08)
        bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread ** 2))
        u = u + period * rng.uniform(0.45, 0.7) * bump * np.sin((yy - cy) / spread * 2.5)
        v = v + period * rng.uniform(0.45, 0.7) * bump * np.cos((xx - cx) / spread * 2.5)
        mask = (bump > 0.4).astype(np.float32)
    elif defect == "broken_thread":
        across = rng.uniform(0.2, 0.8) * size
        start, length = rng.uniform(0.05, 0.5) * size, rng.uniform(0.3, 0.5) * size
        band = (np.abs(v - across) < period * 0.5) & (u > start) & (u < start + length)
        u = np.where(band, u + period * 0.5, u)
        mask = ndimage.binary_dilation(band, iterations=1).astype(np.float32)

    warp = np.sin(2 * np.pi * u / period)
    weft = np.sin(2 * np.pi * v / period)
    # over-under weave: warp threads on top where the checkerboard says so
    over = np.sign(np.sin(np.pi * u / period) * np.sin(np.pi * v / period))
    threads = np.where(over > 0, np.abs(warp) ** 0.6, np.abs(weft) ** 0.6)
    image = 0.35 + 0.35 * threads + 0.02 * rng.normal(0, 1, (size, size))

    if defect == "hole":
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        radii = size * rng.uniform(0.035, 0.06, 2)
        angle = rng.uniform(0, np.pi)
        a = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        b = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
        hole = ((a / radii[0]) ** 2 + (b / radii[1]) ** 2) <= 1
        image = np.where(hole, 0.1 + 0.02 * rng.normal(0, 1, (size, size)), image)
        mask = hole.astype(np.float32)
    elif defect == "contamination":
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        radius = size * rng.uniform(0.025, 0.045)
        blob = np.hypot(yy - cy, xx - cx) + 1.5 * ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 2)
        spot = ndimage.gaussian_filter((blob <= radius).astype(np.float64), 0.7)
        image = image * (1 - spot) + rng.uniform(0.85, 0.95) * spot
        mask = (spot > 0.5).astype(np.float32)
    elif defect not in (None, "knot", "broken_thread"):
        raise ValueError(f"Unknown texture defect {defect!r}; expected one of {', '.join(TEXTURE_DEFECT_TYPES)}.")

    light = 1 + rng.uniform(0.0, 0.15) * ((xx * np.cos(tilt * 20) + yy * np.sin(tilt * 20)) / size - 0.5)
    image = image * light * rng.uniform(0.85, 1.15)
    return np.clip(image, 0, 1).astype(np.float32), mask


def render_object(rng: np.random.Generator, size: int = 128, defect: str | None = None):
    scale = size / 128
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = size / 2 + rng.normal(0, 1.5 * scale, 2)
    turn = np.deg2rad(rng.uniform(-8, 8))
    # coordinates in the component's own frame
    a = np.cos(turn) * (xx - cx) + np.sin(turn) * (yy - cy)
    b = -np.sin(turn) * (xx - cx) + np.cos(turn) * (yy - cy)
    half_width, half_height = 17 * scale, 12 * scale
    body = _rounded_box(a, b - 6 * scale, half_width, half_height, 4 * scale)
    marking = np.hypot(a + 9 * scale, b + 1 * scale) <= 3 * scale

    leg_length, leg_half = 20 * scale, 2.2 * scale
    legs = [_leg(a, b, offset * scale, 6 * scale + half_height, leg_length, leg_half, 0.0) for offset in (-11, 0, 11)]
    mask = np.zeros((size, size), dtype=np.float32)
    extra = np.zeros((size, size), dtype=bool)
    if defect == "missing_leg":
        gone = int(rng.integers(3))
        mask = legs[gone].astype(np.float32)
        legs[gone] = np.zeros_like(legs[gone])
    elif defect == "bent_leg":
        bent = int(rng.integers(3))
        offset = (-11, 0, 11)[bent] * scale
        bend = np.deg2rad(rng.choice([-1, 1]) * rng.uniform(28, 45))
        new_leg = _leg(a, b, offset, 6 * scale + half_height, leg_length, leg_half, bend)
        mask = (legs[bent] ^ new_leg).astype(np.float32)
        legs[bent] = new_leg
    elif defect == "extra_part":
        if rng.uniform() < 0.5:
            side = rng.choice([-1, 1])
            extra = _leg(a, b, side * half_width, 6 * scale + rng.uniform(-6, 6) * scale,
                         rng.uniform(10, 16) * scale, leg_half, -side * np.pi / 2)
        else:
            angle = rng.uniform(0, 2 * np.pi)
            distance = rng.uniform(24, 32) * scale
            extra = np.hypot(a - distance * np.cos(angle), b - 6 * scale - distance * np.sin(angle)) <= \
                rng.uniform(3.0, 4.5) * scale
        mask = (extra & ~body).astype(np.float32)
    elif defect is not None:
        raise ValueError(f"Unknown object defect {defect!r}; expected one of {', '.join(OBJECT_DEFECT_TYPES)}.")

    metal = np.zeros((size, size), dtype=bool)
    for leg in legs:
        metal |= leg
    metal |= extra
    background = 0.78 + 0.04 * (yy / size - 0.5) * rng.uniform(-1, 1)
    image = np.where(metal, 0.55, background)
    image = np.where(body, 0.18, image)
    image = np.where(marking & body, 0.32, image)
    image = ndimage.gaussian_filter(image, 0.6 * scale)
    shadow = ndimage.gaussian_filter((body | metal).astype(np.float64), 3 * scale)
    image = image - 0.08 * shadow * ~(body | metal)
    image = image * rng.uniform(0.9, 1.1) + rng.normal(0, 0.01, (size, size))
    return np.clip(image, 0, 1).astype(np.float32), mask


def _rounded_box(a, b, half_width, half_height, corner):
    qa = np.maximum(np.abs(a) - (half_width - corner), 0)
    qb = np.maximum(np.abs(b) - (half_height - corner), 0)
    return np.hypot(qa, qb) <= corner


def _leg(a, b, offset, start, length, half_thickness, bend):
    """A straight leg leaving the body at (``offset``, ``start``), turned by ``bend`` from straight down."""
    along = (b - start) * np.cos(bend) - (a - offset) * np.sin(bend)
    across = (b - start) * np.sin(bend) + (a - offset) * np.cos(bend)
    return (along >= 0) & (along <= length) & (np.abs(across) <= half_thickness)
