"""Run bundles: the files a fitted detector needs, plus a ``manifest.json`` that vouches for them.

The manifest records what a person needs to trust and reproduce a detector (kind, input size,
preprocessing, parameters, training data summary, history, library versions, creation time, the
default decision) and the SHA-256 of every file: the main one (``model_file``, whose digest
``model_sha256`` identifies the run, and threshold files name) and any others (``files``). Loading
re-checks every hash before anything reads a file; Keras models load with ``safe_mode=True`` and
arrays with ``allow_pickle=False``. Any failed check refuses the bundle with one clear sentence.

Each detector says what its state is (``bundle_state``, which writes its files) and rebuilds
itself from it (``from_bundle``); this module does the rest, the same for every detector.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import re
from pathlib import Path

import numpy as np

from core.detectors.features import BackboneUnavailable
from core.detectors import DETECTOR_NAMES, detector_class, score_columns_of
from core.errors import BundleError
from core.decision import Decision, is_finite_number
from core.files import atomic_write_json
from core.data.frame_check import FrameLimits
from core.data.images import preprocessing_description
from core.detectors.saving import sha256_of
from core.detectors.autoencoder.stat_distance import StatDistance

MANIFEST_FILE = "manifest.json"
# The manifest's own digest, over its canonical form (every other field, keys sorted, no spaces): the run's
# decision (default_decision, frame_check) cannot be edited without the run being refused. A threshold file is
# the way to decide otherwise; it is named in every verdict's provenance.
MANIFEST_DIGEST = "manifest_sha256"
BUNDLE_FORMAT = "residual-lab-bundle/1"
# bounded before anything is decoded or built: a manifest cannot make the program allocate a huge input
INPUT_SIZE_RANGE = (16, 1024)
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")


def save_bundle(detector, directory: str | Path, data_summary: dict | None = None) -> Path:
    """Write ``detector`` as a bundle; the manifest is written last, so a crash leaves no loadable half."""
    import keras
    import tensorflow

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = dict(detector.bundle_state(directory))
    model_file = state.pop("model_file")
    extra_files = state.pop("files", [])
    epochs_run = state.pop("epochs_run", None)
    manifest = {
        "format": BUNDLE_FORMAT,
        "model_kind": detector.kind,
        "input_size": int(detector.input_size),
        "parameters": detector.run_parameters(),
        "preprocessing": preprocessing_description(int(detector.input_size), int(detector.channels)),
        "channels": int(detector.channels),
        "score_sign": "higher = more anomalous; a threshold t rejects a part when score >= t",
        "score_columns": list(detector.score_columns),
        "primary_score": detector.primary_score,
        "training_data": data_summary or {},
        "training": {"train_images": int(detector.n_train_images_),
                     "held_out_images": int(detector.n_held_out_images_),
                     "seconds": round(float(detector.training_seconds_), 2)}
                    | ({"epochs_run": epochs_run} if epochs_run is not None else {}),
        **state,
        "frame_check": detector.frame_limits_.to_json() if detector.frame_limits_ is not None else None,
        "default_decision": detector.default_decision_.to_json() if detector.default_decision_ is not None else None,
        "map_scales": detector.map_scales_ or {},
        "versions": {"python": platform.python_version(), "tensorflow": tensorflow.__version__,
                     "keras": keras.__version__, "numpy": np.__version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_file": model_file,
        "model_sha256": sha256_of(directory / model_file),
        "files": {name: sha256_of(directory / name) for name in extra_files},
    }
    manifest = {key: value for key, value in manifest.items() if value is not None}
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    atomic_write_json(directory / MANIFEST_FILE, manifest)
    return directory


def manifest_digest(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON, its own digest field left out."""
    fields = {key: value for key, value in manifest.items() if key != MANIFEST_DIGEST}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def is_sealed(manifest: dict) -> bool:
    """Whether the manifest carries its own digest (runs saved before it did load, and say they are unsealed)."""
    return MANIFEST_DIGEST in manifest


