"""A self-contained HTML report: everything inline (plotly.js included), so it opens offline."""

from __future__ import annotations

import datetime as _dt
import html

import plotly.graph_objects as go


def build_report(*, title: str, data_summary: dict, model_summary: dict, threshold_settings: dict,
                 metrics: dict, ranking_html: str, figures: list[go.Figure],
                 examples: list[tuple[str, str]]) -> str:
    """``examples`` are (caption, PNG data URI) pairs; ``ranking_html`` is a ready table."""
    charts = []
    for index, figure in enumerate(figures):
        charts.append(figure.to_html(full_html=False, include_plotlyjs=(index == 0), config={"displaylogo": False}))
    tiles = "".join(f'<figure><img src="{uri}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
                    f"</figcaption></figure>" for caption, uri in examples)
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #1f2328; }}
h1 {{ margin-bottom: 0.2rem; }} .muted {{ color: #59636e; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
td, th {{ border: 1px solid #d1d9e0; padding: 0.3rem 0.7rem; text-align: left; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 0.8rem; }}
figure {{ margin: 0; }} figure img {{ width: 100%; image-rendering: pixelated; border-radius: 4px; }}
figcaption {{ font-size: 0.8rem; color: #59636e; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="muted">Made {created} by Residual Lab. Higher score = more anomalous; a part is rejected (NG) when
score ≥ threshold.</p>
<h2>Threshold</h2>{_table(threshold_settings)}
<h2>Metrics at this threshold</h2>{_table(metrics)}
<h2>Data</h2>{_table(data_summary)}
<h2>Model</h2>{_table(model_summary)}
<h2>Statistics ranked by how well they separate good from defect</h2>{ranking_html}
<h2>Charts</h2>{''.join(charts)}
<h2>Example residuals</h2><div class="grid">{tiles}</div>
</body></html>
"""


def _table(values: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_format(value))}</td></tr>"
                   for key, value in values.items())
    return f"<table>{rows}</table>"


def _format(value) -> str:
    if isinstance(value, float):
        return "—" if value != value else f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {item}" for key, item in value.items()) or "—"
    return "—" if value is None else str(value)
