"""What every page shares: the chosen data and model, cached scores, and the current threshold.

Models are cached per server (``st.cache_resource``; the detector guards its own inference with a
lock and is never trained in place), score tables per content (``st.cache_data``), and the user's
choices per browser session (``st.session_state``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from core.bundles import read_manifest
from core.datasets import Dataset, open_dataset
from core.decision import DEFAULT_FALSE_REJECT_RATE, Decision
from core.decision import default_decision as core_default_decision
from core.defaults import DEFAULT_CORESET_RATIO
from core.detector import SCORE_COLUMNS
from core.errors import InputError
from core.memory_bank import MEMORY_BANK_COLUMN
from core.metrics import ThresholdTable

ROOT = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = ROOT / "assets" / "demo_model"
SAMPLES = ROOT / "assets" / "samples"
RUNS_ROOT = Path(os.environ.get("RESIDUAL_LAB_RUNS", ROOT / "runs"))
UPLOAD_ROOT = Path(tempfile.gettempdir()) / "residual-lab-uploads"
UPLOAD_LIFETIME_SECONDS = 24 * 3600
# folders on the server that the folder box may open: os.pathsep-separated; default the home folder and the project
DATA_ROOTS_VARIABLE = "RESIDUAL_LAB_DATA_ROOTS"


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


def training_data_mismatch(space: "Workspace") -> str:
    """A sentence when the model was trained on other data than the data set in use, else ``""``."""
    trained_on = space.manifest.get("training_data", {})
    data = data_choice()
    if Path(model_choice().path).resolve() == DEMO_BUNDLE.resolve():
        same = data.kind == "demo"
    else:
        source = trained_on.get("source", "")
        same = bool(source) and Path(source).resolve() == Path(space.dataset.root).resolve()
    if same:
        return ""
    return (f"The model was trained on other data ({trained_on.get('layout', '?')} layout, "
            f"{trained_on.get('train_good', '?')} good images) than the data set in use; its scores and default "
            "threshold may not fit these images.")


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
    kind: str                  # "autoencoder" or "memory_bank"
    backbone: str = "encoder"  # memory bank only
    coreset_ratio: float = DEFAULT_CORESET_RATIO

    @property
    def label(self) -> str:
        if self.kind == "autoencoder":
            return "Autoencoder residuals"
        where = "the model's encoder" if self.backbone == "encoder" else f"ImageNet {self.backbone}"
        return f"Memory bank on {where} (coreset {self.coreset_ratio:.0%})"


DEMO_DATA = DataChoice("demo", "", "Built-in demo set (synthetic cast impellers)")
DEMO_MODEL = ModelChoice(str(DEMO_BUNDLE), "Demo NCAE (assets/demo_model)")
AUTOENCODER = DetectorChoice("autoencoder")


def data_choice() -> DataChoice:
    return st.session_state.setdefault("data_choice", DEMO_DATA)


def model_choice() -> ModelChoice:
    return st.session_state.setdefault("model_choice", DEMO_MODEL)


def detector_choice() -> DetectorChoice:
    return st.session_state.setdefault("detector_choice", AUTOENCODER)


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
    for key in ("threshold", "threshold_input", "threshold_slider", "review_from", "review_slider"):
        st.session_state.pop(key, None)
    if column_too:
        st.session_state.pop("score_column", None)


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
    import time

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


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def load_detector(bundle_path: str, model_sha256: str):
    from core.bundles import load_bundle

    return load_bundle(bundle_path)


@st.cache_resource(show_spinner="Building the memory bank from the good training images…", max_entries=4)
def load_memory_bank(bundle_path: str, model_sha256: str, kind: str, location: str, fingerprint: str,
                     choice: DetectorChoice):
    """A memory bank fitted on the data set's good training images (never shared mutable state)."""
    from core.memory_bank import MemoryBankDetector

    autoencoder = load_detector(bundle_path, model_sha256)
    dataset = load_dataset(kind, location)
    detector = MemoryBankDetector(autoencoder, backbone=choice.backbone, coreset_ratio=choice.coreset_ratio)
    if not dataset.train_good:
        raise InputError(f"{dataset.root}: the memory bank needs good training images, and this data set has none.")
    good = dataset.load(dataset.train_good, detector.input_size).images
    return detector.fit(good)


