"""One browser session's choices: which data, which model, which detector; and forgetting the threshold.

Kept in ``st.session_state``, so two people looking at the same server do not change each other's view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import streamlit as st

from core.defaults import DEFAULT_CORESET_RATIO
from core.detectors.common.patch_features import BACKBONE_LABELS
from dashboard.resources import DEMO_BUNDLE


@dataclass(frozen=True)
class DataChoice:
    kind: str          # "demo", "folder" or "zip"
    location: str      # folder path or the saved zip's path; "" for the demo
    label: str


@dataclass(frozen=True)
class ModelChoice:
    path: str
    label: str


@dataclass(frozen=True)
class DetectorChoice:
    kind: str                  # "run" (the run's own detector), "memory_bank" or "padim" (fitted on this data)
    backbone: str = "encoder"  # memory bank only
    coreset_ratio: float = DEFAULT_CORESET_RATIO

    @property
    def borrows_the_run(self) -> bool:
        """Whether the detector reads the chosen run: the run's own, or a memory bank on its encoder."""
        return self.kind == "run" or (self.kind == "memory_bank" and self.backbone == "encoder")

    @property
    def label(self) -> str:
        if self.kind == "run":
            return "The run's own detector"
        if self.kind == "padim":
            return "PaDiM on EfficientNet-Lite0, ImageNet"
        return f"Memory bank on {BACKBONE_LABELS.get(self.backbone, self.backbone)} (coreset {self.coreset_ratio:.0%})"


DEMO_DATA = DataChoice("demo", "", "Built-in demo set (synthetic cast impellers)")
DEMO_MODEL = ModelChoice(str(DEMO_BUNDLE), "Demo NCAE (assets/demo_model)")
RUN_ITSELF = DetectorChoice("run")


def data_choice() -> DataChoice:
    return st.session_state.setdefault("data_choice", DEMO_DATA)


def model_choice() -> ModelChoice:
    return st.session_state.setdefault("model_choice", DEMO_MODEL)


def detector_choice() -> DetectorChoice:
    return st.session_state.setdefault("detector_choice", RUN_ITSELF)


def choose_detector(choice: DetectorChoice) -> None:
    if choice != detector_choice():
        st.session_state["detector_choice"] = choice
        forget_threshold(column_too=True)


def choose_data(choice: DataChoice) -> None:
    st.session_state["data_choice"] = choice
    forget_threshold(column_too=True)


def choose_model(choice: ModelChoice) -> None:
    st.session_state["model_choice"] = choice
    forget_threshold(column_too=True)


def forget_threshold(column_too: bool = False) -> None:
    """Back to the defaults: the run's threshold (and, with ``column_too``, its primary column)."""
    for key in ("threshold", "threshold_input", "threshold_slider", "review_from", "review_slider", "preset",
                "band_moved"):
        st.session_state.pop(key, None)
    if column_too:
        st.session_state.pop("score_column", None)


def current_review_from() -> float | None:
    value = st.session_state.get("review_from")
    return None if value is None else float(value)


# set by a review mark made in a dialog; the next whole-page run (workspace.current) clears it
REVIEW_CHANGED = "review_changed"


# -- the decision in the address bar --------------------------------------------------------------------
# A reload starts a new browser session; the page's decision (column, threshold, band) is kept in the URL's
# query, tied to the run's model hash, so a reload shows what was there and a link shows the same decision.

def remember_decision_in_url(model_sha256: str, column: str, threshold: float, review_from: float | None) -> None:
    wanted = {"run": model_sha256[:16], "score": column, "threshold": repr(float(threshold))}
    if review_from is not None:
        wanted["review_from"] = repr(float(review_from))
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)


def restore_decision_from_url(model_sha256: str, columns: list[str]) -> None:
    """Adopt the URL's decision once per browser session, when it belongs to this run and is valid."""
    if "threshold" in st.session_state or st.session_state.get("url_decision_read"):
        return
    st.session_state["url_decision_read"] = True
    query = st.query_params
    if query.get("run") != model_sha256[:16] or query.get("score") not in columns:
        return
    try:
        threshold = float(query["threshold"])
        review_from = float(query["review_from"]) if "review_from" in query else None
    except (KeyError, ValueError):
        return
    if not math.isfinite(threshold) or (review_from is not None and not (math.isfinite(review_from)
                                                                         and review_from <= threshold)):
        return
    st.session_state["score_column"] = query["score"]
    st.session_state["threshold"] = threshold
    st.session_state["review_from"] = review_from
