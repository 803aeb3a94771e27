"""Model bundles: a ``model.keras`` file plus a ``manifest.json`` that vouches for it.

The manifest records what a person needs to trust and reproduce a model (kind, input size,
preprocessing, training data summary, history, library versions, creation time) and the SHA-256 of
the model file. Loading re-checks the hash before Keras sees the file and loads with
``safe_mode=True``; any failed check refuses the bundle with one clear sentence.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from pathlib import Path

from core.decision import Decision, is_finite_number
from core.defaults import MODEL_KINDS
from core.errors import BundleError
from core.files import atomic_path, atomic_write_json
from core.frame_check import FrameLimits
from core.stat_distance import StatDistance

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
BUNDLE_FORMAT = "residual-lab-bundle/1"
PREPROCESSING = {"color": "grayscale (ITU-R 601-2 luma)", "resize": "bilinear to input_size×input_size",
                 "orientation": "EXIF orientation applied",
                 "scale": "8-bit pixel / 255, 16-bit / 65535, float taken as is (must be in [0, 1]); float32"}
# bounded before anything is decoded or built: a manifest cannot make the program allocate a huge input
INPUT_SIZE_RANGE = (16, 1024)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(detector, directory: str | Path, data_summary: dict | None = None) -> Path:
    """Write ``detector`` as a bundle; the manifest is written last, so a crash leaves no loadable half."""
    import keras
    import numpy
    import tensorflow

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / MODEL_FILE, suffix=".keras") as temporary:
        # a fresh, never-compiled twin: the bundle is for inference, and optimizer state would triple it
        network = keras.Model.from_config(detector.model_.get_config())
        network.set_weights(detector.model_.get_weights())
        network.save(temporary)
    manifest = {
        "format": BUNDLE_FORMAT,
        "model_kind": detector.model,
        "input_size": int(detector.input_size),
        "parameters": {key: (list(value) if isinstance(value, tuple) else value)
                       for key, value in detector.get_params().items()},
        "preprocessing": PREPROCESSING,
        "score_sign": "higher = more anomalous; a threshold t rejects a part when score >= t",
        "training_data": data_summary or {},
        "training": {"train_images": detector.n_train_images_, "held_out_images": detector.n_held_out_images_,
                     "seconds": round(detector.training_seconds_, 2), "epochs_run": len(detector.history_["loss"])},
        "history": detector.history_,
        "stat_distance": detector.stat_distance_.to_json(),
        "frame_check": detector.frame_limits_.to_json(),
        "default_decision": detector.default_decision_.to_json(),
        "map_scales": detector.map_scales_,
        "versions": {"python": platform.python_version(), "tensorflow": tensorflow.__version__,
                     "keras": keras.__version__, "numpy": numpy.__version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_file": MODEL_FILE,
        "model_sha256": sha256_of(directory / MODEL_FILE),
    }
    atomic_write_json(directory / MANIFEST_FILE, manifest)
    return directory


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a bundle after the checks that need no Keras: presence, format, hash."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: no such model bundle folder.")
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{directory}: not a finished model bundle (no {MANIFEST_FILE}).")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise BundleError(f"{manifest_path}: manifest is not readable JSON.") from None
    required = ("format", "model_kind", "input_size", "model_file", "model_sha256", "stat_distance")
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT or \
            any(key not in manifest for key in required):
        raise BundleError(f"{manifest_path}: not a {BUNDLE_FORMAT} manifest.")
    problem = manifest_problem(manifest)
    if problem:
        raise BundleError(f"{manifest_path}: {problem}")
    model_path = directory / manifest["model_file"]
    if not model_path.is_file():
        raise BundleError(f"{directory}: the model file named in the manifest is missing.")
    if sha256_of(model_path) != manifest["model_sha256"]:
        raise BundleError(f"{model_path}: model file does not match the SHA-256 in its manifest "
                          "(it was altered or damaged); refusing to load it.")
    return manifest


def manifest_problem(manifest: dict) -> str:
    """What is wrong with a manifest's values (types and ranges), in one sentence; ``""`` when nothing.

    Every value the program later uses is checked here, so a tampered or damaged run is refused
    when it is listed, not when a page or a command trips over it.
    """
    from core.losses import LOSSES
    from core.residuals import SCORE_COLUMNS

    def is_int(value, low, high):
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    def is_number(value, low=-float("inf")):
        return is_finite_number(value) and low <= value

    if manifest["model_kind"] not in MODEL_KINDS:
        return f"unknown model kind {manifest['model_kind']!r}."
    if not is_int(manifest["input_size"], *INPUT_SIZE_RANGE):
        return f"input size must be a whole number from {INPUT_SIZE_RANGE[0]} to {INPUT_SIZE_RANGE[1]}."
    name = manifest["model_file"]
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        return "the model file must be a plain file name."
    digest = manifest["model_sha256"]
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return "the model's SHA-256 is not a hexadecimal digest."
    parameters = manifest.get("parameters", {})
    if not isinstance(parameters, dict):
        return "parameters must be a JSON object."
    checks = {
        "widths": lambda v: isinstance(v, list) and 0 < len(v) <= 8 and all(is_int(w, 1, 4096) for w in v),
        "bottleneck": lambda v: is_int(v, 1, 4096),
        "map_sigma": lambda v: is_number(v, 0.0) and v <= 64,
        "noise_std": lambda v: is_number(v, 0.0) and v <= 1,
        "loss": lambda v: v in LOSSES,
        "seed": lambda v: is_int(v, -2**63, 2**63),
        "epochs": lambda v: is_int(v, 1, 100_000),
        "batch_size": lambda v: is_int(v, 1, 100_000),
    }
    for key, check in checks.items():
        if key in parameters and not check(parameters[key]):
            return f"parameter {key!r} has an invalid value {parameters[key]!r}."
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
        if decision.column not in SCORE_COLUMNS:
            return f"the default decision names an unknown score column {decision.column!r}."
    return ""


def load_bundle(directory: str | Path):
    """Load a bundle into a fitted :class:`~core.detector.ResidualDetector`."""
    import keras

    import core.layers  # noqa: F401  registers NeighborConv2D for deserialisation
    from core.detector import ResidualDetector

    directory = Path(directory)
    manifest = read_manifest(directory)
    try:
        network = keras.saving.load_model(directory / manifest["model_file"], compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad archive
        raise BundleError(f"{directory}: Keras could not load the model ({type(error).__name__}).") from None
    size = int(manifest["input_size"])
    if tuple(network.input_shape[1:]) != (size, size, 1):
        raise BundleError(f"{directory}: the model's input shape {network.input_shape[1:]} does not match "
                          f"the manifest's input size {size}.")
    parameters = dict(manifest.get("parameters", {}))
    parameters.update(model=manifest["model_kind"], input_size=size)
    known = ResidualDetector().get_params()
    detector = ResidualDetector(**{key: value for key, value in parameters.items() if key in known})
    detector.model_ = network
    detector.history_ = manifest.get("history", {})
    detector.n_train_images_ = manifest.get("training", {}).get("train_images", 0)
    detector.n_held_out_images_ = manifest.get("training", {}).get("held_out_images", 0)
    detector.training_seconds_ = manifest.get("training", {}).get("seconds", 0.0)
    detector.stat_distance_ = StatDistance.from_json(manifest["stat_distance"])  # checked by read_manifest
    # runs saved before frame checks and default decisions load and score; they have neither
    detector.frame_limits_ = FrameLimits.from_json(manifest["frame_check"]) if "frame_check" in manifest else None
    detector.default_decision_ = (Decision.from_json(manifest["default_decision"])
                                  if "default_decision" in manifest else None)
    detector.map_scales_ = {key: float(value) for key, value in manifest.get("map_scales", {}).items()} or None
    detector.manifest_ = manifest
    return detector
