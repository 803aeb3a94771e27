"""A page with only the live threshold component, on a synthetic score table of ``LIVE_SCORES`` rows (default
100,000; 20 % defects of three types), for ``benchmarks.live_threshold`` and the browser test.

    LIVE_SCORES=100000 streamlit run benchmarks/live_threshold_app.py
"""

import os

import numpy as np
import streamlit as st

from core.evaluation.metrics import ThresholdTable
from dashboard.live_threshold import component_payload, live_threshold


@st.cache_data(show_spinner=False)
def payload(count: int) -> dict:
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(count) < 0.2, "defect", "good")
    kinds = np.where(labels == "defect", rng.choice(["crack", "pinhole", "stain"], count), "")
    scores = rng.normal((labels == "defect") * 1.5, 1.0)
    return component_payload(scores, labels, kinds, "score", ThresholdTable(scores, labels), float(scores.min()),
                             float(scores.max()), float(np.ptp(scores)) / 1000)


count = int(os.environ.get("LIVE_SCORES", "100000"))
data = payload(count)
st.title(f"Live threshold on {count:,} scores")
live_threshold(data, threshold=0.75, review_from=None, default_review_from=0.0, revision=1, key="live")
