"""Cached pictures for the pages: residual maps for a page of images, thumbnails by file."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.images import decode_image
from dashboard import state


@st.cache_data(show_spinner=False, max_entries=64)
def thumbnails(sources: tuple[str, ...], size: int = 128) -> list[np.ndarray]:
    return [decode_image(source, size) for source in sources]


@st.cache_data(show_spinner="Reconstructing…", max_entries=32)
def residual_page(bundle_path: str, model_sha256: str, sources: tuple[str, ...], masks: tuple[str, ...]):
    """Images, reconstructions, signed residuals and masks (zeros where none) for a page of files."""
    detector = state.load_detector(bundle_path, model_sha256)
    size = int(detector.input_size)
    images = np.stack([decode_image(source, size) for source in sources]) if sources else np.zeros((0, size, size))
    reconstructions = detector.reconstruct(images) if len(images) else images
    mask_arrays = np.stack([decode_image(mask, size) > 0.5 if mask else np.zeros((size, size), bool)
                            for mask in masks]) if masks else np.zeros((0, size, size), bool)
    return images, reconstructions, images - reconstructions, mask_arrays


@st.cache_data(show_spinner=False, max_entries=16)
def global_residual_scale(bundle_path: str, model_sha256: str, sources: tuple[str, ...]) -> float:
    """One colour scale for the whole set: the 99.9th percentile of |residual| over a sample of images."""
    picked = sources[:: max(1, len(sources) // 48)][:48]
    _, _, residuals, _ = residual_page(bundle_path, model_sha256, picked, ("",) * len(picked))
    return float(np.quantile(np.abs(residuals), 0.999)) if len(residuals) else 1.0
