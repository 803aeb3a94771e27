"""The one decode path for every image the program reads.

Images are recognised by content (PNG, JPEG, BMP, TIFF), converted to grayscale, resized to the
model's square input size and returned as float32 in [0, 1]. Every decoder failure becomes an
:class:`ImageDecodeError` whose message names the file.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import ImageDecodeError

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Pillow only warns at ~89 M pixels; an inspection photo is far smaller, so refuse early.
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024

ImageSource = str | os.PathLike | bytes


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not Path(name).name.startswith(".")


def decode_image(source: ImageSource, size: int | None = None, *, name: str | None = None) -> np.ndarray:
    """Decode one image to a float32 grayscale array in [0, 1], resized to ``size``×``size``.

    ``source`` is a path or the file's bytes; ``name`` is what error messages call it.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "uploaded image")
    try:
        data = source if isinstance(source, bytes) else _read_capped(Path(source))
    except OSError as error:
        raise ImageDecodeError(f"{label}: cannot read the file ({error.strerror or error}).") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageDecodeError(f"{label}: file is larger than {MAX_IMAGE_BYTES // 2**20} MiB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageDecodeError(
                        f"{label}: {width}×{height} pixels is more than the {MAX_IMAGE_PIXELS:,} allowed."
                    )
                image.load()
                gray = _to_grayscale(image)
                if size is not None and gray.size != (size, size):
                    gray = gray.resize((size, size), Image.Resampling.BILINEAR)
                array = np.asarray(gray, dtype=np.float32)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(f"{label}: image has too many pixels to decode safely.") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{label}: not a PNG, JPEG, BMP or TIFF image.") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
        raise ImageDecodeError(f"{label}: image data is corrupt or truncated ({_first_line(error)}).") from None
    scale = 65535.0 if array.max(initial=0) > 255 else 255.0
    return np.clip(array / scale, 0.0, 1.0)


@dataclass
class DecodedBatch:
    """Images that decoded, in input order, and the ones that did not with their reasons."""

    images: np.ndarray
    kept: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)


def decode_many(sources: Sequence[ImageSource], size: int, names: Sequence[str] | None = None) -> DecodedBatch:
    """Decode many images; a bad one is reported in ``errors`` and the rest still load."""
    arrays, kept, errors = [], [], {}
    for index, source in enumerate(sources):
        name = names[index] if names is not None else None
        try:
            arrays.append(decode_image(source, size, name=name))
            kept.append(index)
        except ImageDecodeError as error:
            errors[index] = str(error)
    stacked = np.stack(arrays) if arrays else np.zeros((0, size, size), dtype=np.float32)
    return DecodedBatch(stacked, kept, errors)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def list_image_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and is_image_name(path.name))


def _read_capped(path: Path) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(MAX_IMAGE_BYTES + 1)
    return data


def _to_grayscale(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.convert("I")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # composite on black so transparent padding reads as background, not noise
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    return image.convert("L")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def iter_chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
