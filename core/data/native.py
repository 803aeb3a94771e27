"""What the training images are like as they come off the line: their size and whether they are colour.

The command line and Data & Model take two defaults from them (issue: images as they come off
the line):

- **working resolution**: the images' native long side when it is at most
  :data:`MAX_DEFAULT_WORKING_SIZE` px, else that; a 3-pixel pinhole in a 512 px image must not be
  shrunk to a third of a pixel;
- **channels**: 3 when the training images are colour, else 1.

Both read a sample of the files only (headers for the size, a small decode for colour), so they
cost a fraction of a second whatever the size of the set.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from core.errors import ImageDecodeError

MAX_DEFAULT_WORKING_SIZE = 512
SAMPLED_FILES = 24
# a colour image's channels differ by more than this on average (8-bit JPEG noise in a grey photo stays
# well under it: about 0.002)
COLOUR_SPREAD = 0.01


def native_long_side(paths: Sequence[Path]) -> int | None:
    """The median long side in pixels of (a sample of) ``paths``; ``None`` when none can be read."""
    sides = []
    for path in _sample(paths):
        try:
            with Image.open(path) as image:
                sides.append(max(image.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return int(statistics.median(sides)) if sides else None


def looks_colour(paths: Sequence[Path]) -> bool:
    """Whether most sampled images have colour (channels that differ), not grey saved as RGB."""
    from core.data.images import decode_image

    verdicts = []
    for path in _sample(paths):
        try:
            picture = decode_image(path, 64, channels=3)
        except ImageDecodeError:
            continue
        spread = np.abs(picture - picture.mean(axis=-1, keepdims=True)).mean()
        verdicts.append(spread > COLOUR_SPREAD)
    return bool(verdicts) and sum(verdicts) * 2 > len(verdicts)


def default_channels(paths: Sequence[Path]) -> int:
    return 3 if looks_colour(paths) else 1


def _sample(paths: Sequence[Path]) -> list[Path]:
    paths = list(paths)
    if len(paths) <= SAMPLED_FILES:
        return paths
    step = len(paths) / SAMPLED_FILES   # spread over the set, not its first folder only
    return [paths[int(index * step)] for index in range(SAMPLED_FILES)]


def autoencoder_resolution(paths: Sequence[Path], image_size: int | None = None, patch_size: int | None = None,
                           stride: int | None = None) -> tuple[int, int | None]:
    """:func:`working_resolution` for the images in ``paths`` (a sample of their headers is read)."""
    return working_resolution(native_long_side(paths), image_size, patch_size, stride)


def working_resolution(native: int | None, image_size: int | None = None, patch_size: int | None = None,
                       stride: int | None = None) -> tuple[int, int | None]:
    """The working resolution and training patch size an autoencoder gets: ``(input_size, patch_size)``.

    Without options: the ``native`` long side, at most :data:`MAX_DEFAULT_WORKING_SIZE` (64 px when it is
    not known); patches of :data:`DEFAULT_PATCH_SIZE` px unless the images are small enough to train
    whole (at most 64 px and a multiple of 16, the original recipe). ``stride`` is the network's total
    stride (16 for the default four stages). ``ValueError`` for a patch size the network cannot take.
    """
    from core.defaults import DEFAULT_INPUT_SIZE, DEFAULT_PATCH_SIZE, NETWORK_STRIDE

    step = stride or NETWORK_STRIDE
    if image_size:
        size = int(image_size)
    else:
        size = DEFAULT_INPUT_SIZE if native is None else max(16, min(native, MAX_DEFAULT_WORKING_SIZE))
    if patch_size is not None:
        if patch_size % step or not step <= patch_size <= size:
            raise ValueError(f"the patch size must be a multiple of {step} from {step} px to the "
                             f"working resolution ({size} px), got {patch_size}.")
        return size, int(patch_size)
    if size <= DEFAULT_INPUT_SIZE and size % step == 0:
        return size, None
    return size, max(step, min(DEFAULT_PATCH_SIZE, size // step * step))


def estimated_training_seconds(input_size: int, patch_size: int | None, epochs: int, training_images: int,
                               patches_per_epoch: int | None = None) -> float:
    """An upper bound on an autoencoder's training time on this kind of machine (early stopping may end it
    sooner), from the measured training speed (:data:`core.defaults.TRAINING_PIXELS_PER_SECOND`)."""
    from core.defaults import DEFAULT_PATCHES_PER_EPOCH, TRAINING_PIXELS_PER_SECOND

    if patch_size:
        samples = patches_per_epoch or DEFAULT_PATCHES_PER_EPOCH
        pixels_per_epoch = samples * patch_size ** 2
    else:
        samples = training_images
        pixels_per_epoch = training_images * input_size ** 2
    # small images are dominated by fixed costs: about 5 ms per batch of 32 and 0.1 s per epoch (the held-out
    # loss, the callbacks), measured on the 2-core machine with 32 px images
    per_epoch = pixels_per_epoch / TRAINING_PIXELS_PER_SECOND + 0.005 * -(-samples // 32) + 0.1
    # plus scoring the held-out images once at the working resolution (about a sixth of them)
    return epochs * per_epoch + training_images * 0.15 * input_size ** 2 / 20e6


def rough_duration(seconds: float) -> str:
    """An estimate in words: "40 s", "3 min"."""
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{max(seconds, 1):.0f} s"
