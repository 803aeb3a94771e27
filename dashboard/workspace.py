"""The workspace every page works on: the chosen data scored by the chosen detector, and the decision.

A page starts with ``space = workspace.current()``; ``None`` means the page has already told the user
what is wrong. The decision (column, threshold, band) the Threshold page sets lives here too, built
from the session's choices and the run's own default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.runs.bundles import read_manifest
from core.runs.corrections import Corrections, apply_to_table, corrections_file, load_corrections
from core.data.datasets import Dataset
from core.decision import DEFAULT_FALSE_REJECT_RATE, Decision
from core.decision import default_decision as core_default_decision
from core.errors import InputError
from core.detectors import DETECTOR_NAMES, has_feature_residual, reconstructs, score_columns_of
from core.evaluation.metrics import ThresholdTable
from dashboard import resources, session
from dashboard.resources import DEMO_BUNDLE, DetectorKey
from dashboard.words import as_text, percent  # noqa: F401  (pages format shares with percent)
from dashboard.session import RUN_ITSELF, DetectorChoice, current_review_from, data_choice, model_choice


@dataclass
class Workspace:
    """Everything a page needs about the current data, model and scores."""

    dataset: Dataset
    detector: object          # the active detector: the run itself, or a memory bank or PaDiM fitted on this data
    manifest: dict            # the run's manifest
    table: pd.DataFrame
    errors: dict[str, str]
    choice: DetectorChoice = RUN_ITSELF
    fingerprint: str = ""
    corrections: Corrections | None = None   # the review queue's labels, already applied to ``table``

    @property
    def has_reconstructions(self) -> bool:
        """Whether the pages can show reconstructions and residuals (the autoencoders' and DRAEM's runs)."""
        return self.choice.kind == "run" and reconstructs(self.manifest["model_kind"])

    @property
    def has_feature_residuals(self) -> bool:
        """Whether the pages show a feature residual (the NCAE on features): per position, upsampled to the image."""
        return self.choice.kind == "run" and has_feature_residual(self.manifest["model_kind"])

    @property
    def feature_residual_is_calibrated(self) -> bool:
        """Whether the feature residual is in units of what good images show at that distance from the border (runs
        of the NCAE on features saved before border calibration show the plain signed RMS residual)."""
        return self.has_feature_residuals and "border_calibration" in self.manifest

    def map_key(self, choice: DetectorChoice | None = None) -> DetectorKey:
        """Everything that identifies the active detector (or ``choice`` on the same data and model)."""
        data = data_choice()
        return resources.detector_key(model_choice().path, self.manifest["model_sha256"], data.kind, data.location,
                                      self.fingerprint, choice or self.choice)

    @property
    def labelled(self) -> pd.DataFrame:
        return self.table[self.table["label"].isin(["good", "defect"])]

    @property
    def has_defects(self) -> bool:
        return bool((self.table["label"] == "defect").any())


def current() -> Workspace | None:
    """The scored current selection, or ``None`` after telling the user what is wrong."""
    try:
        data, model, choice = data_choice(), model_choice(), session.detector_choice()
        dataset, manifest, key, detector, (table, errors) = _scored(data, model, choice)
    except InputError as error:
        st.error(f"{as_text(error)} Choose another data set, model or detector on the Data & Model page.")
        return None
    st.session_state.pop(session.REVIEW_CHANGED, None)   # a mark made in a dialog: this whole-page run follows it
    session.restore_decision_from_url(manifest["model_sha256"], score_columns(table))
    if "threshold" in st.session_state and "score_column" in st.session_state:
        session.remember_decision_in_url(manifest["model_sha256"], st.session_state["score_column"],
                                         st.session_state["threshold"], session.current_review_from())
    try:
        corrections = current_corrections(data, model)
        table = apply_to_table(table, corrections)
    except ValueError as error:   # a damaged corrections file: say so, and go on without it
        st.warning(f"{as_text(error)} The review queue's corrections are not applied.")
        corrections = None
    if table.empty:
        st.warning("None of the test images could be read. Choose another data set on the Data & Model page.")
        return None
    return Workspace(dataset, detector, manifest, table, errors, choice, key.fingerprint, corrections)


def _scored(data, model, choice):
    """The data set, the run's manifest, the detector's key, the detector and its score table (all kept by the
    server's caches)."""
    manifest = read_manifest(model.path, reuse_digests=True)
    dataset = resources.load_dataset(data.kind, data.location)
    key = resources.detector_key(model.path, manifest["model_sha256"], data.kind, data.location,
                                 resources.fingerprint(dataset), choice)
    return dataset, manifest, key, resources.active_detector(key), resources.score_table(key)


def open_the_demo() -> None:
    """What the first page run of a fresh server shows, prepared ahead of it (:mod:`dashboard.startup`): the demo set
    (generated when this machine has none yet) scored by the demo model, in the server's caches. Not being able to is
    only a missed head start: the page itself says what is wrong."""
    try:
        _scored(session.DEMO_DATA, session.DEMO_MODEL, RUN_ITSELF)
    except Exception:  # noqa: BLE001
        pass


def current_corrections(data, model) -> Corrections:
    """The review queue of run ``model`` on data ``data`` (``ValueError`` for a damaged file)."""
    location = data.location or data.kind
    return load_corrections(corrections_file(resources.RUNS_ROOT, model.path, location), model.path, location)


# -- threshold state ------------------------------------------------------------------------------

ALL_SCORE_COLUMNS = tuple(dict.fromkeys(column for name in DETECTOR_NAMES for column in score_columns_of(name)))


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


@st.cache_data(show_spinner=False, max_entries=16)
def _live_payload(scores: np.ndarray, labels: np.ndarray, kinds: np.ndarray, column: str, low: float,
                  high: float, step: float) -> dict:
    from dashboard.live_threshold import component_payload

    return component_payload(scores, labels, kinds, column, ThresholdTable(scores, labels), low, high, step)


def live_payload(space: Workspace, column: str, low: float, high: float, step: float) -> dict:
    """What the live threshold component receives for ``column`` (built once per column and data)."""
    labelled = space.labelled
    kinds = labelled["defect_type"].fillna("").astype(str).to_numpy()
    return _live_payload(labelled[column].to_numpy(np.float64),
                         labelled["label"].to_numpy(), kinds, column, low, high, step)


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


def threshold_document(space: Workspace, column: str, threshold: float, result, review_from: float | None,
                       preset: str | None = None) -> dict:
    """The threshold file of the decision on the screen: ``result`` is the :class:`Outcomes` the page shows (band
    included), so the file's numbers are the page's."""
    from core.evaluation.thresholds import threshold_document as build

    model = model_choice()
    run = {"id": Path(model.path).name, "path": model.path, "model_kind": space.manifest["model_kind"],
           "model_sha256": space.manifest["model_sha256"], "data": data_choice().label,
           "detector": space.choice.label}
    return build(run, column, threshold, result, review_from, preset)


def is_read_only_run() -> bool:
    """Whether the chosen model is the demo shipped with the app, which is never changed."""
    return Path(model_choice().path).resolve() == DEMO_BUNDLE.resolve()


def export_inspector_zip(document: dict) -> tuple[bytes, dict]:
    """The current run exported as an inspector deciding with ``document``'s threshold: a zip's bytes, and its
    manifest."""
    import io
    import tempfile
    import zipfile

    from core.runs.export import export_inspector

    with tempfile.TemporaryDirectory(prefix="residual-lab-export-") as scratch:
        out = export_inspector(Path(model_choice().path), Path(scratch) / "inspector", document)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    archive.write(path, Path("inspector") / path.relative_to(out))
        return buffer.getvalue(), json.loads((out / "manifest.json").read_text())


def save_threshold(document: dict) -> str:
    """Write threshold.json into the current run folder; the shipped demo model is left untouched."""
    from core.files import atomic_write_json

    model = Path(model_choice().path)
    if is_read_only_run():
        return ("The demo model is part of the app and is not changed; use the download button, "
                "or train a run on the Data & Model page to save thresholds with it.")
    atomic_write_json(model / "threshold.json", document)
    return f"Saved {model / 'threshold.json'}."


def metric_cards(columns, items) -> None:
    for column, (label, value, help_text) in zip(columns, items):
        column.metric(label, value, help=help_text)


def column_aurocs(space: Workspace) -> dict[str, float | None]:
    """Image AUROC of every score column on the labelled images shown; ``None`` without both classes."""
    ranking = statistic_ranking(space)
    return {name: (None if auroc != auroc or auroc is None else float(auroc))
            for name, auroc in zip(ranking["statistic"], ranking["image_auroc"])}


def statistic_ranking(space: Workspace) -> pd.DataFrame:
    """AUROC, AUPRC and best F1 of every score column, best separating first."""
    from core.evaluation.metrics import threshold_summary

    labelled = space.labelled
    rows = [{"statistic": column, **threshold_summary(labelled[column], labelled["label"])}
            for column in score_columns(space.table)]
    return pd.DataFrame(rows).sort_values("image_auroc", ascending=False)


def training_data_mismatch(space: "Workspace") -> str:
    """A sentence when the model was trained on other data than the data set in use, else ``""``; never for a
    detector fitted on the data in use that reads nothing of the run (PaDiM, a memory bank on ImageNet features)."""
    if not space.choice.borrows_the_run:
        return ""
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
