"""The built-in demo: seeded top-view images of a round cast impeller, good and defective.

In the spirit of the casting-product photos the NCAE was first shown on: a sand-cast disc with a
hub, bolt holes and blades, grainy texture, concentric machining marks, and lighting and pose that
change from part to part (so brightness alone does not give a defect away). Defects come in five
types, each with a pixel mask: blowhole, scratch, crack, edge_chip and stain.

Two variants show what the working resolution and colour are for:

- **High resolution** (``size`` above 128, e.g. ``demo-data --image-size 512``): the same parts
  photographed closer, their grain and lighting scaled with them, with defects only a few pixels
  across: ``pinhole`` (a pit of 1–2 px radius) and ``hairline_crack`` (a 1 px line). Shrunk to
  64 px they are a fraction of a pixel.
- **Colour** (``colour=True``, ``demo-data --colour``): bronze parts, with the five defects plus
  ``colour_stain``, a patch that changes hue and keeps the luma, so the grey image does not show it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from core.files import atomic_write_bytes
from core.data.images import encode_png
from core.data.synthetic_styles import OBJECT_DEFECT_TYPES, TEXTURE_DEFECT_TYPES, render_object, render_texture

DEFECT_TYPES = ("blowhole", "scratch", "crack", "edge_chip", "stain")
FINE_DEFECT_TYPES = ("pinhole", "hairline_crack")      # the casting style's defects above 128 px
COLOUR_DEFECT_TYPES = (*DEFECT_TYPES, "colour_stain")  # the colour variant's
DEMO_IMAGE_SIZE = 128
# ITU-R 601-2 luma, as Pillow converts RGB to grey; tints keep it at 1 so colour never changes brightness
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
BRONZE = np.array([1.18, 0.97, 0.70])
VERDIGRIS = np.array([0.84, 1.03, 1.30])


def casting_defect_types(size: int, colour: bool = False) -> tuple[str, ...]:
    """The casting style's defect types at ``size`` px (and in colour)."""
    if size > DEMO_IMAGE_SIZE:
        return (*FINE_DEFECT_TYPES, "colour_stain") if colour else FINE_DEFECT_TYPES
    return COLOUR_DEFECT_TYPES if colour else DEFECT_TYPES


@dataclass(frozen=True)
class DemoSetSize:
    train_good: int = 240
    test_good: int = 60
    test_defect_per_type: int = 16


@dataclass
class Part:
    """Pose of one rendered part, needed to place defects on the metal rather than the background."""

    centre: tuple[float, float]
    radius: float
    hub_radius: float
    hole_radius: float


def render_part(rng: np.random.Generator, size: int = DEMO_IMAGE_SIZE, defect: str | None = None):
    """Render one part; returns ``(image, mask)`` as float32 arrays, mask all zero for a good part."""
    image, soft_mask = _render_part(rng, size, defect)
    return image, (soft_mask > 0.5).astype(np.float32)


def render_colour_part(rng: np.random.Generator, size: int = DEMO_IMAGE_SIZE, defect: str | None = None):
    """A bronze part, ``(image (size, size, 3), mask)``; its luma is :func:`render_part`'s picture.

    ``colour_stain`` is a verdigris patch of the same luma as the bronze around it.
    """
    tint = BRONZE * np.exp(rng.normal(0, 0.015, 3))
    tint = tint / (LUMA_WEIGHTS @ tint)
    grey, soft_mask = _render_part(rng, size, "stain" if defect == "colour_stain" else defect,
                                   stain_contrast=0.0 if defect == "colour_stain" else None)
    weight = soft_mask[..., None] if defect == "colour_stain" else 0.0
    stain_tint = VERDIGRIS / (LUMA_WEIGHTS @ VERDIGRIS)
    image = grey[..., None] * ((1 - weight) * tint + weight * stain_tint)
    return np.clip(image, 0, 1).astype(np.float32), (soft_mask > 0.5).astype(np.float32)


