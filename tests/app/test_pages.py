"""Every page through Streamlit's own test runner, on the built-in demo and the shipped model."""

import io
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.bundles import load_bundle
from core.datasets import open_dataset
from core.metrics import ThresholdTable
from core.pipeline import score_samples

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
SAMPLES = ROOT / "assets" / "samples"


@pytest.fixture(scope="module")
def demo_scores():
    """The demo test set scored by the core directly: what every page must agree with."""
    with open_dataset("demo") as dataset:
        return score_samples(load_bundle(ROOT / "assets" / "demo_model"), dataset, dataset.test).table


def open_page(page: str | None = None) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=180).run()
    assert not app.exception, app.exception
    if page:
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, [item.value for item in app.exception]
    return app


def metrics(app: AppTest) -> dict:
    return {metric.label: metric.value for metric in app.metric}


def expected_cards(point) -> dict:
    percent = lambda value: f"{value * 100:.1f} %"  # noqa: E731
    return {"Precision": percent(point.precision), "Recall": percent(point.recall), "F1": f"{point.f1:.3f}",
            "False-reject rate": percent(point.false_reject_rate), "Escape rate": percent(point.escape_rate)}


def test_data_and_model_page_summarises_the_demo():
    app = open_page()
    cards = metrics(app)
    assert cards["Training images (good)"] == "240" and cards["Test defect"] == "80"
    assert cards["Model"] == "NCAE" and cards["Input size"] == "64 px"


def test_threshold_slider_moves_the_metrics_to_the_cores_values(demo_scores):
    app = open_page("threshold")
    column = app.session_state["score_column"]
    table = ThresholdTable(demo_scores[column], demo_scores["label"])
    before = metrics(app)
    assert app.session_state["threshold"] == pytest.approx(table.best_f1_threshold())
    for quantile in (0.3, 0.8):
        value = float(np.quantile(demo_scores[column], quantile))
        app.slider(key="threshold_slider").set_value(value).run()
        assert not app.exception
        shown = metrics(app)
        for label, text in expected_cards(table.at(app.session_state["threshold"])).items():
            assert shown[label] == text, label
        assert app.session_state["threshold"] == pytest.approx(value, rel=1e-6)
    assert shown != before


def test_every_preset_sets_the_threshold_the_core_computes(demo_scores):
    app = open_page("threshold")
    column = app.session_state["score_column"]
    table = ThresholdTable(demo_scores[column], demo_scores["label"])
    expected = {"Best F1": table.best_f1_threshold(), "Youden's J": table.youden_threshold(),
                "Zero escape": table.zero_escape_threshold()}
    for label, value in expected.items():
        next(button for button in app.button if button.label == label).click().run()
        assert app.session_state["threshold"] == pytest.approx(value), label
    app.number_input(key="target_rate").set_value(10.0).run()
    app.button(key="preset_frr").click().run()
    assert app.session_state["threshold"] == pytest.approx(table.target_false_reject_threshold(0.10))
    app.number_input(key="escape_cost").set_value(20.0).run()
    app.number_input(key="reject_cost").set_value(3.0).run()
    app.button(key="preset_cost").click().run()
    assert app.session_state["threshold"] == pytest.approx(table.minimum_cost_threshold(20.0, 3.0))
    assert metrics(app)["Escape rate"] == expected_cards(table.at(app.session_state["threshold"]))["Escape rate"]


def _png(path: Path) -> bytes:
    return path.read_bytes()


def test_inspect_judges_good_uploads_and_reports_a_corrupt_one():
    app = open_page("inspect")
    goods = sorted(SAMPLES.glob("good_*.png"))[:2]
    files = [(path.name, _png(path), "image/png") for path in goods]
    files.append(("broken.png", _png(goods[0])[:60], "image/png"))
    app.file_uploader[0].set_value(files).run()
    assert not app.exception
    table = app.dataframe[0].value
    verdicts = dict(zip(table["path"], table["verdict"]))
    assert {verdicts[path.name] for path in goods} <= {"OK", "REVIEW", "NG"}
    assert verdicts["broken.png"] == "ERROR"
    problem = table.loc[table["path"] == "broken.png", "problem"].item()
    assert problem.startswith("broken.png:") and "corrupt" in problem
    assert metrics(app)["ERROR"] == "1"


