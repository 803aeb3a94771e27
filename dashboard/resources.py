"""What the server keeps for every session: where things live, cached data sets, models and scores.

Models and memory banks are cached per server (``st.cache_resource``; a detector guards its own
inference with a lock and is never trained in place), score tables per content (``st.cache_data``).
A :class:`DetectorKey` names everything that identifies the detector a page shows.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core.data.datasets import Dataset, open_dataset
from core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = ROOT / "assets" / "demo_model"
SAMPLES = ROOT / "assets" / "samples"
RUNS_ROOT = Path(os.environ.get("RESIDUAL_LAB_RUNS", ROOT / "runs"))
UPLOAD_ROOT = Path(tempfile.gettempdir()) / "residual-lab-uploads"
UPLOAD_LIFETIME_SECONDS = 24 * 3600
# folders on the server that the folder box may open: os.pathsep-separated; default the home folder and the project
DATA_ROOTS_VARIABLE = "RESIDUAL_LAB_DATA_ROOTS"


@dataclass(frozen=True)
class DetectorKey:
    """The model, the data and the detector choice: everything a cached detector or map depends on. A detector
    fitted on the spot that borrows nothing from the run (PaDiM, a memory bank on ImageNet features) has an
    empty model in its key (:func:`detector_key`), so choosing another run does not fit it again."""

    bundle_path: str
    model_sha256: str
    data_kind: str
    data_location: str
    fingerprint: str
    choice: object   # a session.DetectorChoice


def detector_key(bundle_path: str, model_sha256: str, data_kind: str, data_location: str, fingerprint: str,
                 choice) -> DetectorKey:
    borrows_the_run = choice.borrows_the_run
    return DetectorKey(bundle_path if borrows_the_run else "", model_sha256 if borrows_the_run else "", data_kind,
                       data_location, fingerprint, choice)


def data_roots() -> list[Path]:
    configured = os.environ.get(DATA_ROOTS_VARIABLE, "")
    roots = [Path(part) for part in configured.split(os.pathsep) if part.strip()] or [Path.home(), ROOT]
    return [root.resolve() for root in roots]


def allowed_data_folder(text: str) -> Path:
    """The folder a user typed, resolved, if it lies inside an allowed data root; :class:`InputError` if not."""
    path = Path(text).expanduser().resolve()
    if not any(path == root or root in path.parents for root in data_roots()):
        raise InputError(f"{text}: outside the folders this server may read "
                         f"(set {DATA_ROOTS_VARIABLE} to allow more).")
    return path


def save_uploaded_zip(content: bytes) -> Path:
    """Keep an uploaded data set zip outside the project tree, named by its content; uploads older
    than a day are removed on the way."""
    remove_old_uploads()
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = UPLOAD_ROOT / f"{digest}.zip"
    if not path.exists():
        from core.files import atomic_write_bytes

        atomic_write_bytes(path, content)
    return path


def remove_old_uploads(now: float | None = None) -> None:
    now = time.time() if now is None else now
    if not UPLOAD_ROOT.is_dir():
        return
    for path in UPLOAD_ROOT.iterdir():
        try:
            if path.is_file() and now - path.stat().st_mtime > UPLOAD_LIFETIME_SECONDS:
                path.unlink()
        except OSError:  # another server process removed it first
            pass


@st.cache_resource(show_spinner="Opening the data set…", max_entries=8)
def load_dataset(kind: str, location: str) -> Dataset:
    return open_dataset("demo" if kind == "demo" else location)


@st.cache_data(show_spinner=False, max_entries=8)
def training_images_traits(kind: str, location: str) -> dict:
    """What the data set's good training images are like: how many, their native long side and whether they are
    colour (a sample of files is read), for the training form's defaults."""
    from core.data.native import default_channels, native_long_side

    paths = [sample.path for sample in load_dataset(kind, location).train_good]
    return {"count": len(paths), "native": native_long_side(paths), "channels": default_channels(paths)}


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def load_detector(bundle_path: str, model_sha256: str):
    from core.runs.bundles import load_bundle

    return load_bundle(bundle_path)


@st.cache_resource(show_spinner="Fitting the detector on the good training images…", max_entries=4)
def fit_on_good_images(key: DetectorKey):
    """A memory bank or PaDiM fitted on the data set's good training images (never shared mutable state)."""
    from core.detectors import lends_its_encoder
    from core.detectors.common.patch_features import PACKAGED_BACKBONE
    from core.detectors.memory_bank.detector import MemoryBankDetector
    from core.detectors.padim.detector import PadimDetector

    dataset = load_dataset(key.data_kind, key.data_location)
    if key.choice.kind == "padim":
        detector = PadimDetector()
    elif key.choice.backbone == "encoder":
        run = load_detector(key.bundle_path, key.model_sha256)
        if not lends_its_encoder(run.kind, getattr(run, "patch_size", None), run.channels):
            raise InputError("A memory bank on the model's encoder needs an autoencoder run trained on whole grey "
                             f"images; this one is {run.kind}" + (" trained on patches" if getattr(
                                 run, "patch_size", None) else "") + ".")
        detector = MemoryBankDetector(run, backbone="encoder", coreset_ratio=key.choice.coreset_ratio)
    else:
        detector = MemoryBankDetector(None, backbone=key.choice.backbone, coreset_ratio=key.choice.coreset_ratio)
    if not dataset.train_good:
        raise InputError(f"{dataset.root}: this detector needs good training images, and this data set has none.")
    if key.choice.kind == "padim" or key.choice.backbone == PACKAGED_BACKBONE:
        # the shared ImageNet network built while the training images are decoded (Pillow leaves Python's lock free;
        # building the network needs it): when the warm-up below has not had its quiet moment yet, PaDiM chosen right
        # after the memory bank was shown waited for both one after the other. The fit waits for it under its lock.
        _warm_packaged_network_in_a_thread("build-packaged-network")
    return detector.fit(dataset.load(dataset.train_good, detector.input_size, detector.channels).images)


