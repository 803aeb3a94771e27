"""Threshold: choose a score and a threshold; every chart and number follows the slider live, in the browser.

The slider, its cards, curves, histogram, confusion matrix and per-type recall are one component
(:mod:`dashboard.live_threshold`) that computes everything in the browser; the server hears of the
threshold when the slider is released and then refreshes the misclassified thumbnails and the file
a save writes.
"""

import json

import numpy as np
import streamlit as st

from core.evaluation.outcomes import outcome_codes, outcomes
from dashboard import session, workspace
from dashboard.detail import thumbnail_grid
from dashboard.words import PRESET_MEANINGS, as_text, meaning, percent
from dashboard.live_threshold import live_threshold
from dashboard.maps import thumbnails

st.title("Threshold")
space = workspace.current()
if space is None:
    st.stop()

columns = workspace.score_columns(space.table)
primary = workspace.primary_column(space)
aurocs = workspace.column_aurocs(space)


def column_label(name: str) -> str:
    role = " — primary score, decides by default" if name == primary else ""
    auroc = f" (AUROC here {aurocs[name]:.3f})" if aurocs.get(name) is not None else ""
    return f"{name}{role}{auroc}"


column = st.selectbox("Score column", columns, index=columns.index(workspace.current_column(space)),
                      format_func=column_label,
                      help="Higher = more anomalous. A part is rejected (NG) when its score ≥ the threshold. The "
                           "primary score was fixed in advance across many image sets; the AUROC shown for each "
                           "column is measured on these test images and is never used to pick one for you.")
if column != st.session_state.get("score_column"):
    st.session_state["score_column"] = column
    session.forget_threshold()
default = workspace.default_decision(space, column)
st.caption(f"**{column}**: {meaning(column)}. Default threshold {default.threshold:.6g}: {default.basis}.")
table = workspace.threshold_table(space, column)
if not table.n_defect:
    st.info("This data set has no defect samples, so recall, precision, F1 and the ROC and PR curves cannot be "
            "computed. Only the false-reject rate (good parts rejected) is shown; pick a threshold by the "
            "false-reject rate you can accept.")

scores = space.labelled[column].to_numpy()
low, high = float(np.min(space.table[column])), float(np.max(space.table[column]))
step = (high - low) / 1000 if high > low else 1e-6
LIVE_KEY = f"live-{column}"


def set_threshold(value: float, preset: str | None = None) -> None:
    """A threshold set on the server (preset, exact value, first visit): the browser adopts it. A review band
    that would start above the new threshold is moved below it, and the page says so."""
    value = float(value)
    st.session_state["threshold"] = value
    st.session_state["threshold_input"] = value
    st.session_state["preset"] = preset
    review_from = st.session_state.get("review_from")
    if review_from is not None and review_from > value:
        moved = band_start(value)
        st.session_state["review_from"] = moved
        st.session_state["band_moved"] = (f"The review band started at {review_from:.6g}, above the new threshold; it now "
                                          f"starts at {moved:.6g}.")
    st.session_state["threshold_revision"] = st.session_state.get("threshold_revision", 0) + 1


def from_input() -> None:
    set_threshold(st.session_state["threshold_input"])



with st.expander("Presets", expanded=True):
    preset_columns = st.columns(5)
    presets = {"Run default": lambda: default.threshold}
    if table.n_defect and table.n_good:
        presets["Best F1"] = table.best_f1_threshold
        presets["Youden's J"] = table.youden_threshold
    if table.n_defect:
        presets["Zero escape"] = table.zero_escape_threshold
    for slot, (name, compute) in zip(preset_columns, presets.items()):
        slot.button(name, on_click=lambda compute=compute, name=name: set_threshold(compute(), name), width="stretch",
                    help=PRESET_MEANINGS[name])
    rate_column, cost_a, cost_b, cost_button = st.columns([2, 1, 1, 1])
    with rate_column:
        target_rate = st.number_input("Target false-reject rate (%)", 0.0, 100.0, 5.0, 0.5, key="target_rate")
        st.button("Set by false-reject rate", width="stretch", key="preset_frr",
                  help="the lowest threshold that rejects at most this share of the good test images",
                  on_click=lambda: set_threshold(table.target_false_reject_threshold(target_rate / 100),
                                                 f"At most {target_rate:g} % false rejects"))
    escape_cost = cost_a.number_input("Cost of an escape", 0.0, value=10.0, step=1.0, key="escape_cost")
    reject_cost = cost_b.number_input("Cost of a false reject", 0.0, value=1.0, step=1.0, key="reject_cost")
    with cost_button:
        st.write("")
        st.button("Minimum cost", width="stretch", key="preset_cost",
                  help="the threshold with the lowest total cost of escapes and false rejects on these test images",
                  on_click=lambda: set_threshold(table.minimum_cost_threshold(escape_cost, reject_cost),
                                                 f"Minimum cost (escape {escape_cost:g}, false reject {reject_cost:g})"))


