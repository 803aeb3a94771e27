"""Compare's quick comparison: the chosen model and a memory bank on its encoder, on the test images, kept on disk
across restarts of the server (``runs/cache/compare/``), since the bank alone takes seconds to build. The model's
part (:func:`model_comparison`, with the supervised reference) is ready first, so a first visit shows it while the
bank is built."""

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


@st.cache_data(show_spinner=False, max_entries=8)
def model_comparison(bank_key: resources.DetectorKey):
    """The model as it is and the supervised reference on its residual statistics, without the memory bank: what
    the page shows while the bank is built (the quick comparison's rows but one)."""
    run, test = _run_and_test_images(bank_key)
    return compare_fitted({_model_row(run): (run, _model_column(run))}, test)


def known_row_names() -> set[str]:
    return set(DETECTOR_LABELS.values()) | {f"{label(kind)} run" for kind in DETECTOR_NAMES}


@st.cache_resource(show_spinner=False, max_entries=4)   # read by both steps of a first visit
def _run_and_test_images(bank_key: resources.DetectorKey):
    run = resources.load_detector(bank_key.bundle_path, bank_key.model_sha256)
    return run, load_test_images(resources.load_dataset(bank_key.data_kind, bank_key.data_location),
                                 int(run.input_size), run.channels)


def _lends_its_encoder(run) -> bool:
    return lends_its_encoder(run.kind, getattr(run, "patch_size", None), run.channels)


def _model_row(run) -> str:
    return DETECTOR_LABELS[run.model] if _lends_its_encoder(run) else f"{label(run.kind)} run"


def _model_column(run) -> str:
    return AUTOENCODER_SCORE_COLUMN if _lends_its_encoder(run) else run.primary_score


def _compare_now(bank_key: resources.DetectorKey):
    run, test = _run_and_test_images(bank_key)
    if not _lends_its_encoder(run):
        return compare_fitted({_model_row(run): (run, _model_column(run))}, test)
    own, model_row = model_comparison(bank_key), _model_row(run)
    bank = resources.active_detector(bank_key)
    banked = compare_fitted({DETECTOR_LABELS[f"memory_bank_{run.model}"]: (bank, MEMORY_BANK_COLUMN)}, test)
    # the model's row first, then the bank's, then the supervised reference, as one comparison of all of them
    order = [model_row, *banked["figures"], *(name for name in own["figures"] if name != model_row)]
    figures, curves = own["figures"] | banked["figures"], own["curves"] | banked["curves"]
    return {"figures": {name: figures[name] for name in order}, "curves": {name: curves[name] for name in order},
            "folds": own["folds"]}