def active_detector(bundle_path: str, model_sha256: str, kind: str, location: str, fingerprint: str,
                    choice: DetectorChoice):
    """The detector the pages show: the autoencoder itself or a memory bank built for this data."""
    if choice.kind == "autoencoder":
        return load_detector(bundle_path, model_sha256)
    from core.memory_bank import BackboneUnavailable

    try:
        return load_memory_bank(bundle_path, model_sha256, kind, location, fingerprint, choice)
    except BackboneUnavailable as error:  # the weights went away after the choice was made
        raise InputError(str(error)) from None


def current_detector():
    choice = model_choice()
    manifest = read_manifest(choice.path)
    return load_detector(choice.path, manifest["model_sha256"]), manifest


def current_dataset() -> Dataset:
    choice = data_choice()
    return load_dataset(choice.kind, choice.location)


@st.cache_data(show_spinner="Scoring the test images…", max_entries=16)
def _score_table(bundle_path: str, model_sha256: str, kind: str, location: str, fingerprint: str,
                 choice: DetectorChoice = AUTOENCODER):
    from core.pipeline import score_samples

    detector = active_detector(bundle_path, model_sha256, kind, location, fingerprint, choice)
    dataset = load_dataset(kind, location)
    samples = dataset.test or dataset.samples
    scored = score_samples(detector, dataset, samples)
    table = scored.table
    table["source"] = [str(sample.path) for sample in scored.kept_samples]
    table["mask"] = [str(sample.mask_path or "") for sample in scored.kept_samples]
    return table, scored.errors