# The shared ImageNet network's outputs kept by the server (core.detectors.common.patch_features): enough for the
# demo's training and test images with both of its layers (about 200 MB), so that choosing PaDiM after the memory
# bank, or the NCAE on features after either, does not run the network again on the same images.
BACKBONE_OUTPUTS_KEPT_BYTES = 512 * 2**20


def keep_backbone_outputs() -> None:
    from core.detectors.common.patch_features import keep_backbone_outputs

    keep_backbone_outputs(BACKBONE_OUTPUTS_KEPT_BYTES)


def keep_keras_state_between_runs() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` at the end of every script run.

    Streamlit does it for scripts that build a new Keras model on each run. Here networks are built once and kept
    (``st.cache_resource``), and the call cost every rerun a full garbage collection (0.3 s with the demo model and
    the ImageNet network loaded), emptied TensorFlow's kernel cache (the next scoring of the demo's test images took
    0.2 s instead of 0.08 s), and reset Keras's global state for every thread, a training in the background
    included. Streamlit's other clean-up, closing matplotlib's figures, still runs. Nothing changes if a later
    Streamlit no longer has the hook.
    """
    from streamlit.runtime.scriptrunner import script_runner

    if not callable(getattr(script_runner, "_clean_problem_modules", None)):
        return

    def close_matplotlib_figures_only() -> None:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close("all")

    script_runner._clean_problem_modules = close_matplotlib_figures_only


# When the last page run ended and how many are running, for the warm-up below (fragments do not count: they are light).
_PAGE_RUNS = {"running": 0, "last_ended": 0.0}
_PAGE_RUNS_LOCK = threading.Lock()
# the warm-up waits for the pages to have been idle this long: a user reading the page, not one clicking on
QUIET_SECONDS_BEFORE_WARMING = 2.0


@contextmanager
def page_run():
    """Around each whole run of a page (``app.py``), so that background work can wait for a quiet moment."""
    with _PAGE_RUNS_LOCK:
        _PAGE_RUNS["running"] += 1
    try:
        yield
    finally:
        with _PAGE_RUNS_LOCK:
            _PAGE_RUNS["running"] -= 1
            _PAGE_RUNS["last_ended"] = time.monotonic()


def _wait_until_the_pages_are_quiet(poll_seconds: float = 0.25) -> None:
    while True:
        with _PAGE_RUNS_LOCK:
            quiet = (_PAGE_RUNS["running"] == 0
                     and time.monotonic() - _PAGE_RUNS["last_ended"] >= QUIET_SECONDS_BEFORE_WARMING)
        if quiet:
            return
        time.sleep(poll_seconds)


@st.cache_resource(show_spinner=False)
def warm_packaged_network_in_background() -> threading.Thread:
    """Once per server process, once Data & Model has been drawn: the ImageNet network that the memory bank,
    PaDiM and the NCAE on features share is built and traced in a background thread while the user reads the
    page, so that choosing one of them waits about 2 s less. Calls that need the network meanwhile wait for it
    (it is built under its lock), and a failure here is only a missed head start: the choice itself reports it.

    It starts only once no page has run for :data:`QUIET_SECONDS_BEFORE_WARMING`: building the network holds
    Python's lock for a second or two, and a click during it waited that long for the page to answer (the memory
    bank's controls stayed 2-3 s after choosing PaDiM, against 0.2-0.5 s without the warm-up)."""
    return _warm_packaged_network_in_a_thread("warm-packaged-network", _wait_until_the_pages_are_quiet)


def _warm_packaged_network_in_a_thread(name: str, first=None) -> threading.Thread:
    """The shared ImageNet network built and traced in a background thread (after ``first()``, when given). A failure
    is only a missed head start: the detector that needs the network reports it in words when it is chosen."""
    def warm() -> None:
        from core.detectors.common.patch_features import warm_packaged_network

        if first is not None:
            first()
        try:
            warm_packaged_network()
        except Exception:  # noqa: BLE001
            pass

    thread = threading.Thread(target=warm, name=name, daemon=True)
    thread.start()
    return thread


def active_detector(key: DetectorKey):
    """The detector the pages show: the run itself, or a memory bank or PaDiM fitted for this data."""
    if key.choice.kind == "run":
        return load_detector(key.bundle_path, key.model_sha256)
    from core.detectors.features import BackboneUnavailable

    try:
        return fit_on_good_images(key)
    except BackboneUnavailable as error:  # the weights went away after the choice was made
        raise InputError(str(error)) from None


@st.cache_data(show_spinner="Scoring the test images…", max_entries=16)
def score_table(key: DetectorKey):
    """The data set's test images (or all of them) scored by the active detector, with their files."""
    from core.evaluation.scoring import score_samples

    detector = active_detector(key)
    dataset = load_dataset(key.data_kind, key.data_location)
    scored = score_samples(detector, dataset, dataset.test or dataset.samples)
    table = scored.table
    table["source"] = [str(sample.path) for sample in scored.kept_samples]
    table["mask"] = [str(sample.mask_path or "") for sample in scored.kept_samples]
    return table, scored.errors


def fingerprint(dataset: Dataset) -> str:
    """Changes whenever a file of the data set is added, removed or rewritten."""
    digest = hashlib.sha256()
    for sample in dataset.samples:
        stat = sample.path.stat()
        digest.update(f"{sample.path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