def _render_part(rng: np.random.Generator, size: int, defect: str | None, stain_contrast: float | None = None):
    # above the demo's 128 px the same part is photographed closer: grain, lighting and machining marks
    # scale with it, and defects keep their size in pixels (so they become fine)
    scale = size / DEMO_IMAGE_SIZE
    supersample = 2 if size <= 2 * DEMO_IMAGE_SIZE else 1
    grid = size * supersample
    yy, xx = np.mgrid[0:grid, 0:grid].astype(np.float32) / supersample
    part = Part(
        centre=(size / 2 + rng.normal(0, size * 0.015), size / 2 + rng.normal(0, size * 0.015)),
        radius=size * rng.uniform(0.38, 0.43),
        hub_radius=size * rng.uniform(0.13, 0.155),
        hole_radius=size * rng.uniform(0.05, 0.06),
    )
    dy, dx = yy - part.centre[0], xx - part.centre[1]
    radius = np.hypot(dy, dx)
    angle = np.arctan2(dy, dx) + rng.uniform(0, 2 * np.pi)

    blades = int(rng.integers(7, 10))
    blade_profile = 0.5 + 0.5 * np.cos(blades * angle + 2.5 * radius / part.radius)
    disc = _soft_step(part.radius - radius, 1.4)
    hub = _soft_step(part.hub_radius - radius, 1.4)
    hole = _soft_step(part.hole_radius - radius, 1.2)
    rim = _soft_step(radius - part.radius * 0.86, 1.5) * disc

    metal = 0.50 + 0.05 * blade_profile * (1 - hub) + 0.08 * rim + 0.10 * hub
    machining = 0.025 * np.sin(2 * np.pi * radius / (rng.uniform(1.6, 2.4) * scale)) * hub
    grain = ndimage.gaussian_filter(rng.normal(0, 1, (grid, grid)), 1.4 * supersample * scale) * 0.35 * scale
    # a raised ring on the hub face: rotation-invariant, so pose alone never looks like a defect
    ring_radius = part.hub_radius * rng.uniform(0.68, 0.76)
    ring = np.exp(-0.5 * ((radius - ring_radius) / (size * 0.028)) ** 2)
    image = disc * (metal + machining + grain * 0.12 - 0.18 * ring) * (1 - hole)
    background = 0.12 + 0.03 * scale * ndimage.gaussian_filter(rng.normal(0, 1, (grid, grid)), 6 * supersample * scale)
    image = image + (1 - disc) * background

    mask = np.zeros((grid, grid), dtype=np.float32)
    if defect is not None:
        image, mask = _add_defect(rng, defect, image, background, yy, xx, radius, part, supersample, stain_contrast)

    # lighting: a directional gradient, a vignette and an overall gain that differ per part
    light_angle = rng.uniform(0, 2 * np.pi)
    gradient = 1 + rng.uniform(0.05, 0.2) * ((np.cos(light_angle) * dx + np.sin(light_angle) * dy) / size)
    vignette = 1 - 0.25 * (radius / size) ** 2
    image = image * gradient * vignette * rng.uniform(0.72, 1.28) + rng.uniform(-0.05, 0.05)

    image = _downsample(image, supersample) + rng.normal(0, 0.008, (size, size))
    return np.clip(image, 0, 1).astype(np.float32), _downsample(mask, supersample)


