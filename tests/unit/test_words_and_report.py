"""Names from a data set are text wherever the dashboard writes them, and the report and the threshold file say
exactly what the page says."""

import base64
import hashlib
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from markdown_it import MarkdownIt

from core.evaluation.before_after import convergence_note, what_got_worse
from core.evaluation.outcomes import outcomes
from dashboard.words import as_code, as_plot_text, as_text, percent, significant

HOSTILE_NAMES = [
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "![tracker](http://example.invalid/x.png)",
    "**bold** _it_ `code` ~~gone~~",
    ":red[colour] :material/warning: $x^2$",
    "a\nb  # heading?",
    "back\\slash & <b>",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_name_written_with_as_text_renders_as_itself_and_nothing_else(name):
    rendered = MarkdownIt("commonmark").render(as_text(name))
    assert not re.search(r"<(?!/?p>)[a-z]", rendered), rendered   # no element but the paragraph
    text = re.sub(r"</?p>\n?", "", rendered)
    unescaped = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    assert unescaped == " ".join(name.split())


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_name_written_as_code_is_one_code_span(name):
    rendered = MarkdownIt("commonmark").render(as_code(name))
    assert rendered.count("<code>") == 1 and not re.search(r"<(?!/?(p|code)>)[a-z]", rendered), rendered


def test_plot_labels_escape_the_tags_plotly_reads():
    assert as_plot_text("<a href='x'>crack</a> & co") == "&lt;a href='x'&gt;crack&lt;/a&gt; &amp; co"


@pytest.mark.parametrize("value, shown", [(13 / 80, "16.3 %"), (1 / 80, "1.3 %"), (0.0, "0.0 %"), (1.0, "100.0 %"),
                                          (float("nan"), "—"), (None, "—")])
def test_percent_rounds_halves_up_as_the_browser_does(value, shown):
    assert percent(value) == shown


def test_small_thresholds_keep_their_significant_digits():
    assert significant(2.5e-05) == "2.5e-05" and significant(0.14172785) == "0.1417" and significant(None) == "—"


def test_the_threshold_file_carries_the_band_outcomes_the_page_shows():
    from core.evaluation.thresholds import threshold_document

    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    labels = np.array(["good"] * 4 + ["defect"] * 4)
    result = outcomes(scores, labels, 0.55, 0.35)
    document = json.loads(json.dumps(threshold_document({"id": "r"}, "map_max", 0.55, result, 0.35, "Best F1")))
    metrics = document["metrics"]
    assert document["preset"] == "Best F1" and document["review_band"] == {"review_from": 0.35, "reject_from": 0.55}
    assert (metrics["good_ok"], metrics["good_review"], metrics["defect_review"], metrics["defect_ng"]) == (3, 1, 1, 3)
    # accuracy over the automatically decided parts only, and it says so
    assert metrics["accuracy"] == pytest.approx(6 / 6) and "review" in metrics["accuracy_of"]
    assert metrics["escape_rate"] == 0.0 and metrics["review_rate"] == pytest.approx(2 / 8)
    nothing_rejected = outcomes(scores, labels, 9.0).to_dict()
    assert nothing_rejected["precision"] is None and nothing_rejected["f1"] is None   # never NaN in a JSON file


def test_the_report_runs_only_its_own_scripts():
    import plotly.graph_objects as go

    from dashboard.report import build_report

    name = "<img src=x onerror=alert(1)>"
    html = build_report(title="t", decision={"score": "map_max"}, metrics=[], data_summary={"defect types": name},
                        per_type=pd.DataFrame({"part": [name], "images": [1]}), model_summary={}, ranking=None,
                        figures=[go.Figure(go.Bar(x=[name], y=[1], name=name))],
                        examples=[{"path": name, "label": name, "score": "1", "verdict": "NG", "original": "data:,",
                                   "residual": None, "heat": "data:,"}])
    assert name not in html
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "'unsafe-inline'" not in policy.split("style-src")[0] and "default-src 'none'" in policy
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.DOTALL)
    assert len(scripts) >= 2   # plotly.js and the chart
    for body in scripts:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy


def test_the_report_prints_small_thresholds_with_significant_digits():
    from dashboard.report import _frame

    table = pd.DataFrame({"score": ["map_max"], "AUROC": [0.98765], "threshold for best F1": [2.5e-05]})
    html = _frame(table)
    assert "2.5e-05" in html and "0.988" in html and "0.000" not in html


def test_the_confusion_matrix_colours_escapes_and_false_rejects_as_errors():
    from dashboard.figures import CONFUSION_COLOURS, confusion_figure

    figure = confusion_figure(outcomes([0.1, 0.9, 0.2, 0.8], ["good", "good", "defect", "defect"], 0.5))
    codes = np.array(figure.data[0].z)   # rows good, defect; columns OK, NG
    colour = {0: CONFUSION_COLOURS[0][1], 1: CONFUSION_COLOURS[2][1], 2: CONFUSION_COLOURS[-1][1]}
    assert colour[codes[1][0]] == colour[codes[0][1]] != colour[codes[0][0]] == colour[codes[1][1]]
    assert colour[codes[1][0]] == "#b42318"   # an escape is red, never the blue of a right answer


def test_a_run_worse_on_the_same_images_is_named_figure_by_figure():
    before = {"image AUROC": 0.98, "recall": 0.94, "F1": 0.9, "false-reject rate": 0.02, "escape rate": 0.06}
    after = {"image AUROC": 0.50, "recall": 0.0, "F1": math.nan, "false-reject rate": 0.0, "escape rate": 1.0}
    worse = what_got_worse(before, after, good_images=58)
    assert set(worse) == {"image AUROC", "recall", "F1", "escape rate"}
    assert worse["image AUROC"] == "image AUROC falls from 0.980 to 0.500 on the same test images."
    assert "cannot be computed" in worse["F1"]
    assert what_got_worse(before, dict(before, recall=0.93), good_images=58) == {}   # within one image's noise


def test_a_training_that_ran_out_of_epochs_while_improving_says_so():
    assert "far too few" in convergence_note({"val_loss": [0.5, 0.4, 0.3]}, 3)
    falling = [1.0 / (epoch + 1) for epoch in range(20)]
    assert "still falling" in convergence_note({"val_loss": falling}, 20)
    assert convergence_note({"val_loss": falling[:12]}, 20) == ""        # early stopping ended it: converged
    flat = [1.0] * 10 + [0.5] * 10
    assert convergence_note({"val_loss": flat}, 20) == ""


def test_the_default_decision_says_what_false_reject_rate_to_expect():
    """With 36 held-out good images the "1 %" threshold rejects none of them; a new good part is above all 36
    with probability 1/37: the basis says about 2.7 %, not 1 %."""
    from core.decision import default_decision

    few = default_decision(np.linspace(0.0, 1.0, 36), "map_max")
    assert "36 held-out good training images" in few.basis and "expect about 2.7 % false rejects" in few.basis
    assert "add good images" in few.basis
    many = default_decision(np.linspace(0.0, 1.0, 2000), "map_max")
    assert "expect about 1.0 % false rejects" in many.basis and "add good images" not in many.basis
