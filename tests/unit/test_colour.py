"""Colour is kept where a detector can use it: the ImageNet detectors see RGB, so a defect of another
colour but the same brightness is found; read as grey it would vanish."""

import io

import numpy as np
from PIL import Image

from core.data.frame_check import frame_numbers
from core.data.images import decode_image
from core.detectors import new_detector
from core.evaluation.metrics import threshold_summary

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8), mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_colour_decoding_keeps_channels_and_grey_files_give_three_equal_ones():
    rgb = np.zeros((8, 8, 3), np.float32)
    rgb[..., 0] = 1.0
    red = decode_image(png(rgb), 8, channels=3)
    assert red.shape == (8, 8, 3) and np.allclose(red[..., 0], 1) and np.allclose(red[..., 1:], 0)
    assert decode_image(png(rgb), 8).shape == (8, 8)       # grey stays the default
    grey = decode_image(png(np.full((8, 8), 0.5, np.float32)), 8, channels=3)
    assert np.allclose(grey[..., 0], grey[..., 1]) and np.allclose(grey[..., 1], grey[..., 2])
    transparent = np.zeros((8, 8, 4), np.float32)
    transparent[..., 1] = 1.0                                 # green, fully transparent: reads as black background
    assert np.allclose(decode_image(png(transparent, "RGBA"), 8, channels=3), 0)
    # the frame check judges colour on its luma, so a colour frame and its grey version get the same numbers
    numbers = frame_numbers(red[None])
    assert np.isclose(numbers["brightness"][0], 0.299, atol=1e-3)


def _part(rng: np.random.Generator) -> np.ndarray:
    """A mottled green-grey surface."""
    base = 0.45 + 0.08 * rng.normal(size=(28, 28))
    return np.clip(np.kron(base, np.ones((8, 8)))[..., None] * np.array([0.8, 1.1, 0.8]), 0, 1).astype(np.float32)


def _stained(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A reddish 48-pixel patch with the brightness (luma) the surface had there."""
    image = image.copy()
    top, left = rng.integers(32, 224 - 80, 2)
    luma = image[top:top + 48, left:left + 48] @ LUMA
    reddish = np.stack([luma * 1.45, luma * 0.78, luma * 0.78], axis=-1)
    image[top:top + 48, left:left + 48] = reddish * (luma / np.maximum(reddish @ LUMA, 1e-6))[..., None]
    return image


def test_a_colour_only_defect_is_found_in_colour_and_not_in_grey(keras_home):
    rng = np.random.default_rng(0)
    good = np.stack([_part(rng) for _ in range(16)])
    clean = np.stack([_part(rng) for _ in range(16)])
    test = np.concatenate([clean[:8], np.stack([_stained(image, rng) for image in clean[8:]])])
    labels = np.array(["good"] * 8 + ["defect"] * 8)
    assert np.allclose(test @ LUMA, clean @ LUMA, atol=1e-5)   # in grey, nothing changed

    colour = new_detector("memory_bank", seed=0).fit(good)
    colour_auroc = threshold_summary(colour.score(test).table["patch_score"].to_numpy(), labels)["image_auroc"]
    grey = new_detector("memory_bank", seed=0).fit(good @ LUMA)
    grey_auroc = threshold_summary(grey.score(test @ LUMA).table["patch_score"].to_numpy(), labels)["image_auroc"]
    assert colour_auroc >= 0.95 and grey_auroc <= 0.75, (colour_auroc, grey_auroc)
