"""Synthetic anomalies for training a residual judge (DRAEM, Zavrtanik et al. 2021), without any real defect.

A Perlin-noise mask (blobs of random shape, size and number) says where; a source image says what:
another good training image turned and re-lit, a procedural pattern (smooth noise, stripes,
checks, flat dark or bright paint, scratches), or an image from a folder of anomaly sources the
user gives (any pictures: fabric, stone, rust...). Inside the mask the part is blended with the
source: ``augmented = (1 - mask) * image + mask * ((1 - beta) * source + beta * image)`` with an
opacity ``beta`` drawn from [0, 0.8), so some anomalies are faint.

Nothing here draws the defects of the project's own demo generator (:mod:`core.data.synthetic`):
a judge trained on those would be tested on what it was taught.
"""

from __future__ import annotations

import numpy as np

PATTERNS = ("noise", "stripes", "checks", "paint", "scratches")


def perlin_noise(size: int, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """Gradient (Perlin) noise on a ``size`` × ``size`` grid with ``resolution`` lattice cells per side, about in [-1, 1]."""
    cells = max(1, int(resolution))
    angles = rng.uniform(0, 2 * np.pi, (cells + 1, cells + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    coordinates = np.linspace(0, cells, size, endpoint=False)
    cell = coordinates.astype(int)
    offset = coordinates - cell
    row_cell, column_cell = np.meshgrid(cell, cell, indexing="ij")
    row_offset, column_offset = np.meshgrid(offset, offset, indexing="ij")

    def corner(d_row: int, d_column: int) -> np.ndarray:
        gradient = gradients[row_cell + d_row, column_cell + d_column]
        return gradient[..., 0] * (row_offset - d_row) + gradient[..., 1] * (column_offset - d_column)

    def fade(t: np.ndarray) -> np.ndarray:
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    fade_row, fade_column = fade(row_offset), fade(column_offset)
    top = corner(0, 0) * (1 - fade_column) + corner(0, 1) * fade_column
    bottom = corner(1, 0) * (1 - fade_column) + corner(1, 1) * fade_column
    return (np.sqrt(2) * (top * (1 - fade_row) + bottom * fade_row)).astype(np.float32)


def perlin_mask(size: int, rng: np.random.Generator, min_pixels: int | None = None) -> np.ndarray:
    """A binary mask of Perlin blobs covering at least ``min_pixels`` (default 0.2 % of the image) pixels."""
    min_pixels = max(4, size * size // 500) if min_pixels is None else min_pixels
    for _ in range(20):
        resolution = 2 ** int(rng.integers(1, 4))
        noise = np.rot90(perlin_noise(size, resolution, rng), int(rng.integers(4)))
        mask = (noise > rng.uniform(0.35, 0.6)).astype(np.float32)
        if min_pixels <= mask.sum() <= 0.5 * size * size:
            return mask
    # rare: fall back to a disc, so a sample meant to be anomalous always is
    rows, columns = np.mgrid[:size, :size]
    centre, radius = rng.uniform(0.2 * size, 0.8 * size, 2), rng.uniform(0.05, 0.15) * size
    return (((rows - centre[0]) ** 2 + (columns - centre[1]) ** 2) <= radius ** 2).astype(np.float32)


def procedural_pattern(size: int, rng: np.random.Generator) -> np.ndarray:
    """One of :data:`PATTERNS`, in [0, 1]."""
    kind = PATTERNS[int(rng.integers(len(PATTERNS)))]
    rows, columns = np.mgrid[:size, :size].astype(np.float32)
    if kind == "noise":
        pattern = 0.5 + 0.5 * perlin_noise(size, 2 ** int(rng.integers(2, 6)), rng)
    elif kind in ("stripes", "checks"):
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 16)
        wave = np.sin(2 * np.pi * (rows * np.cos(angle) + columns * np.sin(angle)) / period)
        if kind == "checks":
            wave = wave * np.sin(2 * np.pi * (-rows * np.sin(angle) + columns * np.cos(angle)) / period)
        pattern = 0.5 + 0.5 * np.sign(wave) * rng.uniform(0.3, 1.0)
    elif kind == "paint":
        pattern = np.full((size, size), rng.choice([rng.uniform(0, 0.2), rng.uniform(0.8, 1.0)]), np.float32)
        pattern += rng.normal(0, 0.03, (size, size))
    else:  # scratches: a few bright or dark lines on the image's own mid grey
        pattern = np.full((size, size), 0.5, np.float32)
        for _ in range(int(rng.integers(1, 5))):
            angle, offset = rng.uniform(0, np.pi), rng.uniform(-size / 2, size / 2)
            distance = np.abs((rows - size / 2) * np.cos(angle) - (columns - size / 2) * np.sin(angle) - offset)
            pattern[distance < rng.uniform(0.7, 2.0)] = rng.choice([0.05, 0.95])
    return np.clip(pattern, 0, 1).astype(np.float32)


def source_from_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An image turned, mirrored and re-lit (gamma, contrast, brightness, sometimes inverted), for pasting."""
    source = np.rot90(image, int(rng.integers(4)))
    if rng.random() < 0.5:
        source = source[:, ::-1]
    source = np.clip(source, 0, 1) ** rng.uniform(0.5, 2.0)
    source = (source - source.mean()) * rng.uniform(0.6, 2.0) + source.mean() + rng.uniform(-0.3, 0.3)
    if rng.random() < 0.2:
        source = 1 - source
    return np.clip(source, 0, 1).astype(np.float32)


def augment(images: np.ndarray, rng: np.random.Generator, anomaly_share: float = 0.5,
            anomaly_sources: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paste synthetic anomalies on about ``anomaly_share`` of ``images`` (``(n, s, s)`` grey or
    ``(n, s, s, 3)`` colour, in [0, 1]).

    Returns the augmented images and their ``(n, s, s)`` masks (1 where something was pasted). Sources
    are drawn evenly from the other images, procedural patterns (tinted with a random colour for colour
    images) and, when given, ``anomaly_sources`` (grey sources on colour images are tinted the same way).
    """
    images = np.asarray(images, np.float32)
    count, size = len(images), images.shape[1]
    colour = images.ndim == 4
    augmented, masks = images.copy(), np.zeros(images.shape[:3], np.float32)
    kinds = ["image", "pattern"] + (["folder"] if anomaly_sources is not None and len(anomaly_sources) else [])
    for index in np.flatnonzero(rng.random(count) < anomaly_share):
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "image" and count > 1:
            other = int(rng.choice([i for i in range(count) if i != index])) if count < 64 else \
                int((index + rng.integers(1, count)) % count)
            source = source_from_image(images[other], rng)
        elif kind == "folder":
            source = source_from_image(anomaly_sources[int(rng.integers(len(anomaly_sources)))], rng)
        else:
            source = procedural_pattern(size, rng)
        if colour and source.ndim == 2:
            source = np.clip(source[..., None] * rng.uniform(0.4, 1.4, 3), 0, 1).astype(np.float32)
        mask = perlin_mask(size, rng)
        beta = rng.uniform(0.0, 0.8)
        blended = (1 - beta) * source + beta * images[index]
        weight = mask[..., None] if colour else mask
        augmented[index] = (1 - weight) * images[index] + weight * blended
        # a paste that changed almost nothing (a source like the part itself) is not a defect to learn
        change = np.abs(augmented[index] - images[index])
        masks[index] = mask * ((change.max(axis=-1) if colour else change) > 0.02)
    return augmented, masks