def band_start(threshold: float) -> float:
    """Where the review band starts when it is switched on: the target false-reject preset (parts between it and
    the threshold go to review), inside the slider's range and always below the threshold (a threshold typed
    below every score gets a band just under it)."""
    start = table.target_false_reject_threshold(target_rate / 100) if table.n_good else low
    if not low <= start < threshold:
        start = max(low, threshold - (high - low) * 0.1)
    if not start < threshold:
        start = threshold - max(high - low, abs(threshold), 1e-6) * 0.1
    return float(start)


if "threshold" not in st.session_state or "threshold_revision" not in st.session_state:
    first = workspace.current_threshold(space)
    set_threshold(first, st.session_state.get("preset") or ("Run default" if first == default.threshold else None))


def adopt_release() -> None:
    """What the browser reported on release, unless the server has set another threshold since (a report
    carries the revision it was drawn at). The release reruns this fragment only, so it is read here."""
    reported = st.session_state.get(LIVE_KEY)
    if reported and reported.get("revision") == st.session_state["threshold_revision"]:
        if float(reported["threshold"]) != st.session_state["threshold"]:
            st.session_state["preset"] = None   # moved by hand: no longer the preset's threshold
        st.session_state["threshold"] = float(reported["threshold"])
        st.session_state["threshold_input"] = float(reported["threshold"])
        st.session_state["review_from"] = reported.get("review_from")


@st.fragment
def tuning() -> None:
    adopt_release()
    threshold = float(st.session_state["threshold"])
    review_from = st.session_state.get("review_from")
    payload = workspace.live_payload(space, column, low, high, step)
    live_threshold(payload, threshold, review_from, band_start(threshold), st.session_state["threshold_revision"],
                   key=LIVE_KEY)
    st.number_input("Exact value", format="%.6g", key="threshold_input", step=step, on_change=from_input,
                    help="Type a threshold; the slider above follows.")

    labelled = space.labelled
    result = outcomes(labelled[column], labelled["label"], threshold, review_from)
    st.session_state["released_outcomes"] = result
    if st.session_state.get("band_moved"):
        st.info(st.session_state.pop("band_moved"), icon=":material/info:")
    preset = st.session_state.get("preset")
    # The caption that says which decision is released is filled in after the download button: the page receives
    # a run's elements in order, so once the caption reads a decision, the button's file carries it. (Written
    # first, it could read the new decision while the button still held the old file.) The other buttons act on
    # the server's decision when clicked, so they need no such care.
    released_caption = st.empty()
    session.remember_decision_in_url(space.manifest["model_sha256"], column, threshold, review_from)

    # the decision's actions sit next to the decision, above the pictures
    document = workspace.threshold_document(space, column, threshold, result, review_from, preset)
    save_column, download_column, export_column = st.columns(3)
    read_only = workspace.is_read_only_run()
    if save_column.button("Save threshold to the run", disabled=read_only, key="save_threshold",
                          help=("The demo model is part of the app and is not changed: download the file, or train a "
                                "run on the Data & Model page to save thresholds with it.") if read_only else
                          "Writes threshold.json next to the run's model, with the numbers shown above."):
        message = workspace.save_threshold(document)
        if message.startswith("Saved"):
            save_column.success(as_text(message))
        else:
            save_column.warning(as_text(message))
    download_column.download_button("Download threshold file", json.dumps(document, indent=2),
                                    file_name="threshold.json", mime="application/json", key="download_threshold")
    if read_only:
        save_column.caption("The demo model is read-only: download the file instead.")
    released_caption.caption(
        f"Released at **{threshold:.6g}**" + (f" ({as_text(preset)})" if preset else "")
        + (f", review from **{review_from:.6g}**" if review_from is not None else "")
        + f": recall {percent(result.recall)}, false-reject rate {percent(result.false_reject_rate)}, escape rate "
        f"{percent(result.escape_rate)}, review rate {percent(result.review_rate)}, accuracy {percent(result.accuracy)} "
        "(of the parts decided OK or NG; parts sent to review left out). A saved threshold file and the thumbnails "
        "below use exactly these.")
    with export_column:
        export_inspector_button(document)

    codes = outcome_codes(labelled[column], threshold, review_from)
    wrong = labelled[((codes == 2) & (labelled["label"] == "good")) | ((codes == 0) & (labelled["label"] == "defect"))]
    st.subheader(f"Misclassified at this threshold: {len(wrong)}")
    if review_from is not None:
        st.caption(f"{int((codes == 1).sum())} parts go to review and are not counted as misclassified.")
    if len(wrong):
        shown = wrong.sort_values(column, ascending=False).head(24)
        pictures = thumbnails(tuple(shown["source"]))
        thumbnail_grid(space, shown, pictures, key="wrong", primary=primary, headline=lambda row: (
            f"{'false reject' if row.label == 'good' else 'escape'} · {getattr(row, column):.4g}"))