def generate_demo_set(out_dir: str | Path, counts: DemoSetSize = DemoSetSize(), size: int = DEMO_IMAGE_SIZE,
                      seed: int = 0, style: str = "casting", colour: bool = False) -> Path:
    """Write a generated set in the MVTec AD layout; the same seed always gives the same files.

    ``style`` is ``"casting"`` (the built-in demo), ``"texture"`` or ``"object"`` (see
    :mod:`core.data.synthetic_styles`). The casting style also comes at high resolution (``size``
    above 128) and in colour (see the module docstring).
    """
    if style not in STYLES:
        raise ValueError(f"`style` must be one of {', '.join(STYLES)}, got {style!r}.")
    if colour and style != "casting":
        raise ValueError("The colour variant exists for the casting style only.")
    render, defect_types = STYLES[style]
    if style == "casting":
        render, defect_types = render_colour_part if colour else render_part, casting_defect_types(size, colour)
    root = Path(out_dir)
    rng = np.random.default_rng(seed)
    plan = [("train/good", None, index) for index in range(counts.train_good)]
    plan += [("test/good", None, index) for index in range(counts.test_good)]
    plan += [(f"test/{kind}", kind, index) for kind in defect_types for index in range(counts.test_defect_per_type)]
    # one seed per image, drawn up front: the output does not depend on how the work is scheduled
    seeds = rng.integers(2**63, size=len(plan))

    def write(item) -> None:
        (folder, defect, index), part_seed = item
        image, mask = render(np.random.default_rng(part_seed), size, defect)
        atomic_write_bytes(root / folder / f"{index:03d}.png", encode_png(image))
        if defect is not None:
            atomic_write_bytes(root / "ground_truth" / defect / f"{index:03d}_mask.png", encode_png(mask))

    # numpy and scipy release the GIL in the heavy filters, so threads use both cores
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(write, zip(plan, seeds)))
    return root


STYLES = {
    "casting": (render_part, DEFECT_TYPES),
    "texture": (render_texture, TEXTURE_DEFECT_TYPES),
    "object": (render_object, OBJECT_DEFECT_TYPES),
}

DEMO_VERSION = 1  # bump when the generator's output changes, so cached copies are rebuilt


