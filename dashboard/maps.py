"""Cached pictures for the pages: anomaly maps for a page of images, thumbnails by file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from core.images import decode_image
from dashboard import state


@st.cache_data(show_spinner=False, max_entries=64)
def thumbnails(sources: tuple[str, ...], size: int = 128) -> list[np.ndarray]:
    return [decode_image(source, size) for source in sources]


@dataclass
class MapPage:
    """Images and the active detector's maps for them; reconstructions and residuals only for autoencoders."""

    images: np.ndarray
    anomaly_maps: np.ndarray
    masks: np.ndarray
    reconstructions: np.ndarray | None = None
    residuals: np.ndarray | None = None


@st.cache_data(show_spinner="Computing anomaly maps…", max_entries=32)
def map_page(detector_key: tuple, sources: tuple[str, ...], masks: tuple[str, ...]) -> MapPage:
    """Maps for a page of files; ``detector_key`` is :meth:`state.Workspace.map_key`."""
    detector = state.active_detector(*detector_key)
    size = int(detector.input_size)
    images = np.stack([decode_image(source, size) for source in sources]) if sources else np.zeros((0, size, size))
    result = detector.score(images, with_maps=True)
    mask_arrays = np.stack([decode_image(mask, size) > 0.5 if mask else np.zeros((size, size), bool)
                            for mask in masks]) if masks else np.zeros((0, size, size), bool)
    return MapPage(images, result.anomaly_maps, mask_arrays, result.reconstructions, result.residuals)


@st.cache_data(show_spinner=False, max_entries=16)
def global_map_scale(detector_key: tuple, sources: tuple[str, ...], signed: bool = False) -> float:
    """One colour scale for the whole set: the 99.9th percentile over a sample of up to 48 images.

    ``signed`` measures |residual| (autoencoders only) instead of the anomaly map.
    """
    picked = sources[:: max(1, len(sources) // 48)][:48]
    page = map_page(detector_key, picked, ("",) * len(picked))
    values = np.abs(page.residuals) if signed else page.anomaly_maps
    return float(np.quantile(values, 0.999)) if values is not None and values.size else 1.0