def export_inspector_button(document: dict) -> None:
    """The run and this decision as one self-contained TensorFlow SavedModel inspector (and its ONNX copy),
    zipped for download."""
    from core.errors import InputError

    exportable = space.choice.kind == "run" and column == primary
    why = None if exportable else (
        f"The inspector is exported from a saved run, on its primary score: choose a run and the {primary} column.")
    if st.button("Export inspector", icon=":material/deployed_code:", disabled=not exportable, key="export_inspector",
                 help=why or "A TensorFlow SavedModel (and its ONNX copy) that takes raw uint8 images and returns "
                             "score, verdict and anomaly map, with this threshold inside (python -m core export "
                             "does the same)."):
        try:
            with st.spinner("Exporting the inspector and checking its ONNX copy…"):
                st.session_state["inspector_zip"], st.session_state["inspector_manifest"] = \
                    workspace.export_inspector_zip(document)
        except InputError as error:
            st.session_state.pop("inspector_zip", None)
            st.error(as_text(error))
    exported = st.session_state.get("inspector_manifest")
    if exported is not None and not decides_like(exported, document):
        # exported at another threshold, band or run: never offer an inspector that decides otherwise than shown
        st.session_state.pop("inspector_zip", None)
        st.session_state.pop("inspector_manifest", None)
    if st.session_state.get("inspector_zip"):
        st.download_button("Download inspector (.zip)", st.session_state["inspector_zip"], file_name="inspector.zip",
                           mime="application/zip", key="download_inspector")
        st.caption(onnx_words(st.session_state["inspector_manifest"]["onnx"]))


def decides_like(manifest: dict, document: dict) -> bool:
    """Whether an exported inspector's decision is the threshold file ``document``'s."""
    band = document.get("review_band") or {}
    return (manifest["run"]["model_sha256"], manifest["score"], manifest["threshold"], manifest["review_from"]) == \
        (document["run"].get("model_sha256"), document["score_column"], document["threshold"], band.get("review_from"))


def onnx_words(onnx: dict) -> str:
    """What the zip holds besides the SavedModel, in one sentence."""
    if onnx.get("written"):
        return (f"The zip holds the SavedModel and its ONNX copy (inspector.onnx), checked with "
                f"{onnx['checked_with']}: the same verdicts, scores within "
                f"{onnx['largest_relative_score_difference']:.0e} of the SavedModel's.")
    return f"The zip holds the SavedModel only; no ONNX copy: {onnx.get('why', 'not made')}."


tuning()
