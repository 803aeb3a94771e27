"""Cached pictures for the pages: anomaly maps for a page of images, thumbnails by file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from core.data.images import decode_image
from dashboard import resources


@st.cache_data(show_spinner=False, max_entries=64)
def thumbnails(sources: tuple[str, ...], size: int = 128) -> list[np.ndarray]:
    return [decode_image(source, size, channels=3) for source in sources]  # grey files look grey anyway


@dataclass
class MapPage:
    """Images and the active detector's maps for them; reconstructions and residuals only for autoencoders."""

    images: np.ndarray
    anomaly_maps: np.ndarray
    masks: np.ndarray
    reconstructions: np.ndarray | None = None
    residuals: np.ndarray | None = None


@st.cache_data(show_spinner="Computing anomaly maps…", max_entries=32)
def map_page(detector_key: resources.DetectorKey, sources: tuple[str, ...], masks: tuple[str, ...]) -> MapPage:
    """Maps for a page of files; ``detector_key`` is :meth:`workspace.Workspace.map_key`."""
    detector = resources.active_detector(detector_key)
    size = int(detector.input_size)
    # decoded as the detector reads them (colour for the ImageNet detectors), so maps agree with the score table
    channels = detector.channels
    images = np.stack([decode_image(source, size, channels=channels) for source in sources]) if sources else \
        np.zeros((0, size, size) if channels == 1 else (0, size, size, 3))
    result = detector.score(images, with_maps=True)
    mask_arrays = np.stack([decode_image(mask, size) > 0.5 if mask else np.zeros((size, size), bool)
                            for mask in masks]) if masks else np.zeros((0, size, size), bool)
    return MapPage(images, result.anomaly_maps, mask_arrays, result.reconstructions, result.residuals)


@st.cache_data(show_spinner=False, max_entries=16)
def global_map_scale(detector_key: resources.DetectorKey, sources: tuple[str, ...], signed: bool = False) -> float:
    """One colour scale for the whole set: the 99.9th percentile over a sample of up to 48 images.

    ``signed`` measures |residual| (autoencoders only) instead of the anomaly map.
    """
    picked = sources[:: max(1, len(sources) // 48)][:48]
    page = map_page(detector_key, picked, ("",) * len(picked))
    values = np.abs(page.residuals) if signed else page.anomaly_maps
    return float(np.quantile(values, 0.999)) if values is not None and values.size else 1.0


@dataclass(frozen=True)
class PictureScales:
    """Colour scales for heat maps and residuals, and where they come from, in words."""

    anomaly: float
    residual: float | None
    source: str
    at_threshold: bool   # the top of the heat scale is the reject threshold the pages use

    @property
    def top_label(self) -> str:
        """What the top of the heat scale means, written beside the colour bar."""
        return "reject" if self.at_threshold else ""

    @property
    def top_words(self) -> str:
        """What the top of the heat scale is, for a picture's caption."""
        return "the reject threshold in use" if self.at_threshold else "see the colour scale's note"


def picture_scales(space) -> PictureScales:
    """The colour scales every page and batch shares.

    When the decision in use is on the run's own column (its map's maximum is the score), the top of the heat
    scale is the threshold in use, so full heat means "rejected" on every page, as the verdict says. Otherwise
    the run's fixed scale (its default threshold), said as such; a run saved before runs carried scales falls
    back to the set-wide 99.9th percentile."""
    from dashboard import workspace

    scales = getattr(space.detector, "map_scales_", None)
    if scales and "anomaly" in scales:
        run_default = getattr(space.detector, "default_decision_", None)
        decision = workspace.current_decision(space)
        # the threshold tops the heat scale only where the score is the map's own maximum (not, e.g., its spread)
        if run_default is not None and decision.column == run_default.column and decision.threshold > 0 and \
                getattr(space.detector, "primary_is_map_maximum", True):
            return PictureScales(decision.threshold, scales.get("residual"),
                                 f"the top of the heat scale is the reject threshold in use ({decision.threshold:.4g} "
                                 f"on {decision.column})", True)
        return PictureScales(scales["anomaly"], scales.get("residual"),
                             f"fixed by the run: the top of the heat scale is the run's default threshold "
                             f"({scales['anomaly']:.4g}), not the threshold in use on {decision.column}", False)
    key, sources = space.map_key(), tuple(space.table["source"])
    residual = global_map_scale(key, sources, signed=True) \
        if space.has_reconstructions or space.has_feature_residuals else None
    return PictureScales(global_map_scale(key, sources), residual,
                         "the 99.9th percentile of this data set's maps (this run has no fixed scale)", False)
