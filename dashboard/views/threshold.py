"""Threshold: choose a score and a threshold; every chart and number follows the slider live."""

import json

import numpy as np
import streamlit as st

from core.evaluation.decision import Decision
from dashboard import figures, session, workspace
from dashboard.detail import thumbnail_grid
from dashboard.words import PRESET_MEANINGS, meaning
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


def set_threshold(value: float) -> None:
    value = float(value)
    st.session_state["threshold"] = value
    st.session_state["threshold_slider"] = min(max(value, low), high + step)
    st.session_state["threshold_input"] = value


def from_slider() -> None:
    set_threshold(st.session_state["threshold_slider"])


def from_input() -> None:
    set_threshold(st.session_state["threshold_input"])


if "threshold_slider" not in st.session_state or "threshold" not in st.session_state:
    set_threshold(workspace.current_threshold(space))


with st.expander("Presets", expanded=True):
    preset_columns = st.columns(5)
    presets = {"Run default": lambda: default.threshold}
    if table.n_defect and table.n_good:
        presets["Best F1"] = table.best_f1_threshold
        presets["Youden's J"] = table.youden_threshold
    if table.n_defect:
        presets["Zero escape"] = table.zero_escape_threshold
    for slot, (name, compute) in zip(preset_columns, presets.items()):
        slot.button(name, on_click=lambda compute=compute: set_threshold(compute()), width="stretch",
                    help=PRESET_MEANINGS[name])
    rate_column, cost_a, cost_b, cost_button = st.columns([2, 1, 1, 1])
    with rate_column:
        target_rate = st.number_input("Target false-reject rate (%)", 0.0, 100.0, 5.0, 0.5, key="target_rate")
        st.button("Set by false-reject rate", width="stretch", key="preset_frr",
                  help="the lowest threshold that rejects at most this share of the good test images",
                  on_click=lambda: set_threshold(table.target_false_reject_threshold(target_rate / 100)))
    escape_cost = cost_a.number_input("Cost of an escape", 0.0, value=10.0, step=1.0, key="escape_cost")
    reject_cost = cost_b.number_input("Cost of a false reject", 0.0, value=1.0, step=1.0, key="reject_cost")
    with cost_button:
        st.write("")
        st.button("Minimum cost", width="stretch", key="preset_cost",
                  help="the threshold with the lowest total cost of escapes and false rejects on these test images",
                  on_click=lambda: set_threshold(table.minimum_cost_threshold(escape_cost, reject_cost)))


@st.fragment
def tuning() -> None:
    slider_column, number_column = st.columns([4, 1])
    slider_column.slider("Threshold (reject when score ≥ threshold)", low, high + step, step=step, format="%.6g",
                         key="threshold_slider", on_change=from_slider)
    number_column.number_input("Exact value", format="%.6g", key="threshold_input", step=step,
                               on_change=from_input)
    threshold = float(st.session_state["threshold"])

    use_band = st.toggle("Review band (accept / review / reject)", value=st.session_state.get("review_from") is not None)
    review_from = None
    if use_band:
        default_from = st.session_state.get("review_from") or threshold - (high - low) * 0.1
        review_from = st.slider("Send to review from", low, threshold, float(min(default_from, threshold)),
                                step=step, format="%.6g", key="review_slider")
        st.session_state["review_from"] = review_from
    else:
        st.session_state["review_from"] = None

    labelled = space.labelled
    view = figures.threshold_view(table, labelled[column], labelled["label"], column, threshold, review_from)
    point = view["point"]
    cards = st.columns(6)
    workspace.metric_cards(cards, [
        ("Precision", workspace.percent(point.precision), "Of the parts rejected, the share that are defects."),
        ("Recall", workspace.percent(point.recall), "Of the defects, the share rejected (caught)."),
        ("F1", "—" if point.f1 != point.f1 else f"{point.f1:.3f}", "Harmonic mean of precision and recall."),
        ("Accuracy", workspace.percent(point.accuracy), "Share of all parts judged correctly."),
        ("False-reject rate", workspace.percent(point.false_reject_rate), "Good parts rejected."),
        ("Escape rate", workspace.percent(point.escape_rate), "Defects accepted."),
    ])
    if review_from is not None:
        verdicts = Decision(column, threshold, review_from).verdicts(scores)
        counts = {name: int((verdicts == name).sum()) for name in ("OK", "REVIEW", "NG")}
        st.caption(f"With the review band: {counts['OK']} OK, {counts['REVIEW']} to review, {counts['NG']} NG.")

    if "roc" in view:
        left, right = st.columns(2)
        left.plotly_chart(view["roc"], width="stretch")
        right.plotly_chart(view["pr"], width="stretch")
    left, right = st.columns(2)
    left.plotly_chart(view["histogram"], width="stretch")
    right.plotly_chart(view["confusion"], width="stretch")

    wrong = labelled[view["misclassified"]]
    st.subheader(f"Misclassified at this threshold: {len(wrong)}")
    if len(wrong):
        shown = wrong.sort_values(column, ascending=False).head(24)
        pictures = thumbnails(tuple(shown["source"]))
        thumbnail_grid(space, shown, pictures, key="wrong", primary=primary, headline=lambda row: (
            f"{'false reject' if row.label == 'good' else 'escape'} · {getattr(row, column):.4g}"))

    document = workspace.threshold_document(space, column, threshold, point, review_from)
    save_column, download_column = st.columns(2)
    if save_column.button("Save threshold to the run", help="Writes threshold.json next to a saved run's model."):
        message = workspace.save_threshold(document)
        if message.startswith("Saved"):
            save_column.success(message)
        else:
            save_column.warning(message)
    download_column.download_button("Download threshold file", json.dumps(document, indent=2),
                                    file_name="threshold.json", mime="application/json")


tuning()