def cached_demo_set(cache_root: str | Path, seed: int = 0) -> Path:
    """The demo set under ``cache_root``, generated once; concurrent callers never see half a set."""
    import secrets
    import shutil

    target = Path(cache_root) / f"demo-v{DEMO_VERSION}-seed{seed}"
    if (target / "test").is_dir():
        return target
    staging = Path(cache_root) / f".demo-{secrets.token_hex(4)}.partial"
    try:
        generate_demo_set(staging, seed=seed)
        try:
            staging.rename(target)
        except OSError:  # another process finished first; its copy is identical
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _add_defect(rng, defect, image, background, yy, xx, radius, part: Part, supersample, stain_contrast=None):
    grid = image.shape[0]
    mask = np.zeros_like(image)
    on_metal_low, on_metal_high = part.hub_radius * 1.15, part.radius * 0.9

    def point_on_metal(low=on_metal_low, high=on_metal_high):
        r = rng.uniform(low, high)
        theta = rng.uniform(0, 2 * np.pi)
        return part.centre[0] + r * np.sin(theta), part.centre[1] + r * np.cos(theta)

    if defect == "blowhole":
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = point_on_metal()
            hole_r = rng.uniform(1.6, 3.2)
            distance = np.hypot(yy - cy, xx - cx)
            pit = _soft_step(hole_r - distance, 0.4)
            halo = _soft_step(hole_r + 1.0 - distance, 0.4) - pit
            image = image * (1 - 0.75 * pit) + 0.10 * halo
            mask = np.maximum(mask, (distance <= hole_r + 0.5).astype(np.float32))
    elif defect == "pinhole":
        for _ in range(int(rng.integers(1, 3))):
            cy, cx = point_on_metal()
            pin_r = rng.uniform(1.0, 2.0)
            pit = _soft_step(pin_r - np.hypot(yy - cy, xx - cx), 0.35)
            image = image * (1 - rng.uniform(0.55, 0.75) * pit)
            mask = np.maximum(mask, pit)
    elif defect == "hairline_crack":
        cy, cx = point_on_metal()
        heading = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(40, 90)
        steps = int(length * 2 * supersample)
        canvas = np.zeros_like(image)
        for _ in range(steps):
            heading += rng.normal(0, 0.08)
            cy += np.sin(heading) * length / steps
            cx += np.cos(heading) * length / steps
            iy, ix = int(round(cy * supersample)), int(round(cx * supersample))
            if 0 <= iy < grid and 0 <= ix < grid:
                canvas[iy, ix] = 1.0
        # one pixel wide: blurred just enough to be anti-aliased
        line = np.clip(ndimage.gaussian_filter(canvas, 0.45 * supersample) * 2.5, 0, 1)
        line = line * _soft_step(part.radius - radius, 0.7)
        image = image * (1 - rng.uniform(0.35, 0.5) * line)
        mask = (line > 0.25).astype(np.float32)
    elif defect in ("scratch", "crack"):
        cy, cx = point_on_metal()
        heading = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(18, 34) if defect == "scratch" else rng.uniform(16, 28)
        steps = 48
        wobble = 0.02 if defect == "scratch" else 0.55
        canvas = np.zeros_like(image)
        for _ in range(steps):
            heading += rng.normal(0, wobble)
            cy += np.sin(heading) * length / steps
            cx += np.cos(heading) * length / steps
            iy, ix = int(round(cy * supersample)), int(round(cx * supersample))
            if 0 <= iy < grid and 0 <= ix < grid:
                canvas[iy, ix] = 1.0
        width = 1.5 if defect == "scratch" else 1.0
        line = ndimage.binary_dilation(canvas > 0, iterations=int(width * supersample)).astype(np.float32)
        line = ndimage.gaussian_filter(line, 0.5 * supersample)
        line = np.clip(line * 1.5, 0, 1) * _soft_step(part.radius - radius, 0.7)
        if defect == "scratch":
            image = image + rng.choice([-1, 1]) * rng.uniform(0.22, 0.35) * line
        else:
            image = image * (1 - 0.7 * line)
        mask = (line > 0.25).astype(np.float32)
    elif defect == "edge_chip":
        theta = rng.uniform(0, 2 * np.pi)
        chip_r = rng.uniform(5.0, 8.0)
        cy = part.centre[0] + np.sin(theta) * (part.radius - chip_r * 0.25)
        cx = part.centre[1] + np.cos(theta) * (part.radius - chip_r * 0.25)
        chip = _soft_step(chip_r - np.hypot(yy - cy, xx - cx), 0.6) * _soft_step(part.radius - radius, 0.7)
        image = image * (1 - chip) + background * chip
        mask = (chip > 0.5).astype(np.float32)
    elif defect == "stain":
        cy, cx = point_on_metal()
        axes = rng.uniform(3.5, 7.0, size=2)
        tilt = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(tilt) + (xx - cx) * np.sin(tilt)
        v = -(yy - cy) * np.sin(tilt) + (xx - cx) * np.cos(tilt)
        ellipse = (u / axes[0]) ** 2 + (v / axes[1]) ** 2
        ragged = ndimage.gaussian_filter(rng.normal(0, 1, image.shape), 2 * supersample) * 0.8
        blob = _soft_step(1.0 + ragged - ellipse, 0.15) * _soft_step(part.radius - radius, 0.7)
        contrast = rng.choice([-1, 1]) * rng.uniform(0.28, 0.38)
        image = image + (contrast if stain_contrast is None else stain_contrast) * blob
        # the colour variant tints by the soft blob itself
        mask = blob.astype(np.float32) if stain_contrast is not None else (blob > 0.5).astype(np.float32)
    else:
        raise ValueError(f"Unknown defect type {defect!r}; expected one of {', '.join(DEFECT_TYPES + FINE_DEFECT_TYPES)}.")
    return image, mask


def _soft_step(signed_distance, softness):
    return 1.0 / (1.0 + np.exp(-np.clip(signed_distance / softness, -30, 30)))


def _downsample(array, factor):
    height, width = array.shape
    return array.reshape(height // factor, factor, width // factor, factor).mean(axis=(1, 3))


def preview_grid(out_path: str | Path, seed: int = 0, style: str = "casting") -> None:
    """A contact sheet of two good parts and one of each defect type, for eyeballing a generator."""
    render, defect_types = STYLES[style]
    rng = np.random.default_rng(seed)
    tiles = [render(rng, DEMO_IMAGE_SIZE, kind)[0] for kind in (None, None) + tuple(defect_types)]
    sheet = np.concatenate(tiles, axis=1)
    Image.fromarray((sheet * 255).astype(np.uint8)).save(out_path)
