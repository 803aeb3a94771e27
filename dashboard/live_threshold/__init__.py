"""The live threshold component: the slider, the metric cards, ROC and PR operating points, the histogram's
threshold line, the 2×3 confusion matrix and the per-defect-type recall, all updated in the browser.

Static HTML and JavaScript in ``frontend/`` (no npm step); plotly.js is the copy the installed ``plotly``
package ships, put beside them in a served folder the first time it is needed (nothing is fetched from
a CDN). The scores travel once per score column, sorted, as float64 arrays; the curves and the histogram
arrive downsampled for drawing only (the numbers always come from every score).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from pathlib import Path

import numpy as np
import plotly
import streamlit.components.v1 as components

from core.data.datasets import demo_cache_root
from core.evaluation.metrics import ThresholdTable

FRONTEND = Path(__file__).resolve().parent / "frontend"
CURVE_POINTS = 1500       # the ROC and PR curves are drawn with at most this many points
HISTOGRAM_BINS = 60


def _served_folder() -> Path:
    """The frontend files and plotly.min.js from the installed plotly, in one folder Streamlit serves."""
    plotly_js = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    sources = [*sorted(FRONTEND.iterdir()), plotly_js]
    digest = hashlib.sha256(b"".join(path.name.encode() + path.read_bytes() for path in sources
                                     if path.name != "plotly.min.js") + plotly.__version__.encode()).hexdigest()[:12]
    folder = demo_cache_root() / f"live-threshold-{digest}"
    if not (folder / "index.html").is_file():
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for path in sources:
            shutil.copyfile(path, staging / path.name)
        try:
            staging.rename(folder)
        except OSError:   # another server process finished first; its copy is the same
            shutil.rmtree(staging, ignore_errors=True)
    return folder


_component = None


def _declared():
    global _component
    if _component is None:
        _component = components.declare_component("live_threshold", path=str(_served_folder()))
    return _component


def _array(values: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _thinned(x: np.ndarray, y: np.ndarray) -> dict:
    """At most :data:`CURVE_POINTS` points of a curve, its ends kept: for drawing only."""
    if len(x) > CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).round().astype(int))
        x, y = x[keep], y[keep]
    return {"x": np.asarray(x, float).round(5).tolist(), "y": np.asarray(y, float).round(5).tolist()}


def component_payload(scores: np.ndarray, labels: np.ndarray, defect_types: np.ndarray, column: str,
                      table: ThresholdTable, low: float, high: float, step: float) -> dict:
    """Everything the browser needs for one score column; built once per column and data (cache it)."""
    scores, labels, defect_types = np.asarray(scores, float), np.asarray(labels), np.asarray(defect_types)
    good = np.sort(scores[labels == "good"])
    defect_order = np.argsort(scores[labels == "defect"], kind="stable")
    defect = scores[labels == "defect"][defect_order]
    kinds = defect_types[labels == "defect"][defect_order]
    names = sorted(set(kinds.tolist()))
    codes = np.array([names.index(kind) for kind in kinds], dtype=np.uint16)
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1) if high > low else np.linspace(low - 0.5, low + 0.5, 2)
    payload = {
        "column": column, "good": _array(good, "<f8"), "defect": _array(defect, "<f8"),
        "defect_types": _array(codes, "<u2"), "type_names": names, "low": float(low), "high": float(high),
        "step": float(step),
        "histogram": {"centres": ((edges[:-1] + edges[1:]) / 2).round(8).tolist(), "width": float(edges[1] - edges[0]),
                      "good": np.histogram(good, edges)[0].tolist(), "defect": np.histogram(defect, edges)[0].tolist()},
        "roc": None, "pr": None,
    }
    if len(good) and len(defect):
        false_positive_rate, true_positive_rate, _ = table.roc_curve()
        precision, recall, _ = table.pr_curve()
        payload["roc"] = _thinned(false_positive_rate, true_positive_rate) | {"area": float(table.auroc())}
        payload["pr"] = _thinned(recall, precision) | {"area": float(table.auprc())}
    payload["data_key"] = hashlib.sha256((payload["good"] + payload["defect"] + column).encode()).hexdigest()[:16]
    return payload


def live_threshold(payload: dict, threshold: float, review_from: float | None, default_review_from: float,
                   revision: int, key: str):
    """Render the component; returns what the browser last reported on release (``None`` before that):
    ``{"threshold", "review_from", "band", "revision"}``."""
    return _declared()(**payload, threshold=float(threshold), review_from=review_from,
                       default_review_from=float(default_review_from), revision=int(revision), key=key, default=None)
