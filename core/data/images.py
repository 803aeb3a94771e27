"""The one decode path for every image the program reads.

Images are recognised by content (PNG, JPEG, BMP, TIFF), turned upright by their EXIF orientation,
converted to grayscale (or kept RGB), fitted into the model's square input and returned as float32
in [0, 1]. Fitting keeps the aspect ratio: the long side is resized to the input size and the short
side is padded equally on both sides by repeating the edge pixels (a non-square image is never
stretched; a square one is simply resized). Masks are fitted the same way, so they stay aligned. Every decoder failure becomes an :class:`ImageDecodeError` whose message names the file.

One rule per pixel type, whatever the content (so two near-identical frames always decode alike):

- 8-bit (grayscale, palette, RGB, RGBA, CMYK …): value / 255;
- 16-bit integer (PNG, TIFF): value / 65535;
- 32-bit float (TIFF): taken as it is; it must be finite and within [0, 1];
- anything else (32-bit integer, 1-bit packed in odd ways is fine as 8-bit, complex …) is refused.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import ImageDecodeError

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Pillow only warns at ~89 M pixels; an inspection photo is far smaller, so refuse early.
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024

ImageSource = str | os.PathLike | bytes


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not Path(name).name.startswith(".")


def decode_image(source: ImageSource, size: int | None = None, *, name: str | None = None,
                 channels: int = 1) -> np.ndarray:
    """Decode one image to a float32 array in [0, 1], resized to ``size``×``size``: grayscale ``(h, w)``, or
    with ``channels=3`` RGB ``(h, w, 3)`` (a grey file gives three equal channels).

    ``source`` is a path or the file's bytes; ``name`` is what error messages call it.
    """
    return decode_frame(source, size, name=name, channels=channels)[0]


def decode_frame(source: ImageSource, size: int | None = None, *, name: str | None = None,
                 channels: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """Like :func:`decode_image`, and also the upright ``(width, height)`` the file had."""
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3, got {channels!r}.")
    label = name or (str(source) if not isinstance(source, bytes) else "uploaded image")
    try:
        data = source if isinstance(source, bytes) else _read_capped(source if is_uri(source) else Path(source))
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
                upright = ImageOps.exif_transpose(image) if image.format in ("JPEG", "TIFF") else image
                original_size = upright.size
                picture, scale = _to_grayscale(upright, label)
                if channels == 3 and scale == 255.0:  # 16-bit and float files are grey: repeated below
                    picture = _to_rgb(upright)
                padding = None
                if size is not None and picture.size != (size, size):
                    fitted, padding = fitted_size(picture.size, size)
                    picture = picture.resize(fitted, Image.Resampling.BILINEAR)
                array = np.asarray(picture, dtype=np.float32)
                if padding is not None and any(padding):
                    top, bottom, left, right = padding
                    array = np.pad(array, ((top, bottom), (left, right)) + ((0, 0),) * (array.ndim - 2), mode="edge")
                if channels == 3 and array.ndim == 2:
                    array = np.repeat(array[..., None], 3, axis=-1)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(f"{label}: image has too many pixels to decode safely.") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{label}: not a PNG, JPEG, BMP or TIFF image.") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
        raise ImageDecodeError(f"{label}: image data is corrupt or truncated ({_first_line(error)}).") from None
    if scale is None:  # float pixels are taken as they are, so they must already be numbers in [0, 1]
        if not np.isfinite(array).all():
            raise ImageDecodeError(f"{label}: floating-point image holds NaN or infinite pixels.")
        if array.min(initial=0.0) < -1e-6 or array.max(initial=0.0) > 1.0 + 1e-6:
            raise ImageDecodeError(f"{label}: floating-point image has pixels outside [0, 1] "
                                   f"({array.min():.4g} to {array.max():.4g}); save it scaled to [0, 1].")
        return np.clip(array, 0.0, 1.0), original_size
    # in place: the same values as np.clip(array / scale, 0, 1), without two more image-sized arrays per file
    np.divide(array, scale, out=array)
    return np.clip(array, 0.0, 1.0, out=array), original_size


def fitted_size(original: tuple[int, int], size: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """How a ``(width, height)`` picture fits a ``size``×``size`` square without stretching: the resized
    ``(width, height)`` and the ``(top, bottom, left, right)`` padding that completes the square."""
    width, height = original
    scale = size / max(width, height)
    fitted = (max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale))))
    spare_rows, spare_columns = size - fitted[1], size - fitted[0]
    return fitted, (spare_rows // 2, spare_rows - spare_rows // 2, spare_columns // 2, spare_columns - spare_columns // 2)


def preprocessing_description(input_size: int, channels: int) -> dict:
    """How :func:`decode_image` prepares images for a detector, in words, for a run's manifest."""
    return {"color": "RGB (transparency on black; grey files as three equal channels)" if channels == 3
            else "grayscale (ITU-R 601-2 luma)",
            "resize": f"bilinear, long side to {input_size} px, aspect kept; the short side padded to "
                      f"{input_size}×{input_size} with its edge pixels",
            "orientation": "EXIF orientation applied",
            "scale": "8-bit pixel / 255, 16-bit / 65535, float taken as is (must be in [0, 1]); float32"}


@dataclass
class DecodedBatch:
    """Images that decoded, in input order, and the ones that did not with their reasons."""

    images: np.ndarray
    kept: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    sizes: list[tuple[int, int]] = field(default_factory=list)   # (width, height) as read, per kept image


