"""A self-contained HTML report: everything inline (plotly.js included), so it opens offline.

It is made to be handed out and printed: dark text on white, charts that fit an A4 page, metrics in
plain words and percentages, and a print stylesheet (A4, no chart cut across pages).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import re

import pandas as pd
import plotly.graph_objects as go

from dashboard.words import percent, significant

# (label in the report, field of core.evaluation.metrics.OperatingPoint, what it means)
METRIC_WORDS = (
    ("Defects caught (recall)", "recall", "share of defective parts that were rejected"),
    ("Escapes", "escape_rate", "share of defective parts that were accepted"),
    ("False rejects", "false_reject_rate", "share of good parts that were rejected"),
    ("Precision", "precision", "share of rejected parts that really are defective"),
    ("Accuracy", "accuracy", "share of all parts judged correctly"),
)


def metric_rows(point) -> list[tuple[str, str, str]]:
    """The operating point as (name, percentage, meaning) rows, plus F1 and the four counts."""
    values = point.to_dict()
    rows = [(name, percent(values[field]), meaning) for name, field, meaning in METRIC_WORDS]
    rows.append(("F1 score", "—" if values["f1"] != values["f1"] else f"{values['f1']:.3f}",
                 "balance of precision and recall, from 0 to 1"))
    rows.append(("Counts", f"{values['true_negatives']} good accepted · {values['false_positives']} good rejected · "
                           f"{values['true_positives']} defects rejected · {values['false_negatives']} defects accepted",
                 "the confusion matrix"))
    return rows


def build_report(*, title: str, decision: dict, metrics: list[tuple[str, str, str]], per_type: pd.DataFrame,
                 data_summary: dict, model_summary: dict, ranking: pd.DataFrame | None, figures: list[go.Figure],
                 examples: list[dict]) -> str:
    """``examples`` are dicts with ``path``, ``label``, ``score``, ``verdict`` and PNG data URIs
    ``original``, ``residual`` (may be ``None``) and ``heat``; figures should be print-ready."""
    charts = "".join(
        f'<div class="chart">{figure.to_html(full_html=False, include_plotlyjs=(index == 0), config={"displaylogo": False, "staticPlot": False})}</div>'
        for index, figure in enumerate(figures))
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    metric_table = "".join(f"<tr><th>{html.escape(name)}</th><td class=num>{html.escape(value)}</td>"
                           f"<td class=muted>{html.escape(meaning)}</td></tr>" for name, value, meaning in metrics)
    ranking_html = ("<p>No defect images in this data set, so no statistic can be ranked.</p>" if ranking is None
                    else _frame(ranking))
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{CSP_PLACEHOLDER}">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1000px; color: #1f2328; background: #ffffff; }}
h1 {{ margin-bottom: 0.2rem; }} h2 {{ margin-top: 1.8rem; border-bottom: 1px solid #d1d9e0; }}
.muted {{ color: #59636e; }} .num {{ text-align: right; font-variant-numeric: tabular-nums; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; }}
td, th {{ border: 1px solid #d1d9e0; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }}
.examples img {{ width: 150px; image-rendering: pixelated; display: block; }}
.verdict-NG, .verdict-INVALID {{ color: #b42318; font-weight: 600; }} .verdict-OK {{ color: #1a7f37; font-weight: 600; }}
.verdict-REVIEW {{ color: #9a6700; font-weight: 600; }}
.chart {{ break-inside: avoid; page-break-inside: avoid; margin-bottom: 1rem; }}
@media print {{
  @page {{ size: A4; margin: 15mm; }}
  body {{ margin: 0; max-width: none; font-size: 10pt; }}
  h2 {{ break-after: avoid; page-break-after: avoid; }}
  table, tr, .chart, .examples tr {{ break-inside: avoid; page-break-inside: avoid; }}
  .examples img {{ width: 110px; }}
}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="muted">Made {created} by Residual Lab. A higher score means more anomalous; a part is rejected (NG) when its
score is at or above the threshold. A picture that fails the frame check is INVALID and rejected too.</p>
<h2>Decision</h2>{_pairs(decision)}
<h2>Results at this decision</h2><table>{metric_table}</table>
<h2>By kind of part</h2>{_frame(per_type)}
<h2>Data</h2>{_pairs(data_summary)}
<h2>Model</h2>{_pairs(model_summary)}
<h2>Charts</h2>{charts}
<h2>Examples</h2>
<p class="muted">Worst and best scoring images. Residual: red = brighter than the model expects, blue = darker.
Heat map: where the error is; its scale is on the right of each picture.</p>
{_examples(examples)}
<h2>How well each statistic separates good from defective parts</h2>{ranking_html}
</body></html>
"""
    return document.replace(CSP_PLACEHOLDER, content_security_policy(document), 1)


CSP_PLACEHOLDER = "@@content-security-policy@@"
_SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def content_security_policy(document: str) -> str:
    """Only the report's own scripts (plotly.js and each chart's, named by their SHA-256) may run: a name from
    the data set that got into the page as markup could neither run a script nor load anything from
    elsewhere. Styles and pictures are inline, as in every self-contained page."""
    hashes = sorted({"'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
                     for body in _SCRIPT.findall(document)})
    return ("default-src 'none'; script-src " + (" ".join(hashes) or "'none'") +
            "; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'")


def _examples(examples: list[dict]) -> str:
    rows = []
    for example in examples:
        residual = f'<img src="{example["residual"]}" alt="residual">' if example.get("residual") else "—"
        rows.append(
            f"<tr><td>{html.escape(example['path'])}<br><span class=muted>{html.escape(example['label'] or 'unlabelled')}"
            f"</span></td><td class=num>{html.escape(example['score'])}</td>"
            f"<td class=\"verdict-{html.escape(example['verdict'])}\">{html.escape(example['verdict'])}</td>"
            f'<td><img src="{example["original"]}" alt="original"></td><td>{residual}</td>'
            f'<td><img src="{example["heat"]}" alt="heat map"></td></tr>')
    header = "<tr><th>image</th><th>score</th><th>verdict</th><th>original</th><th>residual</th><th>heat map</th></tr>"
    return f'<table class="examples">{header}{"".join(rows)}</table>'


def _pairs(values: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_format(value))}</td></tr>"
                   for key, value in values.items())
    return f"<table>{rows}</table>"


def _frame(frame: pd.DataFrame) -> str:
    # thresholds in significant digits (a threshold of 2e-05 is not "0.000"); shares and AUROCs to 3 decimals
    thresholds = {name: significant for name in frame.columns if "threshold" in str(name)}
    return frame.to_html(index=False, border=0, na_rep="—", escape=True, formatters=thresholds,
                         float_format=lambda value: f"{value:.3f}")


def _format(value) -> str:
    if isinstance(value, float):
        return "—" if value != value else f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {item}" for key, item in value.items()) or "—"
    return "—" if value is None or value == "" else str(value)
