"""Turning arrays into pictures for the pages: colour maps, overlays, mask outlines, thumbnails.

Pure numpy (no matplotlib): a residual is shown on a diverging blue–black–red scale, an anomaly
heat map on an inferno-like scale.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

PICTURE_HEIGHT = 192   # pictures are enlarged (nearest neighbour) to at least this many pixels for their scale
BAR_WIDTH, LABEL_WIDTH, GAP = 12, 64, 4
LABEL_FONT_SIZE = 14   # pixels: the colour bar's numbers read at a glance (the old bitmap font was 7 px tall)

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
    """Heat map over the image (grey or colour); the ground-truth outline in cyan where a mask exists.

    The outline is drawn just *outside* the marked region, so the heat inside a small defect stays
    visible.
    """
    base = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
    heat = heat_colours(anomaly, vmax)
    strength = opacity * np.clip(anomaly / max(vmax, 1e-12), 0.0, 1.0)[..., None]
    rgb = base * (1 - strength) + heat * strength
    if mask is not None and mask.any():
        marked = mask.astype(bool)
        rgb[ndimage.binary_dilation(marked) & ~marked] = (0.2, 0.95, 1.0)
    return rgb


def heat_picture(image: np.ndarray, anomaly: np.ndarray, vmax: float, mask: np.ndarray | None = None,
                 top_label: str = "") -> np.ndarray:
    """:func:`overlay` with its colour bar: 0 at the bottom, ``vmax`` (and ``top_label``) at the top."""
    return with_colour_bar(overlay(image, anomaly, vmax, mask), lambda t: heat_colours(t, 1.0),
                           f"{vmax:.3g}", "0", top_label)


def anomaly_picture(anomaly: np.ndarray, vmax: float) -> np.ndarray:
    """The anomaly map alone on the heat scale, with its colour bar from 0 to ``vmax``."""
    return with_colour_bar(heat_colours(anomaly, vmax), lambda t: heat_colours(t, 1.0), f"{vmax:.3g}", "0")


def residual_picture(residual: np.ndarray, vmax: float) -> np.ndarray:
    """:func:`signed_colours` with its colour bar: +``vmax`` (brighter, red) to −``vmax`` (darker, blue)."""
    return with_colour_bar(signed_colours(residual, vmax), lambda t: signed_colours(2 * t - 1, 1.0),
                           f"+{vmax:.3g}", f"-{vmax:.3g}")


def with_colour_bar(rgb: np.ndarray, colours, top: str, bottom: str, note: str = "") -> np.ndarray:
    """The picture enlarged, with a vertical colour bar (``colours`` maps 0..1 to RGB) and its end values."""
    factor = max(1, int(np.ceil(PICTURE_HEIGHT / rgb.shape[0])))
    picture = np.repeat(np.repeat(np.clip(rgb, 0, 1), factor, axis=0), factor, axis=1)
    height = picture.shape[0]
    steps = np.linspace(1.0, 0.0, height)[:, None]
    bar = np.repeat(colours(steps), BAR_WIDTH, axis=1).reshape(height, BAR_WIDTH, 3)
    canvas = np.full((height, picture.shape[1] + GAP + BAR_WIDTH + LABEL_WIDTH, 3), 0.07, dtype=np.float32)
    canvas[:, :picture.shape[1]] = picture
    canvas[:, picture.shape[1] + GAP: picture.shape[1] + GAP + BAR_WIDTH] = bar
    labels = Image.fromarray((canvas * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(labels)
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    left = picture.shape[1] + GAP + BAR_WIDTH + 3
    draw.text((left, 1), top, fill=(235, 235, 235), font=font)
    if note:
        draw.text((left, LABEL_FONT_SIZE + 4), note, fill=(200, 200, 200), font=font)
    draw.text((left, height - LABEL_FONT_SIZE - 3), bottom, fill=(235, 235, 235), font=font)
    return np.asarray(labels, dtype=np.float32) / 255.0


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
