"""The threshold file: a saved accept/reject decision that the command line and the dashboard share."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from core.errors import InputError
from core.metrics import OperatingPoint, ReviewBand

THRESHOLD_FORMAT = "residual-lab-threshold/1"
DECISION_RULE = "higher score = more anomalous; reject (NG) when score >= threshold"


def threshold_document(run: dict, score_column: str, threshold: float, point: OperatingPoint | None,
                       review_from: float | None = None, preset: str | None = None) -> dict:
    """``run`` names the model: at least ``id``; ``model_sha256`` and ``model_kind`` when known."""
    band = None if review_from is None else ReviewBand(review_from, threshold)
    return {
        "format": THRESHOLD_FORMAT,
        "run": run,
        "score_column": score_column,
        "threshold": float(threshold),
        "rule": DECISION_RULE,
        "review_band": None if band is None else {"review_from": band.review_from, "reject_from": band.reject_from},
        "preset": preset,
        "metrics": None if point is None else point.to_dict(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def read_threshold_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such threshold file.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}: threshold file is not readable JSON.") from None
    if not isinstance(document, dict) or document.get("format") != THRESHOLD_FORMAT or \
            not isinstance(document.get("score_column"), str) or \
            not isinstance(document.get("threshold"), (int, float)):
        raise InputError(f"{path}: not a {THRESHOLD_FORMAT} threshold file.")
    band = document.get("review_band")
    if band is not None:
        try:
            ReviewBand(float(band["review_from"]), float(band["reject_from"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: the review band is not valid.") from None
    return document
