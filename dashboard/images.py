"""Turning arrays into pictures for the pages: colour maps, overlays, mask outlines, thumbnails.

Pure numpy (no matplotlib): a residual is shown on a diverging blue–black–red scale, an anomaly
heat map on an inferno-like scale.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from scipy import ndimage

_HEAT_STOPS = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                        [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float32) / 255.0


def heat_colours(values: np.ndarray, vmax: float) -> np.ndarray:
    """Values in [0, vmax] to RGB floats on an inferno-like scale."""
    scaled = np.clip(values / max(vmax, 1e-12), 0.0, 1.0) * (len(_HEAT_STOPS) - 1)
    lower = np.floor(scaled).astype(int)
    upper = np.minimum(lower + 1, len(_HEAT_STOPS) - 1)
    weight = (scaled - lower)[..., None]
    return _HEAT_STOPS[lower] * (1 - weight) + _HEAT_STOPS[upper] * weight


def signed_colours(residual: np.ndarray, vmax: float) -> np.ndarray:
    """Signed residual to RGB: brighter than expected in red, darker than expected in blue."""
    scaled = np.clip(residual / max(vmax, 1e-12), -1.0, 1.0)
    rgb = np.zeros((*residual.shape, 3), dtype=np.float32)
    rgb[..., 0] = np.clip(scaled, 0, 1)
    rgb[..., 2] = np.clip(-scaled, 0, 1)
    rgb[..., 1] = 0.25 * np.abs(scaled)
    return rgb


def overlay(image: np.ndarray, anomaly: np.ndarray, vmax: float, mask: np.ndarray | None = None,
            opacity: float = 0.55) -> np.ndarray:
    """Heat map over the grayscale image; the ground-truth outline in cyan where a mask exists."""
    base = np.repeat(image[..., None], 3, axis=-1)
    heat = heat_colours(anomaly, vmax)
    strength = opacity * np.clip(anomaly / max(vmax, 1e-12), 0.0, 1.0)[..., None]
    rgb = base * (1 - strength) + heat * strength
    if mask is not None and mask.any():
        edge = mask.astype(bool) & ~ndimage.binary_erosion(mask.astype(bool))
        rgb[edge] = (0.2, 0.95, 1.0)
    return rgb


def to_picture(array: np.ndarray, scale: int = 1) -> Image.Image:
    data = (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)
    picture = Image.fromarray(data)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture


def data_uri(array: np.ndarray, scale: int = 1) -> str:
    buffer = io.BytesIO()
    to_picture(array, scale).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
