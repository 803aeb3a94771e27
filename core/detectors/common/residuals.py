"""Residual maps and the per-image residual statistics used as anomaly scores.

For an image ``x`` and its reconstruction ``x_hat`` (both in [0, 1]) the *signed residual* is
``r = x - x_hat`` and the *absolute residual* is ``a = |r|``. Every statistic is computed per image
over all of its pixels, vectorised over the batch, and oriented so that a larger value means more
reconstruction error, i.e. more anomalous:

- ``mean``: mean of ``a`` (the mean absolute error).
- ``std``, ``var``: population standard deviation and variance of ``a``.
- ``kurtosis``: excess (Fisher) kurtosis of ``a``; large when a few pixels carry most of the error,
  which is what a small local defect looks like.
- ``skewness``: skewness of ``a``.
- ``range``: ``max - min`` of ``a``.
- ``min``, ``max``: smallest and largest value of ``a``.
- ``cumsum``: the cumulative sum of ``a`` over the whole image (its last value), i.e. the total
  absolute error; unlike ``mean`` it grows with the input size.
- ``entropy``: Shannon entropy in bits of the distribution of ``a`` over 64 equal-width bins on
  [0, 1]; the bins are fixed so the value is comparable across images.
- ``mse``: mean of ``r ** 2``.

Colour images (``(n, h, w, 3)``) give one residual per pixel across the channels: its size is the
root mean square of the three channel errors, ``sqrt(((x - x_hat) ** 2).mean(channels))``, and its
sign is the sign of the mean channel error (brighter or darker than the reconstruction). So ``a``
is the per-pixel RMS colour error, ``mse`` is the mean squared error over pixels and channels, and
a stain that changes hue but not brightness still shows, where a signed channel mean would cancel.
For grey images this is the plain ``x - x_hat``.
"""

from __future__ import annotations

import numpy as np

STATISTIC_NAMES = ("mean", "std", "var", "kurtosis", "skewness", "range", "min", "max", "cumsum", "entropy", "mse")
# every autoencoder score column: the statistics, their fusion (core.detectors.autoencoder.stat_distance) and the smoothed map's maximum
SCORE_COLUMNS = (*STATISTIC_NAMES, "stat_distance", "map_max")
ENTROPY_BINS = 64
STATISTICS_BLOCK_PIXELS = 2 ** 20


def residual_maps(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Signed residual per pixel, shape ``(n, height, width)``: ``x - x_hat`` for grey images, the signed
    RMS across channels for colour ones (see the module docstring)."""
    images = np.asarray(images, dtype=np.float32)
    reconstructions = np.asarray(reconstructions, dtype=np.float32).reshape(images.shape)
    difference = images - reconstructions
    if difference.ndim == 4 and difference.shape[-1] == 1:
        difference = difference[..., 0]
    if difference.ndim == 3:
        return difference
    magnitude = np.sqrt(np.mean(np.square(difference), axis=-1))
    return np.where(difference.mean(axis=-1) < 0, -magnitude, magnitude).astype(np.float32)


def residual_statistics(residuals: np.ndarray) -> dict[str, np.ndarray]:
    """All :data:`STATISTIC_NAMES` for a batch of signed residual maps; one value per image each."""
    residuals = np.asarray(residuals)
    per_image = int(np.prod(residuals.shape[1:])) if residuals.ndim > 1 else 1
    # a few images at a time: the float64 temporaries then stay in cache (64 images of 512 px at once
    # ran 6x slower than the same images in blocks of a million pixels)
    block = max(1, STATISTICS_BLOCK_PIXELS // max(per_image, 1))
    if len(residuals) <= block:
        return _block_statistics(residuals)
    parts = [_block_statistics(residuals[start:start + block]) for start in range(0, len(residuals), block)]
    return {name: np.concatenate([part[name] for part in parts]) for name in STATISTIC_NAMES}


def _block_statistics(residuals: np.ndarray) -> dict[str, np.ndarray]:
    count = len(residuals)
    signed = np.asarray(residuals, dtype=np.float64).reshape(count, -1)
    pixels = max(signed.shape[1], 1)
    absolute = np.abs(signed)
    mean = absolute.mean(axis=1)
    centred = absolute - mean[:, None]
    squared = centred * centred   # products, not ``** 3`` / ``** 4``: np.power is ~20x slower at 512 px
    var = squared.mean(axis=1)
    std = np.sqrt(var)
    third = np.einsum("ij,ij->i", squared, centred) / pixels
    fourth = np.einsum("ij,ij->i", squared, squared) / pixels
    # a constant residual has no shape; report 0 rather than NaN so tables stay numeric
    safe_var = np.where(var > 1e-18, var, 1.0)
    skewness = np.where(var > 1e-18, third / safe_var ** 1.5, 0.0)
    kurtosis = np.where(var > 1e-18, fourth / safe_var ** 2 - 3.0, 0.0)
    minimum, maximum = absolute.min(axis=1), absolute.max(axis=1)
    return {
        "mean": mean,
        "std": std,
        "var": var,
        "kurtosis": kurtosis,
        "skewness": skewness,
        "range": maximum - minimum,
        "min": minimum,
        "max": maximum,
        "cumsum": absolute.sum(axis=1),
        "entropy": _histogram_entropy(absolute),
        "mse": np.einsum("ij,ij->i", signed, signed) / pixels,
    }


def _histogram_entropy(absolute: np.ndarray) -> np.ndarray:
    count, pixels = absolute.shape
    bins = np.minimum((absolute * ENTROPY_BINS).astype(np.int64), ENTROPY_BINS - 1)
    offsets = (np.arange(count) * ENTROPY_BINS)[:, None]
    histogram = np.bincount((bins + offsets).ravel(), minlength=count * ENTROPY_BINS).reshape(count, ENTROPY_BINS)
    probability = histogram / pixels
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probability > 0, probability * np.log2(probability), 0.0)
    return -terms.sum(axis=1)
