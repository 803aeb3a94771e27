"""Statistics: any residual statistic against any other, and which statistic separates best."""

import streamlit as st

from core.evaluation.supervised import SUPERVISED_WARNING, decision_boundary
from dashboard import figures, workspace
from dashboard.detail import detail_for_row, open_dialog, thumbnail_grid
from dashboard.words import meaning
from dashboard.maps import thumbnails

st.title("Statistics")
space = workspace.current()
if space is None:
    st.stop()
columns = workspace.score_columns(space.table)
current = workspace.current_column(space)

controls = st.columns(3)
x = controls[0].selectbox("x axis", columns, index=columns.index("mean") if "mean" in columns else 0, key="stat_x")
y = controls[1].selectbox("y axis", columns, index=columns.index(current), key="stat_y")
colour_by = controls[2].radio("Colour by", ["label", "defect_type"], horizontal=True, key="stat_colour",
                              format_func=lambda name: name.replace("_", " "))
plot_table = space.table.assign(defect_type=space.table["defect_type"].mask(space.table["label"] == "good", "good"))
boundary = None
if space.has_defects and x != y and st.toggle(
        "Draw a supervised decision boundary", key="stat_boundary",
        help="Logistic regression on these two statistics, fitted on the labelled images shown."):
    st.warning(SUPERVISED_WARNING, icon=":material/warning:")
    fitted = decision_boundary(space.labelled, x, y)
    boundary = (fitted.x, fitted.y, fitted.probability)
figure = figures.statistic_scatter(plot_table, x, y, colour_by, workspace.current_threshold(space), current, boundary)
# A click selects a point; its details open, and the chart is drawn anew under a new key, its selection cleared, so
# the same point opens again after the dialog is closed. A box or lasso selection stays until cleared.
selected = st.session_state.get(f"scatter-{st.session_state.get('scatter_round', 0)}") or {}
points = (selected.get("selection") or {}).get("points") or []
picked = list(dict.fromkeys(int(point["customdata"][1]) for point in points if "customdata" in point))


def clear_selection() -> None:
    st.session_state["scatter_round"] = st.session_state.get("scatter_round", 0) + 1


if len(picked) == 1:
    clear_selection()
st.plotly_chart(figure, width="stretch", on_select="rerun", selection_mode=("points", "box", "lasso"),
                key=f"scatter-{st.session_state.get('scatter_round', 0)}")
st.caption(f"The orange line is the current threshold on {current} (set on the Threshold page), drawn when "
           f"{current} is on an axis." + (" The dashed white line is where the classifier's defect probability is "
                                          "50 %." if boundary is not None else ""))
if len(picked) == 1:
    open_dialog(detail_for_row(space, picked[0]), workspace.primary_column(space))
elif picked:
    note, clear = st.columns([5, 1])
    note.caption(f"{len(picked)} images selected" + (" (the first 24 shown)" if len(picked) > 24 else "") +
                 ". Details under a picture shows everything about one image; clear the selection to click single "
                 "points again.")
    clear.button("Clear selection", key="clear_scatter", on_click=clear_selection, icon=":material/close:")
    rows = space.table.loc[picked[:24]]
    decision = workspace.current_decision(space)
    verdicts = dict(zip(rows.index, decision.judge(rows[decision.column].to_numpy())[0]))
    thumbnail_grid(space, rows, thumbnails(tuple(rows["source"])), key="pick", primary=workspace.primary_column(space),
                   headline=lambda row: f"{verdicts[row.Index]} · {decision.column} "
                                        f"{getattr(row, decision.column):.4g} · {row.label or 'unlabelled'}")

st.subheader("Which statistic separates good from defect?")
if not space.has_defects:
    st.info("The ranking needs defect samples; this data set has only good images.")
else:
    ranking = workspace.statistic_ranking(space).rename(columns={
        "image_auroc": "AUROC", "image_auprc": "AUPRC", "best_f1": "best F1",
        "best_f1_threshold": "threshold for best F1"})
    ranking["meaning"] = ranking["statistic"].map(meaning)
    # a static table: the meanings wrap instead of being cut off, and every row shows without scrolling
    st.table(ranking.set_index("statistic").style.format(
        {"AUROC": "{:.4f}", "AUPRC": "{:.4f}", "best F1": "{:.4f}", "threshold for best F1": "{:.5g}"}, na_rep="—"))
    st.caption("AUROC: the chance that a defect scores above a good part (1 is perfect, 0.5 is guessing). AUPRC: "
               "average precision over all thresholds. Best F1: the best balance of precision and recall.")
    st.caption("Measured on these test images, to look at — not to choose by: the score that decides by default "
               "was fixed in advance across many image sets.")
