"""Report: one click builds a self-contained HTML report to preview, download, hand out and print."""

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from core.evaluation.outcomes import outcomes
from dashboard import figures, session, workspace
from dashboard.images import data_uri, heat_picture, residual_picture
from dashboard.maps import map_page, picture_scales
from core.runs.bundles import MANIFEST_DIGEST
from dashboard.report import build_report, metric_rows

EXAMPLES = 8

st.title("Report")
space = workspace.current()
if space is None:
    st.stop()
decision = workspace.current_decision(space)
column = decision.column
st.write(f"The report uses the current decision: **{decision.describe()}** ({decision.basis}).")


def make_report() -> str:
    table = workspace.threshold_table(space, column)
    point = table.at(decision.threshold)
    labelled = space.labelled
    charts = [figures.score_histogram(labelled[column], labelled["label"], decision.threshold, column,
                                      decision.review_from),
              figures.confusion_figure(outcomes(labelled[column], labelled["label"], decision.threshold,
                                                decision.review_from))]
    ranking = None
    if table.n_good and table.n_defect:
        charts = [figures.roc_figure(table, point), figures.pr_figure(table, point)] + charts
        ranking = workspace.statistic_ranking(space).rename(columns={
            "statistic": "score", "image_auroc": "AUROC", "image_auprc": "AUPRC", "best_f1": "best F1",
            "best_f1_threshold": "threshold for best F1"})
    if "mean" in space.table:   # the residual statistics exist for the autoencoders only
        charts.append(figures.statistic_scatter(space.table.assign(
            defect_type=space.table["defect_type"].mask(space.table["label"] == "good", "good")), "mean", column,
            "label", decision.threshold, column))
    picked = space.table.sort_values(column, ascending=False)
    picked = pd.concat([picked.head(EXAMPLES // 2), picked.tail(EXAMPLES // 2)])
    page = map_page(space.map_key(), tuple(picked["source"]), tuple(picked["mask"]))
    scales = picture_scales(space)
    verdicts = decision.verdicts(picked[column].to_numpy())
    examples = []
    for i, row in enumerate(picked.itertuples()):
        residual = (data_uri(residual_picture(page.residuals[i], scales.residual or 1.0))
                    if page.residuals is not None else None)
        examples.append({"path": row.path, "label": row.label, "score": f"{column} {getattr(row, column):.4g}",
                         "verdict": str(verdicts[i]), "original": data_uri(page.images[i], scale=3),
                         "residual": residual,
                         "heat": data_uri(heat_picture(page.images[i], page.anomaly_maps[i], scales.anomaly,
                                                       page.masks[i]))})
    summary = space.dataset.summary()
    return build_report(
        title="Residual Lab inspection report",
        decision={"score": column, "reject (NG) when the score is at least": decision.threshold,
                  "how the threshold was set": decision.basis,
                  "review band (REVIEW) from": decision.review_from, "detector": space.choice.label},
        metrics=metric_rows(point),
        per_type=figures.defect_type_table(space.table, column, decision),
        data_summary={"data set": session.data_choice().label, "layout": summary["layout"],
                      "good training images": summary["train_good"], "good test images": summary["test_good"],
                      "defective test images": summary["test_defect"],
                      "defect types": summary["defect_types"], "images with a defect outline": summary["masks"]},
        model_summary={"model": session.model_choice().label, "kind": space.manifest["model_kind"].upper(),
                       "input size": f"{space.manifest['input_size']} px", "created": space.manifest.get("created"),
                       "model SHA-256": space.manifest["model_sha256"],
                       "run manifest SHA-256": space.manifest.get(MANIFEST_DIGEST) or
                       "none (saved before runs were sealed)"},
        ranking=ranking, figures=[figures.for_print(chart) for chart in charts], examples=examples)


if st.button("Build report", type="primary"):
    with st.spinner("Building the report…"):
        st.session_state["report_html"] = make_report()
if "report_html" in st.session_state:
    st.download_button("Download report (HTML)", st.session_state["report_html"], file_name="residual-lab-report.html",
                       mime="text/html")
    st.caption("The file is self-contained (charts and images inline), opens without a network and prints on A4 "
               "(use the browser's Print, or Save as PDF).")
    with st.expander("Preview", expanded=True):
        components.html(st.session_state["report_html"], height=900, scrolling=True)
