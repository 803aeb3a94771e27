"""Report: one click builds a self-contained HTML report to download and show offline."""

import pandas as pd
import streamlit as st

from dashboard import figures, state
from dashboard.images import data_uri, heat_picture
from dashboard.maps import map_page, picture_scales
from dashboard.report import build_report

EXAMPLES = 8

st.title("Report")
space = state.workspace()
if space is None:
    st.stop()
decision = state.current_decision(space)
column, threshold, review_from = decision.column, decision.threshold, decision.review_from
st.write(f"The report uses the current settings: {decision.describe()}.")


def make_report() -> str:
    table = state.threshold_table(space, column)
    point = table.at(threshold)
    labelled = space.labelled
    charts = [figures.score_histogram(labelled[column], labelled["label"], threshold, column, review_from),
              figures.confusion_figure(point)]
    ranking_html = "<p>No defect samples: no ranking.</p>"
    if table.n_good and table.n_defect:
        charts = [figures.roc_figure(table, point), figures.pr_figure(table, point)] + charts
        ranking_html = state.statistic_ranking(space).to_html(index=False, float_format=lambda value: f"{value:.4f}", border=0)
    charts.append(figures.statistic_scatter(space.table.assign(
        defect_type=space.table["defect_type"].mask(space.table["label"] == "good", "good")), "mean", column,
        "label", threshold, column))
    picked = space.table.sort_values(column, ascending=False)
    picked = pd.concat([picked.head(EXAMPLES // 2), picked.tail(EXAMPLES // 2)])
    page = map_page(space.map_key(), tuple(picked["source"]), tuple(picked["mask"]))
    scale = picture_scales(space).anomaly
    examples = [(f"{row.path} · {row.label or 'unlabelled'} · {column} {getattr(row, column):.4g}",
                 data_uri(heat_picture(page.images[i], page.anomaly_maps[i], scale, page.masks[i])))
                for i, row in enumerate(picked.itertuples())]
    summary = space.dataset.summary()
    return build_report(
        title="Residual Lab inspection report",
        data_summary={"data set": state.data_choice().label, **summary},
        model_summary={"model": state.model_choice().label, "detector": space.choice.label,
                       "kind": space.manifest["model_kind"].upper(),
                       "input size": space.manifest["input_size"], "created": space.manifest.get("created"),
                       "model SHA-256": space.manifest["model_sha256"]},
        threshold_settings={"score column": column, "threshold": threshold, "how it was set": decision.basis,
                            "review band from": review_from,
                            "rule": "reject (NG) when score ≥ threshold; a frame that fails the frame check "
                                    "is INVALID and rejected too"},
        metrics={key: value for key, value in point.to_dict().items() if key != "threshold"},
        ranking_html=ranking_html, figures=charts, examples=examples)


if st.button("Build report", type="primary"):
    with st.spinner("Building the report…"):
        st.session_state["report_html"] = make_report()
if "report_html" in st.session_state:
    st.download_button("Download report (HTML)", st.session_state["report_html"], file_name="residual-lab-report.html",
                       mime="text/html")
    st.caption("The file is self-contained (charts and images inline) and opens without a network.")