def _fingerprint(dataset: Dataset) -> str:
    digest = hashlib.sha256()
    for sample in dataset.samples:
        stat = sample.path.stat()
        digest.update(f"{sample.path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


@dataclass
class Workspace:
    """Everything a page needs about the current data, model and scores."""

    dataset: Dataset
    detector: object          # the active detector: the autoencoder or a memory bank
    manifest: dict            # the autoencoder bundle's manifest
    table: pd.DataFrame
    errors: dict[str, str]
    choice: DetectorChoice = AUTOENCODER
    fingerprint: str = ""

    @property
    def is_autoencoder(self) -> bool:
        return self.choice.kind == "autoencoder"

    def map_key(self) -> tuple:
        """Everything that identifies the active detector, for cached map pages."""
        data = data_choice()
        return (model_choice().path, self.manifest["model_sha256"], data.kind, data.location, self.fingerprint,
                self.choice)

    @property
    def labelled(self) -> pd.DataFrame:
        return self.table[self.table["label"].isin(["good", "defect"])]

    @property
    def has_defects(self) -> bool:
        return bool((self.table["label"] == "defect").any())


def workspace() -> Workspace | None:
    """The scored current selection, or ``None`` after telling the user what is wrong."""
    try:
        _, manifest = current_detector()
        dataset = current_dataset()
        data, model, choice = data_choice(), model_choice(), detector_choice()
        fingerprint = _fingerprint(dataset)
        detector = active_detector(model.path, manifest["model_sha256"], data.kind, data.location, fingerprint,
                                   choice)
        table, errors = _score_table(model.path, manifest["model_sha256"], data.kind, data.location,
                                     fingerprint, choice)
    except InputError as error:
        st.error(f"{error} Choose another data set, model or detector on the Data & Model page.")
        return None
    if table.empty:
        st.warning("None of the test images could be read. Choose another data set on the Data & Model page.")
        return None
    return Workspace(dataset, detector, manifest, table, errors, choice, fingerprint)


# -- threshold state ------------------------------------------------------------------------------

ALL_SCORE_COLUMNS = (*SCORE_COLUMNS, MEMORY_BANK_COLUMN)


def score_columns(table: pd.DataFrame) -> list[str]:
    return [column for column in ALL_SCORE_COLUMNS if column in table.columns]


def primary_column(space: "Workspace") -> str:
    """The detector's primary score, fixed in advance (core.decision); never picked by test AUROC."""
    return space.detector.primary_score


def default_decision(space: "Workspace", column: str) -> Decision:
    """The run's own decision on its primary column; for another column, 1 % false rejects on the
    good images shown (no defect labels used), said as such."""
    run_default = getattr(space.detector, "default_decision_", None)
    if run_default is not None and run_default.column == column:
        return run_default
    good = space.labelled.loc[space.labelled["label"] == "good", column].to_numpy()
    if not len(good):
        good = space.table[column].to_numpy()
    decision = core_default_decision(good, column, DEFAULT_FALSE_REJECT_RATE)
    return Decision(column, decision.threshold, None,
                    f"at most {DEFAULT_FALSE_REJECT_RATE:.0%} false rejects on the {len(good)} good images of this "
                    "data set (this column has no threshold stored in the run)")


def threshold_table(space: Workspace, column: str) -> ThresholdTable:
    labelled = space.labelled
    return ThresholdTable(labelled[column].to_numpy(), labelled["label"].to_numpy())


def current_column(space: Workspace) -> str:
    columns = score_columns(space.table)
    column = st.session_state.get("score_column")
    if column not in columns:
        column = primary_column(space)
        st.session_state["score_column"] = column
    return column


def current_threshold(space: Workspace) -> float:
    if "threshold" not in st.session_state:
        st.session_state["threshold"] = default_decision(space, current_column(space)).threshold
    return float(st.session_state["threshold"])


def current_decision(space: Workspace) -> Decision:
    """The accept/reject rule set on the Threshold page (the run's default before the user has been there)."""
    column, threshold = current_column(space), current_threshold(space)
    default = default_decision(space, column)
    basis = default.basis if threshold == default.threshold else "set on the Threshold page"
    return Decision(column, threshold, current_review_from(), basis)


def current_review_from() -> float | None:
    value = st.session_state.get("review_from")
    return None if value is None else float(value)


def threshold_document(space: Workspace, column: str, threshold: float, point, review_from: float | None) -> dict:
    from core.thresholds import threshold_document as build

    model = model_choice()
    run = {"id": Path(model.path).name, "path": model.path, "model_kind": space.manifest["model_kind"],
           "model_sha256": space.manifest["model_sha256"], "data": data_choice().label,
           "detector": space.choice.label}
    return build(run, column, threshold, point, review_from)


def save_threshold(document: dict) -> str:
    """Write threshold.json into the current run folder; the shipped demo model is left untouched."""
    from core.files import atomic_write_json

    model = Path(model_choice().path)
    if model.resolve() == DEMO_BUNDLE.resolve():
        return ("The demo model is part of the app and is not changed; use the download button, "
                "or train a run on the Data & Model page to save thresholds with it.")
    atomic_write_json(model / "threshold.json", document)
    return f"Saved {model / 'threshold.json'}."


def metric_cards(columns, items) -> None:
    for column, (label, value, help_text) in zip(columns, items):
        column.metric(label, value, help=help_text)


def percent(value: float) -> str:
    return "—" if value != value else f"{value * 100:.1f} %"


def column_aurocs(space: Workspace) -> dict[str, float | None]:
    """Image AUROC of every score column on the labelled images shown; ``None`` without both classes."""
    ranking = statistic_ranking(space)
    return {name: (None if auroc != auroc or auroc is None else float(auroc))
            for name, auroc in zip(ranking["statistic"], ranking["image_auroc"])}


def statistic_ranking(space: Workspace) -> pd.DataFrame:
    """AUROC, AUPRC and best F1 of every score column, best separating first."""
    from core.metrics import threshold_summary

    labelled = space.labelled
    rows = [{"statistic": column, **threshold_summary(labelled[column], labelled["label"])}
            for column in score_columns(space.table)]
    return pd.DataFrame(rows).sort_values("image_auroc", ascending=False)