def test_inspect_accepts_a_zip_and_refuses_a_hostile_one():
    import zipfile

    good = sorted(SAMPLES.glob("good_*.png"))[0]
    safe, hostile = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(safe, "w") as bundle:
        bundle.writestr("parts/a.png", _png(good))
    with zipfile.ZipFile(hostile, "w") as bundle:
        bundle.writestr("../evil.png", _png(good))
    app = open_page("inspect")
    app.file_uploader[0].set_value([("batch.zip", safe.getvalue(), "application/zip"),
                                    ("evil.zip", hostile.getvalue(), "application/zip")]).run()
    table = app.dataframe[0].value
    verdicts = dict(zip(table["path"], table["verdict"]))
    assert verdicts["batch.zip/parts/a.png"] in {"OK", "REVIEW", "NG"}
    assert verdicts["evil.zip"] == "ERROR"


def test_residuals_gallery_shows_four_pictures_per_image_worst_first(demo_scores):
    app = open_page("residuals")
    column = app.session_state["score_column"]
    assert len(app.get("image")) == 8 * 4  # one page: original, reconstruction, residual, heat map
    worst = demo_scores.sort_values(column, ascending=False)["path"].iloc[0]
    assert any(worst in item.value for item in app.markdown)
    app.multiselect(key="res_labels").set_value(["good"]).run()
    assert all("defect" not in item.value.split("\n")[-2] for item in app.markdown if item.value.startswith("`"))


def test_statistics_ranking_lists_every_score_best_first():
    app = open_page("statistics")
    assert not app.exception
    ranking = app.dataframe[0].value
    assert ranking.iloc[0]["AUROC"] >= ranking["AUROC"].max() - 1e-12
    assert len(ranking) == 13  # eleven statistics, stat_distance and map_max


def test_report_contains_the_current_threshold():
    app = open_page("threshold")
    threshold = app.session_state["threshold"]
    app.switch_page("views/report.py").run()
    next(button for button in app.button if button.label == "Build report").click().run()
    assert not app.exception
    report = app.session_state["report_html"]
    assert report.startswith("<!doctype html>") and f"{threshold:.6g}" in report
    assert "plotly" in report.lower() and "data:image/png;base64," in report


def test_statistics_page_draws_the_supervised_boundary_with_its_warning():
    app = open_page("statistics")
    app.toggle(key="stat_boundary").set_value(True).run()
    assert not app.exception
    assert any("labelled defect" in warning.value for warning in app.warning)
    figure = app.get("plotly_chart")[0].proto.spec
    assert '"type":"contour"' in figure.replace(" ", "")


def test_compare_page_agrees_with_the_core_and_plots_one_roc_per_detector(demo_scores):
    app = open_page("compare")
    table = app.dataframe[0].value
    assert list(table["detector"]) == ["NCAE residual (max)", "Memory bank on NCAE encoder",
                                       "Supervised: logistic regression", "Supervised: gradient boosting"]
    expected = ThresholdTable(demo_scores["max"], demo_scores["label"]).auroc()
    assert table.loc[0, "image AUROC"] == pytest.approx(expected)
    assert table.loc[1, "pixel AUROC"] > 0.5 and np.isnan(table.loc[2, "pixel AUROC"])
    roc = app.get("plotly_chart")[0].proto.spec
    assert roc.count('"name":') >= 5  # chance line plus one curve per detector
    assert any("labelled defect" in warning.value for warning in app.warning)


def test_memory_bank_detector_drives_the_threshold_and_residual_pages():
    app = open_page()
    app.radio(key="detector_kind").set_value("memory_bank").run()
    assert not app.exception
    assert metrics(app)["Detector"] == "memory bank"
    app.switch_page("views/threshold.py").run()
    assert not app.exception
    assert app.session_state["score_column"] == "patch_score"
    assert float(metrics(app)["F1"]) > 0.8
    app.switch_page("views/residuals.py").run()
    assert not app.exception
    assert len(app.get("image")) == 8 * 3  # original, anomaly map, heat map
