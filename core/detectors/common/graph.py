"""TensorFlow pieces the exported inspectors share, each the graph twin of a numpy or scipy step (the export tests
hold every detector's graph to ``score``'s numbers): Gaussian smoothing as scipy does it, edge padding as numpy
does it, ``np.roll``, a map's maximum. Written with operations ONNX Runtime also runs."""

from __future__ import annotations

import numpy as np

TRUNCATE = 4.0                  # scipy.ndimage.gaussian_filter's default


def gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


class Smoothing:
    """``scipy.ndimage.gaussian_filter(mode="nearest")`` of ``(n, h, w)`` maps, as two separable passes."""

    def __init__(self, tf, sigma: float):
        self.kernel = tf.constant(gaussian_kernel(sigma), tf.float32) if sigma > 0 else None

    def __call__(self, tf, maps):
        if self.kernel is None:
            return maps
        radius = (int(self.kernel.shape[0]) - 1) // 2
        stack = edge_pad(tf, maps[..., None], radius, radius, radius, radius)
        stack = tf.nn.conv2d(stack, tf.reshape(self.kernel, [-1, 1, 1, 1]), strides=1, padding="VALID")
        stack = tf.nn.conv2d(stack, tf.reshape(self.kernel, [1, -1, 1, 1]), strides=1, padding="VALID")
        return stack[..., 0]


def largest(tf, maps):
    return tf.reduce_max(tf.reshape(maps, [tf.shape(maps)[0], -1]), axis=1)


def edge_pad(tf, stack, top, bottom, left, right):
    """Pad an ``(n, h, w, c)`` stack by repeating its edge pixels (numpy's ``mode="edge"``).

    Done by gathering clipped indices rather than ``tf.repeat``: the same pixels, and it converts to ONNX
    (a repeat by zero, an image that needs no padding, does not run there)."""
    def along(stack, axis, before, after):
        length = tf.shape(stack)[axis]
        indices = tf.clip_by_value(tf.range(-before, length + after), 0, length - 1)
        return tf.gather(stack, indices, axis=axis)

    return along(along(stack, 1, top, bottom), 2, left, right)


def roll(tf, array, axis: int, size: int, shift: int | None = None):
    """``np.roll(array, shift, axis)`` of an ``(n, h, w)`` stack along axis 1 or 2 (``shift`` default: half the
    size, i.e. fftshift), by slicing, which ONNX runs."""
    shift = size // 2 if shift is None else shift % size
    if shift == 0:
        return array
    if axis == 1:
        return tf.concat([array[:, size - shift:], array[:, :size - shift]], axis=1)
    return tf.concat([array[:, :, size - shift:], array[:, :, :size - shift]], axis=2)


def blur_matrix(sigma: float, size: int) -> np.ndarray:
    """``B`` with ``B @ x`` = ``scipy.ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest")`` (identity for
    σ ≤ 0)."""
    if sigma <= 0:
        return np.eye(size)
    kernel = gaussian_kernel(sigma)
    radius = (len(kernel) - 1) // 2
    blur = np.zeros((size, size))
    for row in range(size):
        for offset, weight in zip(range(-radius, radius + 1), kernel):
            blur[row, min(max(row + offset, 0), size - 1)] += weight
    return blur