def decode_many(sources: Sequence[ImageSource], size: int, names: Sequence[str] | None = None,
                channels: int = 1) -> DecodedBatch:
    """Decode many images (``channels`` as in :func:`decode_image`); a bad one is reported in ``errors`` and
    the rest still load."""
    arrays, kept, errors, sizes = [], [], {}, []
    fetched = _fetch_remote(sources)

    def decode(index: int):
        source, name = sources[index], names[index] if names is not None else None
        try:
            if isinstance(source, str) and source in fetched:   # read beforehand, with the batch's other URIs
                if isinstance(fetched[source], OSError):
                    error = fetched[source]
                    raise ImageDecodeError(f"{name or source}: cannot read the file ({error.strerror or error}).")
                return decode_frame(fetched[source], size, name=name or source, channels=channels)
            return decode_frame(source, size, name=name, channels=channels)
        except ImageDecodeError as error:
            return error

    # Pillow decodes and resizes without holding Python's lock, so a second thread keeps the other core busy: the
    # demo's 380 files at 224 px in colour (PaDiM's and the memory bank's size) in 0.30 s instead of 0.38-0.44 s.
    # Results come back in the files' order.
    threaded = size is None or size * size * channels >= THREADED_DECODING_PIXELS
    with _decoding_pool(len(sources) if threaded else 1) as pool:
        for index, decoded in enumerate(pool.map(decode, range(len(sources)))):
            if isinstance(decoded, ImageDecodeError):
                errors[index] = str(decoded)
                continue
            arrays.append(decoded[0])
            kept.append(index)
            sizes.append(decoded[1])
    empty = np.zeros((0, size, size) if channels == 1 else (0, size, size, 3), dtype=np.float32)
    stacked = np.stack(arrays) if arrays else empty
    return DecodedBatch(stacked, kept, errors, sizes)


DECODING_THREADS = 2
# below this many values per decoded image, Python's own work per file outweighs Pillow's and a second thread only
# contends for Python's lock (the demo's files at 64 px grey: 0.11 s in one thread, 0.14 s in two)
THREADED_DECODING_PIXELS = 128 * 128 * 3


@contextlib.contextmanager
def _decoding_pool(count: int):
    """Threads for a batch of ``count`` files; one file is decoded in the caller's thread."""
    if count < 2:
        yield _InThisThread()
        return
    pool = ThreadPoolExecutor(max_workers=DECODING_THREADS, thread_name_prefix="decode")
    try:
        yield pool
    finally:
        # a SIGTERM or Ctrl+C in the caller's thread stops the batch: the files not yet started are dropped, not
        # decoded while the process waits to exit (signals reach only the main thread, never a decoding one)
        pool.shutdown(wait=True, cancel_futures=True)


class _InThisThread:
    @staticmethod
    def map(function, items):
        return map(function, items)


def _fetch_remote(sources) -> dict:
    """The remote URIs among ``sources`` read concurrently: one slow host costs the batch one timeout."""
    remote = [source for source in sources if isinstance(source, str) and is_uri(source)
              and not source.lower().startswith("file://")]
    if not remote:
        return {}
    from core.data.remote import fetch_many

    return fetch_many(remote, MAX_IMAGE_BYTES + 1)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def list_image_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and is_image_name(path.name))


def is_uri(source) -> bool:
    """Whether ``source`` names an image by URI (``file://``, ``s3://``, ``https://``...) rather than a path."""
    return isinstance(source, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", source) is not None


def _read_capped(source) -> bytes:
    if isinstance(source, str) and source.lower().startswith("file://"):   # a local file: read as one
        from urllib.parse import unquote, urlparse

        source = Path(unquote(urlparse(source).path))
    if is_uri(source):
        from core.data.remote import read_remote

        return read_remote(source, MAX_IMAGE_BYTES + 1)
    return read_regular_file(source, MAX_IMAGE_BYTES + 1)


READ_CHUNK = 4 * 2**20


def read_regular_file(path, limit: int | None = None) -> bytes:
    """The bytes of ``path`` (at most ``limit``), which must be a regular file: a FIFO, a device or a socket
    could block a batch forever or never end, so it is refused (``OSError``) before anything is read. The
    file is opened without blocking and checked on its descriptor, so a path swapped for a FIFO between a
    check and the open is caught too."""
    # Read on the descriptor and close it in one place, once. Handing it to a file object first left an instant in
    # which a SIGTERM (raised as an exception where the process is) made it closed twice: the second close's
    # "Bad file descriptor" replaced the termination, and `score` went on to the end of the list with exit 0.
    descriptor = None
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe, device or socket is never read)")
        os.set_blocking(descriptor, True)
        chunks, remaining = [], limit
        while remaining is None or remaining > 0:
            chunk = os.read(descriptor, READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
            if not chunk:
                break
            chunks.append(chunk)
            remaining = None if remaining is None else remaining - len(chunk)
        return b"".join(chunks)
    finally:
        if descriptor is not None:
            os.close(descriptor)


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def _to_grayscale(image: Image.Image, label: str) -> tuple[Image.Image, float | None]:
    """A single-channel image and the divisor that maps it to [0, 1] (``None``: float, taken as is)."""
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PNG"):
        # Pillow opens 16-bit PNGs as mode "I"; a PNG holds at most 16 bits, so the rule is the same
        return image.convert("I"), 65535.0
    if image.mode == "F":
        return image, None
    if image.mode in ("I", "I;32", "I;32B", "I;32L") or image.mode.startswith(("I;", "F;")):
        raise ImageDecodeError(f"{label}: {image.mode} pixels (32-bit integer) are not supported; "
                               "save it as 8-bit, 16-bit or float in [0, 1].")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # composite on black so transparent padding reads as background, not noise
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L"), 255.0
    return image.convert("L"), 255.0


def _to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image; transparency composited on black, as for grey."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def iter_chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