def read_manifest(directory: str | Path, reuse_digests: bool = False) -> dict:
    """The manifest of a bundle after the checks that need no Keras: presence, format, values, hashes.

    ``reuse_digests`` (for listing runs, not for loading one) skips re-hashing files unchanged since they
    were last hashed (:func:`sha256_of`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: no such model bundle folder.")
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{directory}: not a finished model bundle (no {MANIFEST_FILE}).")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BundleError(f"{manifest_path}: manifest is not readable JSON.") from None
    required = ("format", "model_kind", "input_size", "model_file", "model_sha256")
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT or \
            any(key not in manifest for key in required):
        raise BundleError(f"{manifest_path}: not a {BUNDLE_FORMAT} manifest.")
    if MANIFEST_DIGEST in manifest and manifest[MANIFEST_DIGEST] != manifest_digest(manifest):
        raise BundleError(f"{manifest_path}: the manifest was edited after the run was saved (its SHA-256 does not "
                          "match); refusing the run. Decide with a threshold file instead.")
    problem = manifest_problem(manifest)
    if problem:
        raise BundleError(f"{manifest_path}: {problem}")
    for name, digest in {manifest["model_file"]: manifest["model_sha256"], **manifest.get("files", {})}.items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{directory}: {name}, named in the manifest, is missing.")
        if sha256_of(path, reuse=reuse_digests) != digest:
            raise BundleError(f"{path}: does not match the SHA-256 in its manifest "
                              "(it was altered or damaged); refusing to load it.")
    return manifest


def manifest_problem(manifest: dict) -> str:
    """What is wrong with a manifest's values (types and ranges), in one sentence; ``""`` when nothing.

    Every value the program later uses is checked here, so a tampered or damaged run is refused
    when it is listed, not when a page or a command trips over it.
    """
    from core.detectors.autoencoder.losses import LOSSES

    def is_int(value, low, high):
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    def is_number(value, low=-float("inf")):
        return is_finite_number(value) and low <= value

    def is_digest(value):
        return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)

    kind = manifest["model_kind"]
    if kind not in DETECTOR_NAMES:
        return f"unknown model kind {kind!r}."
    if not is_int(manifest["input_size"], *INPUT_SIZE_RANGE):
        return f"input size must be a whole number from {INPUT_SIZE_RANGE[0]} to {INPUT_SIZE_RANGE[1]}."
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        return "'files' must map file names to SHA-256 digests."
    for name, digest in {manifest["model_file"]: manifest["model_sha256"], **files}.items():
        if not isinstance(name, str) or not _PLAIN_NAME.match(name) or name == MANIFEST_FILE:
            return f"{name!r} is not a plain file name."
        if not is_digest(digest):
            return f"the SHA-256 of {name} is not a hexadecimal digest."
    parameters = manifest.get("parameters", {})
    if not isinstance(parameters, dict):
        return "parameters must be a JSON object."
    checks = {
        "widths": lambda v: isinstance(v, list) and 0 < len(v) <= 8 and all(is_int(w, 1, 4096) for w in v),
        "bottleneck": lambda v: is_int(v, 1, 4096),
        "map_sigma": lambda v: v is None or (is_number(v, 0.0) and v <= 64),
        "noise_std": lambda v: is_number(v, 0.0) and v <= 1,
        "loss": lambda v: v in LOSSES,
        "seed": lambda v: is_int(v, -2**63, 2**63),
        "epochs": lambda v: is_int(v, 1, 100_000),
        "batch_size": lambda v: is_int(v, 1, 100_000),
        "patch_size": lambda v: v is None or is_int(v, 16, INPUT_SIZE_RANGE[1]),
        "patches_per_epoch": lambda v: is_int(v, 1, 10_000_000),
        "channels": lambda v: v in (1, 3),
    }
    for key, check in checks.items():
        if key in parameters and not check(parameters[key]):
            return f"parameter {key!r} has an invalid value {parameters[key]!r}."
    if manifest.get("channels", 1) not in (1, 3):
        return "channels must be 1 (grey) or 3 (colour)."
    history = manifest.get("history", {})
    if not isinstance(history, dict) or not all(
            isinstance(values, list) and all(is_number(value) or value is None for value in values)
            for values in history.values()):
        return "the training history must map names to lists of numbers."
    for key in ("training", "training_data"):
        if not isinstance(manifest.get(key, {}), dict):
            return f"{key!r} must be a JSON object."
    training = manifest.get("training", {})
    if any(not is_number(training.get(key, 0), 0.0) for key in ("train_images", "held_out_images", "seconds")):
        return "the training summary holds a value that is not a number."
    if "stat_distance" in score_columns_of(kind):   # the residual detectors, on pixels or on features
        try:
            StatDistance.from_json(manifest["stat_distance"])
        except (KeyError, TypeError, ValueError):
            return "the stat_distance reference is damaged."
    if "frame_check" in manifest:
        try:
            FrameLimits.from_json(manifest["frame_check"])
        except (TypeError, ValueError) as error:
            return f"the frame check is damaged ({error})"
    scales = manifest.get("map_scales", {})
    if not isinstance(scales, dict) or any(key not in ("anomaly", "residual") or not is_number(value) or value <= 0
                                           for key, value in scales.items()):
        return "the picture colour scales must be positive numbers."
    if "default_decision" in manifest:
        try:
            decision = Decision.from_json(manifest["default_decision"])
        except (TypeError, ValueError) as error:
            return f"the default decision is damaged ({error})"
        if decision.column not in score_columns_of(kind):
            return f"the default decision names an unknown score column {decision.column!r}."
    return ""


def load_bundle(directory: str | Path):
    """Load a bundle into a fitted detector of the kind its manifest names."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    try:
        detector = detector_class(manifest["model_kind"]).from_bundle(directory, manifest)
    except BundleError:
        raise
    except BackboneUnavailable as error:
        raise BundleError(f"{directory}: {error}") from None
    except (KeyError, TypeError, ValueError) as error:  # a value the checks above do not cover
        raise BundleError(f"{directory}: the bundle's {manifest['model_kind']} state is damaged ({error}).") \
            from None
    training = manifest.get("training", {})
    detector.n_train_images_ = training.get("train_images", 0)
    detector.n_held_out_images_ = training.get("held_out_images", 0)
    detector.training_seconds_ = training.get("seconds", 0.0)
    # runs saved before frame checks and default decisions load and score; they have neither
    detector.frame_limits_ = FrameLimits.from_json(manifest["frame_check"]) if "frame_check" in manifest else None
    detector.default_decision_ = (Decision.from_json(manifest["default_decision"])
                                  if "default_decision" in manifest else None)
    detector.map_scales_ = {key: float(value) for key, value in manifest.get("map_scales", {}).items()} or None
    detector.manifest_ = manifest
    return detector
