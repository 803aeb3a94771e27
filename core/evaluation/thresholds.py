"""The threshold file: a saved accept/reject decision that the command line and the dashboard share."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from core.decision import Decision, finite_number
from core.data.images import read_regular_file
from core.errors import InputError
from core.evaluation.metrics import OperatingPoint
from core.evaluation.outcomes import Outcomes

THRESHOLD_FORMAT = "residual-lab-threshold/1"
MAX_THRESHOLD_FILE_BYTES = 1 << 20   # a threshold file is a few hundred bytes
DECISION_RULE = "higher score = more anomalous; reject (NG) when score >= threshold"


def threshold_document(run: dict, score_column: str, threshold: float, point: OperatingPoint | Outcomes | None,
                       review_from: float | None = None, preset: str | None = None) -> dict:
    """``run`` names the model: at least ``id``; ``model_sha256`` and ``model_kind`` when known. ``point`` is the
    measured result at this decision (the dashboard passes the :class:`Outcomes` it shows, band included)."""
    decision = Decision(score_column, threshold, review_from)  # refuses non-finite numbers and a reversed band
    return {
        "format": THRESHOLD_FORMAT,
        "run": run,
        "score_column": score_column,
        "threshold": decision.threshold,
        "rule": DECISION_RULE,
        "review_band": None if review_from is None else {"review_from": decision.review_from,
                                                          "reject_from": decision.threshold},
        "preset": preset,
        "metrics": None if point is None else point.to_dict(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def read_threshold_file(path: str | Path) -> dict:
    """A threshold file's document after every check; :class:`InputError` with one sentence otherwise.

    The threshold and the review band must be finite numbers (``NaN``, ``Infinity`` and ``1e400``,
    which JSON readers turn into infinity, are refused, and so is ``true``), and the band must end
    where the threshold is.
    """
    path = Path(path)
    try:
        document = json.loads(read_regular_file(path, MAX_THRESHOLD_FILE_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such threshold file.") from None
    except RecursionError:
        raise InputError(f"{path}: threshold file is nested too deeply to be a threshold file.") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read the threshold file ({error.strerror or error}).") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}: threshold file is not readable JSON.") from None
    if not isinstance(document, dict) or document.get("format") != THRESHOLD_FORMAT or \
            not isinstance(document.get("score_column"), str) or "threshold" not in document:
        raise InputError(f"{path}: not a {THRESHOLD_FORMAT} threshold file.")
    if document.get("run") is not None and not isinstance(document["run"], dict):
        raise InputError(f"{path}: 'run' must be a JSON object.")
    band = document.get("review_band")
    if band is not None and (not isinstance(band, dict) or "review_from" not in band or "reject_from" not in band):
        raise InputError(f"{path}: the review band must give review_from and reject_from.")
    try:
        decision = Decision(document["score_column"], document["threshold"],
                            None if band is None else band["review_from"])
        if band is not None and finite_number(band["reject_from"], "The end of the review band") != decision.threshold:
            raise ValueError(f"the review band ends at {band['reject_from']!r}, not at the threshold "
                             f"{decision.threshold:g}")
    except ValueError as error:
        raise InputError(f"{path}: {str(error)[0].lower()}{str(error)[1:].rstrip('.')}.") from None
    return document
