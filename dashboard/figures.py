"""Pure figure builders: data in, plotly figure out. No Streamlit, no session state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.evaluation.metrics import OperatingPoint, ThresholdTable
from dashboard.words import as_plot_text, percent

GOOD_COLOUR = "#3fb68b"
DEFECT_COLOUR = "#e5534b"
THRESHOLD_COLOUR = "#f5a623"
REVIEW_COLOUR = "#8b949e"
# the confusion matrix's cells: right (green), to review (grey), wrong (red); white text reads on each, on screen
# and on paper
CONFUSION_COLOURS = [[0, "#1a7f37"], [0.33, "#1a7f37"], [0.34, "#6e7781"], [0.66, "#6e7781"], [0.67, "#b42318"],
                     [1, "#b42318"]]
TEMPLATE = "plotly_dark"
# Okabe and Ito's palette: distinguishable with every common colour-vision deficiency
DISTINCT_COLOURS = ("#56B4E9", "#E69F00", "#CC79A7", "#009E73", "#F0E442", "#D55E00", "#0072B2")


def _layout(figure: go.Figure, title: str, height: int = 360) -> go.Figure:
    figure.update_layout(template=TEMPLATE, title=title, height=height, margin=dict(l=50, r=20, t=50, b=45),
                         legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
                         paper_bgcolor="rgba(0,0,0,0)")
    return figure


def _operating_point(x: float, y: float) -> go.Scatter:
    return go.Scatter(x=[x], y=[y], mode="markers", name="current threshold",
                      marker=dict(size=13, color=THRESHOLD_COLOUR, line=dict(width=2, color="white")))


def roc_figure(table: ThresholdTable, point: OperatingPoint) -> go.Figure:
    false_positive_rate, true_positive_rate, thresholds = table.roc_curve()
    figure = go.Figure()
    figure.add_trace(_chance_line())
    figure.add_trace(go.Scatter(x=false_positive_rate, y=true_positive_rate, mode="lines", name="ROC",
                                line=dict(color="#58a6ff", shape="hv"), customdata=thresholds,
                                hovertemplate="false-reject rate %{x:.3f}<br>recall %{y:.3f}"
                                              "<br>threshold %{customdata:.5g}<extra></extra>"))
    figure.add_trace(_operating_point(point.false_reject_rate, point.recall))
    _roc_axes(figure)
    return _layout(figure, f"ROC curve — AUROC {table.auroc():.3f}")


def _chance_line() -> go.Scatter:
    return go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color=REVIEW_COLOUR),
                      name="chance", hoverinfo="skip")


def _roc_axes(figure: go.Figure) -> None:
    figure.update_xaxes(title="false-reject rate (good parts rejected)", range=[-0.02, 1.02])
    figure.update_yaxes(title="recall (defects caught)", range=[-0.02, 1.02])


def pr_figure(table: ThresholdTable, point: OperatingPoint) -> go.Figure:
    precision, recall, thresholds = table.pr_curve()
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=recall, y=precision, mode="lines", name="PR", line=dict(color="#58a6ff", shape="hv"),
                                customdata=thresholds,
                                hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}"
                                              "<br>threshold %{customdata:.5g}<extra></extra>"))
    figure.add_trace(_operating_point(point.recall, point.precision))
    figure.update_xaxes(title="recall (defects caught)", range=[-0.02, 1.02])
    figure.update_yaxes(title="precision (rejects that are defects)", range=[-0.02, 1.02])
    return _layout(figure, f"Precision–recall — AUPRC {table.auprc():.3f}")


def score_histogram(scores: pd.Series, labels: pd.Series, threshold: float, column: str,
                    review_from: float | None = None) -> go.Figure:
    figure = go.Figure()
    edges = np.histogram_bin_edges(scores, bins=40)
    for label, colour in (("good", GOOD_COLOUR), ("defect", DEFECT_COLOUR)):
        values = scores[labels == label]
        if len(values):
            figure.add_trace(go.Histogram(x=values, name=label, marker_color=colour, opacity=0.7,
                                          xbins=dict(start=edges[0], end=edges[-1], size=edges[1] - edges[0])))
    figure.add_vline(x=threshold, line=dict(color=THRESHOLD_COLOUR, width=3),
                     annotation_text=f"reject ≥ {threshold:.4g}", annotation_position="top right")
    if review_from is not None:
        figure.add_vrect(x0=review_from, x1=threshold, fillcolor=REVIEW_COLOUR, opacity=0.2, line_width=0,
                         annotation_text="review", annotation_position="top left")
    figure.update_layout(barmode="overlay")
    figure.update_xaxes(title=f"{column} (higher = more anomalous)")
    figure.update_yaxes(title="images")
    return _layout(figure, "Score distribution")


def confusion_figure(result) -> go.Figure:
    """Actual good / defect against the decision (a :class:`core.evaluation.outcomes.Outcomes`): accepted and
    rejected, with a review column between them when the decision has a review band."""
    band = result.review_from is not None
    kept = [0, 1, 2] if band else [0, 2]
    matrix = np.array([result.good, result.defect])[:, kept]
    names = {0: ("accepted good", "escape"), 1: ("to review", "to review"), 2: ("false reject", "caught defect")}
    text = [[f"{names[code][row]}<br><b>{matrix[row, column]}</b>" for column, code in enumerate(kept)]
            for row in range(2)]
    # each cell coloured by what it is, never by its count: right decisions green, escapes and false rejects red
    kind = {(0, 0): 0, (1, 2): 0, (0, 1): 1, (1, 1): 1, (0, 2): 2, (1, 0): 2}
    codes = [[kind[(row, code)] for code in kept] for row in range(2)]
    columns = {0: "accepted (OK)", 1: "review", 2: "rejected (NG)"}
    figure = go.Figure(go.Heatmap(z=codes, zmin=0, zmax=2, x=[columns[code] for code in kept],
                                  y=["actual good", "actual defect"], text=text, texttemplate="%{text}",
                                  textfont=dict(color="white"), colorscale=CONFUSION_COLOURS, showscale=False,
                                  hoverinfo="skip"))
    figure.update_yaxes(autorange="reversed")
    return _layout(figure, "Confusion matrix", height=320)


def statistic_scatter(table: pd.DataFrame, x: str, y: str, colour_by: str = "label",
                      threshold: float | None = None, threshold_column: str | None = None,
                      boundary: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> go.Figure:
    """Scatter of two statistics with marginal histograms; the threshold is drawn on its own axis."""
    figure = make_subplots(rows=2, cols=2, column_widths=[0.8, 0.2], row_heights=[0.2, 0.8],
                           shared_xaxes=True, shared_yaxes=True, horizontal_spacing=0.02, vertical_spacing=0.02)
    groups = table[colour_by].replace("", "unknown").fillna("unknown")
    palette = _palette(sorted(groups.unique()))
    for group, colour in palette.items():
        part = table[groups == group]
        # names come from the data set: shown as text, never read as Plotly's label markup
        figure.add_trace(go.Scatter(x=part[x], y=part[y], mode="markers", name=as_plot_text(group),
                                    marker=dict(color=colour, size=8, opacity=0.8, line=dict(width=0.5, color="black")),
                                    customdata=np.stack([part["path"].map(as_plot_text), part.index], axis=1),
                                    hovertemplate="%{customdata[0]}<br>" + f"{x} " + "%{x:.5g}<br>" + f"{y} "
                                                  + "%{y:.5g}<extra></extra>",
                                    legendgroup=str(group)), row=2, col=1)
        if len(palette) <= 2:
            figure.add_trace(go.Histogram(x=part[x], marker_color=colour, opacity=0.6, showlegend=False,
                                          legendgroup=str(group), hoverinfo="skip"), row=1, col=1)
            figure.add_trace(go.Histogram(y=part[y], marker_color=colour, opacity=0.6, showlegend=False,
                                          legendgroup=str(group), hoverinfo="skip"), row=2, col=2)
        else:  # many overlapping histograms cannot be read; one box per group can
            figure.add_trace(go.Box(x=part[x], marker_color=colour, showlegend=False, name=as_plot_text(group),
                                    legendgroup=str(group), hoverinfo="skip", boxpoints=False), row=1, col=1)
            figure.add_trace(go.Box(y=part[y], marker_color=colour, showlegend=False, name=as_plot_text(group),
                                    legendgroup=str(group), hoverinfo="skip", boxpoints=False), row=2, col=2)
    if boundary is not None:
        grid_x, grid_y, probability = boundary
        figure.add_trace(go.Contour(x=grid_x, y=grid_y, z=probability, contours=dict(start=0.5, end=0.5, coloring="none"),
                                    line=dict(color="white", width=2, dash="dash"), showscale=False,
                                    name="classifier boundary", hoverinfo="skip"), row=2, col=1)
    if threshold is not None and threshold_column in (x, y):
        line = dict(color=THRESHOLD_COLOUR, width=2)
        if threshold_column == x:
            figure.add_vline(x=threshold, line=line, row=2, col=1)
        if threshold_column == y:
            figure.add_hline(y=threshold, line=line, row=2, col=1)
    figure.update_layout(barmode="overlay")
    figure.update_xaxes(title=x, row=2, col=1)
    figure.update_yaxes(title=y, row=2, col=1)
    return _layout(figure, f"{y} against {x}", height=560)


def roc_comparison(curves: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> go.Figure:
    """One ROC curve per detector on one plot; ``curves`` maps a name to ``(fpr, tpr, auroc)``."""
    figure = go.Figure()
    figure.add_trace(_chance_line())
    for index, (name, (fpr, tpr, auroc)) in enumerate(curves.items()):
        # colours that stay apart for colour-blind readers too; the supervised references are dashed
        dash = "dash" if name.lower().startswith("supervised") else "solid"
        figure.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUROC {auroc:.3f})",
                                    line=dict(color=DISTINCT_COLOURS[index % len(DISTINCT_COLOURS)], width=2,
                                              shape="hv", dash=dash)))
    _roc_axes(figure)
    return _layout(figure, "ROC by detector", height=460)


def loss_figure(history: dict) -> go.Figure:
    figure = go.Figure()
    for key, colour in (("loss", "#58a6ff"), ("val_loss", THRESHOLD_COLOUR)):
        values = history.get(key) or []
        figure.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=key,
                                    line=dict(color=colour)))
    figure.update_xaxes(title="epoch")
    # one tick per power of ten: plotly's default log ticks label 2 and 5 between them, which reads as "5, 2, 0.01"
    figure.update_yaxes(title="loss", type="log", dtick=1, tickformat="g")
    return _layout(figure, "Training loss", height=300)


def _palette(groups: list[str]) -> dict[str, str]:
    fixed = {"good": GOOD_COLOUR, "defect": DEFECT_COLOUR, "unknown": REVIEW_COLOUR}
    others = [colour for colour in DISTINCT_COLOURS if colour != "#009E73"]   # green means good
    palette, cursor = {}, 0
    for group in groups:
        if group in fixed:
            palette[group] = fixed[group]
        else:
            palette[group] = others[cursor % len(others)]
            cursor += 1
    return palette


PRINT_WIDTH = 680   # pixels: the printable width of an A4 page at 96 dpi with 15 mm margins
PRINT_TEXT = "#1f2328"


def for_print(figure: go.Figure) -> go.Figure:
    """A copy of ``figure`` that reads on white paper: light template, dark text, white background,
    and a width that fits an A4 page (the dashboard's figures are made for its dark theme)."""
    printable = go.Figure(figure)
    printable.update_layout(template="plotly_white", paper_bgcolor="white", plot_bgcolor="white",
                            font=dict(color=PRINT_TEXT), title_font=dict(color=PRINT_TEXT),
                            legend=dict(font=dict(color=PRINT_TEXT)), width=PRINT_WIDTH, autosize=False)
    printable.update_xaxes(color=PRINT_TEXT, gridcolor="#d1d9e0")
    printable.update_yaxes(color=PRINT_TEXT, gridcolor="#d1d9e0")
    printable.update_annotations(font_color=PRINT_TEXT)
    return printable


def defect_type_table(table: pd.DataFrame, column: str, decision) -> pd.DataFrame:
    """Per defect type (and good parts): images, how many were rejected at ``decision``, and the share."""
    labelled = table[table["label"].isin(["good", "defect"])]
    kinds = labelled["defect_type"].where(labelled["label"] == "defect", "good (no defect)")
    rejected = pd.Series(decision.verdicts(labelled[column].to_numpy()), index=labelled.index).isin(["NG"])
    rows = []
    for kind in ["good (no defect)", *sorted(k for k in kinds.unique() if k != "good (no defect)")]:
        members = kinds == kind
        count, caught = int(members.sum()), int(rejected[members].sum())
        if not count:
            continue
        rows.append({"part": kind, "images": count, "rejected (NG)": caught,
                     "share rejected": percent(caught / count),
                     "meaning": "false rejects" if kind.startswith("good") else "defects caught (recall)"})
    return pd.DataFrame(rows)
