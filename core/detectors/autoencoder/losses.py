"""Training losses for the autoencoders: pixel-wise MSE or structural similarity (SSIM).

SSIM compares local mean, contrast and structure in a Gaussian window (11×11, σ = 1.5, as in Wang
et al. 2004) instead of single pixels, so an autoencoder trained on it is pushed to keep edges and
texture rather than to blur them — the SSIM autoencoder of Bergmann et al. (2019).
"""

from __future__ import annotations

import numpy as np

LOSSES = ("mse", "ssim")
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# stabilisers for data in [0, 1] (K1 = 0.01, K2 = 0.03, L = 1)
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    line = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    window = np.outer(line, line)
    return (window / window.sum()).astype("float32")


def ssim_map(images, reconstructions):
    """Per-pixel SSIM of two ``(n, h, w, 1)`` tensors (Keras ops, so it runs inside training)."""
    from keras import ops

    kernel = ops.convert_to_tensor(gaussian_window()[:, :, None, None])

    def local_mean(tensor):
        return ops.conv(tensor, kernel, padding="same")

    mean_x, mean_y = local_mean(images), local_mean(reconstructions)
    var_x = local_mean(images * images) - mean_x * mean_x
    var_y = local_mean(reconstructions * reconstructions) - mean_y * mean_y
    covariance = local_mean(images * reconstructions) - mean_x * mean_y
    numerator = (2 * mean_x * mean_y + SSIM_C1) * (2 * covariance + SSIM_C2)
    denominator = (mean_x * mean_x + mean_y * mean_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return numerator / denominator


def ssim_loss(images, reconstructions):
    """``1 - mean SSIM`` per image: 0 for a perfect reconstruction."""
    from keras import ops

    # Keras may hand both over as (n, h, w) (targets as given to fit(), predictions squeezed to match)
    images, reconstructions = (tensor if len(tensor.shape) == 4 else ops.expand_dims(tensor, -1)
                               for tensor in (ops.cast(images, reconstructions.dtype), reconstructions))
    return 1.0 - ops.mean(ssim_map(images, reconstructions), axis=(1, 2, 3))


def training_loss(name: str):
    if name not in LOSSES:
        raise ValueError(f"`loss` must be one of {', '.join(LOSSES)}, got {name!r}.")
    return "mse" if name == "mse" else ssim_loss
