"""Compare's quick comparison: the chosen model and a memory bank on its encoder, on the test images, kept on disk
across restarts of the server (``runs/cache/compare/``), since the bank alone takes seconds to build."""

import hashlib
import json

import streamlit as st

from core.defaults import DEFAULT_CORESET_RATIO
from core.detectors import DETECTOR_NAMES, label, lends_its_encoder
from core.detectors.memory_bank.detector import MEMORY_BANK_COLUMN
from core.evaluation.compare import (AUTOENCODER_SCORE_COLUMN, DETECTOR_LABELS, compare_fitted,
                                     fitted_comparison_from_json, fitted_comparison_to_json)
from core.evaluation.evaluate import load_test_images
from core.files import atomic_write_json
from dashboard import resources, session

BANK_ON_ENCODER = session.DetectorChoice("memory_bank", "encoder", DEFAULT_CORESET_RATIO)
# Bumped whenever what the quick comparison computes changes, so that no figure saved by an older release is shown.
QUICK_COMPARISON_VERSION = 1
# copies kept (one per model and data set; each a few kilobytes): the oldest beyond these are removed
SAVED_COMPARISONS_KEPT = 64


def saved_comparison_path(bank_key: resources.DetectorKey):
    """Where the quick comparison of this model on this data is kept: named by the model's digest, the data's
    fingerprint (its files, sizes and times) and the bank's settings."""
    identity = json.dumps([QUICK_COMPARISON_VERSION, bank_key.model_sha256, bank_key.data_kind, bank_key.data_location,
                           bank_key.fingerprint, bank_key.choice.coreset_ratio])
    return resources.RUNS_ROOT / "cache" / "compare" / f"{hashlib.sha256(identity.encode()).hexdigest()}.json"


@st.cache_data(show_spinner=False, max_entries=8)  # the page's progress box says what is happening
def quick_comparison(bank_key: resources.DetectorKey):
    """From the copy on disk when there is a sound one, else computed and kept."""
    path = saved_comparison_path(bank_key)
    try:
        saved = fitted_comparison_from_json(json.loads(path.read_text(encoding="utf-8")))
        # only the names this page gives its rows: a file edited on disk cannot put its own text in the legend
        if set(saved["figures"]) <= known_row_names():
            return saved
    except (OSError, ValueError, KeyError, TypeError):   # missing, unreadable or damaged: computed again
        pass
    comparison = _compare_now(bank_key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, fitted_comparison_to_json(comparison))
        saved_copies = sorted(path.parent.glob("*.json"), key=lambda copy: copy.stat().st_mtime, reverse=True)
        for old in saved_copies[SAVED_COMPARISONS_KEPT:]:
            old.unlink(missing_ok=True)
    except OSError:   # a read-only or full disk costs the next server a recomputation, nothing more
        pass
    return comparison


def known_row_names() -> set[str]:
    return set(DETECTOR_LABELS.values()) | {f"{label(kind)} run" for kind in DETECTOR_NAMES}


def _compare_now(bank_key: resources.DetectorKey):
    run = resources.load_detector(bank_key.bundle_path, bank_key.model_sha256)
    test = load_test_images(resources.load_dataset(bank_key.data_kind, bank_key.data_location), int(run.input_size),
                            run.channels)
    if not lends_its_encoder(run.kind, getattr(run, "patch_size", None), run.channels):
        return compare_fitted({f"{label(run.kind)} run": (run, run.primary_score)}, test)
    bank = resources.active_detector(bank_key)
    return compare_fitted({DETECTOR_LABELS[run.model]: (run, AUTOENCODER_SCORE_COLUMN),
                           DETECTOR_LABELS[f"memory_bank_{run.model}"]: (bank, MEMORY_BANK_COLUMN)}, test)
