"""Every page through Streamlit's own test runner, on the built-in demo and the shipped model."""

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.runs.bundles import load_bundle
from core.data.datasets import open_dataset
from core.evaluation.metrics import ThresholdTable
from core.evaluation.outcomes import outcomes
from core.evaluation.scoring import judged_rows, score_samples, score_sources
from PIL import Image

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


def open_page_on(folder: Path, monkeypatch, page: str | None = None) -> AppTest:
    """The app opened on the data set in ``folder`` (as "Use this folder" would choose it): the pages that only have
    to work for a run, not to judge the whole demo, score a few dozen images instead of 380."""
    from dashboard.session import DataChoice

    monkeypatch.setenv("RESIDUAL_LAB_DATA_ROOTS", str(folder.parent))
    app = AppTest.from_file(APP, default_timeout=180)
    app.session_state["data_choice"] = DataChoice("folder", str(folder), folder.name)
    app.run()
    assert not app.exception, app.exception
    if page:
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, [item.value for item in app.exception]
    return app


def as_read(markdown: str) -> str:
    """Markdown as a reader sees it: names are written with their punctuation escaped (words.as_text) or as code
    (words.as_code), and neither the backslashes nor the backticks show."""
    return re.sub(r"\\(.)", r"\1", markdown.replace("`", ""))


def metrics(app: AppTest) -> dict:
    return {metric.label: metric.value for metric in app.metric}


def test_data_and_model_page_summarises_the_demo(network_warm_ups):
    app = open_page()
    cards = metrics(app)
    assert cards["Training images (good)"] == "240" and cards["Test defect"] == "80"
    assert cards["Model"] == "NCAE" and cards["Input size"] == "64 px"
    # once drawn, the page has the ImageNet detectors' network made ready in the background
    assert network_warm_ups == [1]


def test_threshold_page_opens_on_the_primary_score_and_the_runs_own_threshold(demo_scores):
    """Never the column with the best test AUROC: the one fixed in advance, at the run's threshold."""
    app = open_page("threshold")
    decision = load_bundle(ROOT / "assets" / "demo_model").default_decision_
    assert app.session_state["score_column"] == decision.column == "map_max"
    assert app.session_state["threshold"] == pytest.approx(decision.threshold)
    aurocs = {column: ThresholdTable(demo_scores[column], demo_scores["label"]).auroc()
              for column in ("map_max", "kurtosis", "skewness")}
    assert max(aurocs, key=aurocs.get) != "map_max"   # the test-set winner is shown, not chosen
    options = app.selectbox[0].options
    assert any(option.startswith("map_max — primary score") for option in options)
    assert any(option.startswith("kurtosis (AUROC here") for option in options)
    assert any("held-out good training images" in caption.value for caption in app.caption)


def released(app: AppTest):
    """The decision the server holds (what the thumbnails and a saved file use), as core Outcomes."""
    return app.session_state["released_outcomes"]


def test_the_exact_value_box_sets_the_numbers_the_core_computes(demo_scores):
    app = open_page("threshold")
    column = app.session_state["score_column"]
    for quantile in (0.3, 0.8):
        value = float(np.quantile(demo_scores[column], quantile))
        app.number_input(key="threshold_input").set_value(value).run()
        assert not app.exception
        assert app.session_state["threshold"] == pytest.approx(value, rel=1e-6)
        expected = outcomes(demo_scores[column], demo_scores["label"], value)
        assert released(app) == expected
        assert any(f"recall {expected.recall * 100:.1f} %" in caption.value for caption in app.caption)


def test_a_release_in_the_browser_is_adopted_and_a_stale_one_is_not(demo_scores):
    """The live component reports on release with the revision it was drawn at; after a preset the server's
    threshold wins over a report from before it."""
    app = open_page("threshold")
    column = app.session_state["score_column"]
    revision = app.session_state["threshold_revision"]
    value = float(np.quantile(demo_scores[column], 0.6))
    band = float(np.quantile(demo_scores[column], 0.4))
    app.session_state[f"live-{column}"] = {"threshold": value, "review_from": band, "band": True, "revision": revision}
    app.run()
    assert app.session_state["threshold"] == pytest.approx(value) and app.session_state["review_from"] == band
    assert released(app) == outcomes(demo_scores[column], demo_scores["label"], value, band)
    assert released(app).good[1] + released(app).defect[1] > 0      # the band is a third outcome
    next(button for button in app.button if button.label == "Best F1").click().run()
    best = ThresholdTable(demo_scores[column], demo_scores["label"]).best_f1_threshold()
    assert app.session_state["threshold"] == pytest.approx(best)     # the old report does not pull it back


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
    assert released(app).escape_rate == pytest.approx(table.at(app.session_state["threshold"]).escape_rate)


def _png(path: Path) -> bytes:
    return path.read_bytes()


def core_verdicts(paths) -> dict:
    """What the core says of these files with the demo run's own default decision."""
    detector = load_bundle(ROOT / "assets" / "demo_model")
    rows = judged_rows(score_sources(detector, list(paths), [path.name for path in paths]),
                       detector.default_decision_)
    return dict(zip(rows["path"], rows["verdict"]))


def test_inspect_gives_the_cores_verdicts_and_rejects_dead_and_corrupt_frames():
    app = open_page("inspect")
    samples = sorted(SAMPLES.glob("*.png"))
    black = io.BytesIO()
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(black, format="PNG")
    files = [(path.name, _png(path), "image/png") for path in samples]
    files += [("broken.png", _png(samples[0])[:60], "image/png"), ("black.png", black.getvalue(), "image/png")]
    app.file_uploader[0].set_value(files).run()
    assert not app.exception
    table = app.dataframe[0].value
    verdicts = dict(zip(table["path"], table["verdict"]))
    expected = core_verdicts(samples)
    assert {name: verdicts[name] for name in expected} == expected
    assert set(expected.values()) >= {"OK", "NG"}    # the samples hold both, so a page rejecting all would fail
    assert verdicts["broken.png"] == "INVALID" and verdicts["black.png"] == "INVALID"
    reasons = dict(zip(table["path"], table["reason"]))
    assert reasons["broken.png"].startswith("unreadable: broken.png:") and "corrupt" in reasons["broken.png"]
    assert "blank" in reasons["black.png"]
    assert dict(zip(table["path"], table["map_max"]))["broken.png"] == "—"   # no score: a dash, not "None"
    # a table cell cuts a long reason off; the page spells each refused image's reason out in full
    why = as_read(next(item.value for item in app.markdown if item.value.startswith("**Why INVALID**")))
    assert f"black.png: {reasons['black.png']}" in why and f"broken.png: {reasons['broken.png']}" in why
    assert metrics(app)["INVALID"] == "2"
    assert metrics(app)["OK"] == str(list(expected.values()).count("OK"))
    download = app.get("download_button")[0]
    assert download.proto.label == "Download scores.csv"


def test_a_presenter_can_try_the_sample_images_without_files():
    """A browser user cannot reach assets/samples/ on the server: one button judges them, as the core does."""
    app = open_page("inspect")
    app.button(key="try_samples").click().run()
    assert not app.exception
    table = app.dataframe[0].value
    assert dict(zip(table["path"], table["verdict"])) == core_verdicts(sorted(SAMPLES.glob("*.png")))


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
    assert verdicts["batch.zip/parts/a.png"] == core_verdicts([good])[good.name]
    assert verdicts["evil.zip"] == "INVALID"


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
    ranking = app.table[0].value.reset_index()
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


def test_compare_page_agrees_with_the_core_and_keeps_its_figures_across_a_restart(demo_scores, monkeypatch):
    """The quick comparison agrees with the core; a restarted server shows it again without building the memory
    bank; a copy edited on disk is not shown (its names could reach the chart's legend) but computed again."""
    import dashboard.resources
    from core.evaluation.compare import fitted_comparison_from_json
    from dashboard import comparison

    def restart():
        comparison.quick_comparison.clear()
        dashboard.resources.fit_on_good_images.clear()

    restart()   # a fresh server: nothing in memory (another test may have compared already), nothing on disk
    app = open_page("compare")
    table = app.dataframe[0].value
    assert list(table["detector"]) == ["NCAE residual (map_max)", "Memory bank on NCAE encoder",
                                       "Supervised: logistic regression", "Supervised: gradient boosting"]
    expected = ThresholdTable(demo_scores["map_max"], demo_scores["label"]).auroc()
    assert table.loc[0, "image AUROC"] == pytest.approx(expected)
    # a figure that does not exist reads "—" (the grid would print a missing number as "None")
    assert float(table.loc[1, "pixel AUROC"]) > 0.5 and table.loc[2, "pixel AUROC"] == "—"
    roc = app.get("plotly_chart")[0].proto.spec
    assert roc.count('"name":') >= 5  # chance line plus one curve per detector
    assert any("labelled defect" in warning.value for warning in app.warning)

    [saved] = (dashboard.resources.RUNS_ROOT / "cache" / "compare").glob("*.json")
    sound = saved.read_text()
    restart()

    def no_fitting(key):
        raise AssertionError("the memory bank was built again")

    with monkeypatch.context() as patched:
        patched.setattr(dashboard.resources, "fit_on_good_images", no_fitting)
        assert open_page("compare").dataframe[0].value.equals(table)

    document = json.loads(sound)
    payload = '<a href="javascript:alert(1)">click</a>'
    for part in ("figures", "curves"):
        document[part][payload] = document[part].pop("Memory bank on NCAE encoder")
    saved.write_text(json.dumps(document))
    computed = []
    monkeypatch.setattr(comparison, "_compare_now", lambda key: computed.append(key) or
                        fitted_comparison_from_json(json.loads(sound)))
    restart()
    again = open_page("compare")
    assert computed and list(again.dataframe[0].value["detector"]) == list(table["detector"])
    assert "javascript" not in again.get("plotly_chart")[0].proto.spec and "javascript" not in saved.read_text()


def test_compare_shows_the_models_figures_while_the_bank_is_built_and_keeps_them_if_it_fails(monkeypatch):
    """On a first visit the model's row and the supervised reference come first (the memory bank on the encoder takes
    seconds to build); a bank that cannot be built costs its row, with the reason, not the figures already shown."""
    import dashboard.resources
    from core.errors import InputError
    from dashboard import comparison

    comparison.quick_comparison.clear()
    comparison.model_comparison.clear()
    # nothing saved in this test's own runs folder: a first visit

    def no_bank(key):
        raise InputError("The disk is full.")

    monkeypatch.setattr(dashboard.resources, "fit_on_good_images", no_bank)
    app = open_page("compare")
    assert list(app.dataframe[0].value["detector"]) == ["NCAE residual (map_max)", "Supervised: logistic regression",
                                                        "Supervised: gradient boosting"]
    assert any("The disk is full" in error.value for error in app.error)
    assert not any("being built" in info.value for info in app.info)
    assert app.get("plotly_chart")[0].proto.spec.count('"name":') >= 4   # chance line and three curves


def test_the_training_form_offers_the_lattice_detector_at_its_own_resolution():
    app = open_page()
    app.radio(key="detector_kind").set_value("lattice").run()
    assert not app.exception
    assert app.select_slider(key="train_size_lattice").value == 128
    assert not [box for box in app.number_input if box.label == "Maximum epochs"]
    assert any("Lattice" in caption.value and "periodic" in caption.value for caption in app.caption)


def test_the_training_form_offers_the_native_resolution_and_estimates_the_time():
    app = open_page()
    app.radio(key="detector_kind").set_value("ncae").run()
    assert app.select_slider(key="train_size_ncae").value == 128      # the demo's native size
    assert app.select_slider(key="train_patch_ncae").value == 64
    assert app.toggle(key="train_colour_ncae").value is False          # the demo is grey
    estimate = next(caption.value for caption in app.caption if caption.value.startswith("Estimated training time"))
    assert "64 px patches" in estimate and "min" in estimate
    app.select_slider(key="train_patch_ncae").set_value("whole image").run()
    assert any("whole images" in caption.value for caption in app.caption)


def test_saving_a_threshold_to_a_run_says_so_and_nothing_else(runs_root):
    """A bare expression once made Streamlit print its own documentation under the button."""
    import shutil

    run = runs_root / "20260101-000000-ncae-copy"
    shutil.copytree(ROOT / "assets" / "demo_model", run)
    app = open_page()
    app.selectbox[0].set_value(next(option for option in app.selectbox[0].options if "copy" in option)).run()
    app.switch_page("views/threshold.py").run()
    next(button for button in app.button if button.label == "Save threshold to the run").click().run()
    assert not app.exception
    assert [as_read(item.value) for item in app.success] == [f"Saved {run / 'threshold.json'}."]
    texts = " ".join(str(element.value) for element in (*app.markdown, *app.text, *app.code) if element.value)
    assert "DeltaGenerator" not in texts and "streamlit" not in texts.lower()
    assert not app.get("help") and not app.get("help_info")  # what "magic" renders for a bare expression
    from core.evaluation.thresholds import read_threshold_file

    assert read_threshold_file(run / "threshold.json")["score_column"] == "map_max"


def test_a_damaged_run_is_listed_with_a_note_and_every_page_still_opens(runs_root):
    import json
    import shutil

    damaged = runs_root / "20260101-000000-ncae-dead"
    shutil.copytree(ROOT / "assets" / "demo_model", damaged)
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["model_kind"] = 5
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    app = open_page()
    assert any("20260101-000000-ncae-dead is skipped" in as_read(caption.value) for caption in app.caption)
    assert not any("dead" in option for option in app.selectbox[0].options)
    app.switch_page("views/threshold.py").run()
    assert not app.exception


@pytest.mark.parametrize("kind", ["device", "pipe", "file"])
def test_a_device_pipe_or_file_as_the_data_folder_gives_one_sentence(tmp_path, monkeypatch, kind):
    import os

    monkeypatch.setenv("RESIDUAL_LAB_DATA_ROOTS", f"{tmp_path}:/dev")
    target = {"device": "/dev/null", "pipe": tmp_path / "pipe", "file": tmp_path / "notes.txt"}[kind]
    if kind == "pipe":
        os.mkfifo(target)
    if kind == "file":
        target.write_text("not a data set")
    app = open_page()
    app.radio(key="data_source").set_value("Folder on the server").run()
    app.text_input[0].set_value(str(target)).run()
    next(button for button in app.button if button.label == "Use this folder").click().run()
    assert not app.exception
    errors = [as_read(item.value) for item in app.error]
    assert len(errors) == 1 and str(target) in errors[0] and "not a folder" in errors[0]
    assert "Error" not in errors[0].split(":")[0]   # no exception type, no traceback


def test_the_summary_says_when_the_model_was_trained_on_other_data_and_how_casting_defects_are_used(
        tmp_path, monkeypatch, small_demo_dir):
    import shutil

    images = sorted((small_demo_dir / "train" / "good").glob("*.png"))
    for split, folder, count in (("train", "ok_front", 12), ("train", "def_front", 3), ("test", "ok_front", 4),
                                 ("test", "def_front", 4)):
        (tmp_path / "casting" / split / folder).mkdir(parents=True)
        for index in range(count):
            shutil.copy(images[index], tmp_path / "casting" / split / folder / f"{index}.png")
    monkeypatch.setenv("RESIDUAL_LAB_DATA_ROOTS", str(tmp_path))
    app = open_page()
    assert not any("trained on other data" in item.value for item in app.warning)   # demo model on demo data
    app.radio(key="data_source").set_value("Folder on the server").run()
    app.text_input[0].set_value(str(tmp_path / "casting")).run()
    next(button for button in app.button if button.label == "Use this folder").click().run()
    assert not app.exception
    assert any("trained on other data" in item.value for item in app.warning)
    assert any("train/def_front" in as_read(item.value) and "3 defect images" in item.value for item in app.info)


def _heat_map_urls(app) -> dict:
    """Caption → picture address of Inspect's heat maps; Streamlit names a picture by its content's hash."""
    urls = {}
    for element in app.get("image"):
        for picture in element.proto.imgs:
            urls[as_read(picture.caption)] = picture.url
    return urls


def test_a_good_part_gets_the_same_heat_map_alone_and_in_a_mixed_batch():
    good = sorted(SAMPLES.glob("good_*.png"))[0]
    defects = [path for path in sorted(SAMPLES.glob("*.png")) if not path.name.startswith("good_")]
    alone = open_page("inspect")
    alone.file_uploader[0].set_value([(good.name, _png(good), "image/png")]).run()
    mixed = open_page("inspect")
    mixed.file_uploader[0].set_value([(path.name, _png(path), "image/png") for path in [good, *defects]]).run()
    caption = f"OK · {good.name}"
    first, second = _heat_map_urls(alone), _heat_map_urls(mixed)
    assert caption in first and caption in second
    assert first[caption] == second[caption]
    assert len(set(second.values())) == len(defects) + 1   # the pictures do differ from one another
    assert any("the reject threshold in use" in item.value for item in mixed.caption)


def test_runs_keep_their_final_state_after_a_reload_and_can_be_named_and_deleted(runs_root):
    import json
    import shutil

    from core.runs.store import read_status

    runs = runs_root
    finished = runs / "20260101-000000-ncae-aaaa"
    shutil.copytree(ROOT / "assets" / "demo_model", finished)
    for name, state in (("20260102-000000-ncae-bbbb", "cancelled"), ("20260103-000000-cae-cccc", "training")):
        (runs / name).mkdir()
        # the "training" one names no living process: a killed training
        (runs / name / "status.json").write_text(json.dumps({"state": state, "epoch": 4, "epochs": 60,
                                                             "model_kind": name.split("-")[2],
                                                             "message": "Training was cancelled."}))
    app = open_page()
    text = " ".join(item.value for item in app.markdown)
    assert "finished" in text and "cancelled" in text and "interrupted" in text
    app.text_input(key="name-20260101-000000-ncae-aaaa").set_value("Line 3 impellers").run()
    assert read_status(finished)["name"] == "Line 3 impellers"
    reloaded = open_page()   # a new session: what is on disk is what it shows
    assert any(option.startswith("Line 3 impellers (NCAE") for option in reloaded.selectbox[0].options)
    assert "interrupted" in " ".join(item.value for item in reloaded.markdown)
    reloaded.button(key="delete-20260102-000000-ncae-bbbb").click().run()
    assert not (runs / "20260102-000000-ncae-bbbb").exists() and finished.exists()


def _detail_text(app) -> str:
    return " ".join(as_read(item.value) for item in app.markdown)


def test_details_open_from_the_gallery_and_from_a_misclassified_image(demo_scores):
    app = open_page("residuals")
    app.button(key=next(button.key for button in app.button if button.key.startswith("large-"))).click().run()
    assert not app.exception
    worst = demo_scores.sort_values("map_max", ascending=False).iloc[0]
    text = _detail_text(app)
    assert f"**{worst['path']}**" in text and "verdict: **NG**" in text and "≥ threshold" in text
    frames = [frame.value for frame in app.dataframe]
    scores = next(frame for frame in frames if "decides" in frame)
    assert scores.loc[scores["score"] == "map_max", "value"].item() == pytest.approx(worst["map_max"], rel=1e-5)
    assert scores.loc[scores["score"] == "map_max", "decides"].item() == "primary score"
    assert len(app.get("image")) >= 8 * 4 + 4   # the gallery and the detail's four pictures

    threshold = open_page("threshold")
    detail_button = next(button for button in threshold.button if button.key and button.key.startswith("wrong-"))
    detail_button.click().run()
    assert not threshold.exception
    path = detail_button.key.removeprefix("wrong-")
    row = demo_scores.set_index("path").loc[path]
    expected = "NG" if row["label"] == "good" else "OK"   # a false reject is NG, an escape OK
    assert f"**{path}**" in _detail_text(threshold) and f"verdict: **{expected}**" in _detail_text(threshold)


def test_mark_a_false_reject_good_retrain_and_see_before_and_after(runs_root, demo_scores):
    """The review loop: a false reject marked good is trained on by a new run; both runs are then shown on the
    same test images (that image no longer among them), both ROC curves and the verdicts that changed."""
    from dashboard import jobs

    app = open_page("threshold")
    false_reject = next(button for button in app.button if button.key and button.key.startswith("wrong-")
                        and button.key.removeprefix("wrong-").startswith("test/good/"))
    path = false_reject.key.removeprefix("wrong-")
    false_reject.click().run()
    app.button(key=f"review-good-{path}").click().run()
    assert not app.exception
    marks = list((runs_root / "corrections").glob("*.json"))
    assert len(marks) == 1 and path in marks[0].read_text()
    assert not list(Path(ROOT).rglob("*corrections*.json"))   # nothing written into the data or the app

    # an escape marked good changes the labels every page counts with, at once
    escape = demo_scores[(demo_scores["label"] == "defect")].sort_values("map_max").iloc[0]["path"]
    app.switch_page("views/residuals.py").run()
    from core.runs.corrections import load_corrections

    load_corrections(marks[0]).mark(escape, "exclude")
    app.switch_page("views/threshold.py").run()
    assert released(app).n_defect == int((demo_scores["label"] == "defect").sum()) - 1

    app.switch_page("views/review.py").run()
    assert not app.exception
    assert any(path in item.value for item in app.markdown) and any(escape in item.value for item in app.markdown)
    # the form's default is the run's own epochs (a usable run); a user who asks for 2 gets a warned, worse run
    assert app.number_input(key="retrain_epochs").value == load_bundle(ROOT / "assets" / "demo_model").epochs
    app.number_input(key="retrain_epochs").set_value(2).run()
    next(button for button in app.button if button.label == "Retrain with corrections").click().run()
    run_id = app.session_state["retraining"]
    jobs.join(run_id, timeout=600)
    app.run()
    assert not app.exception, [item.value for item in app.exception]
    # two epochs make a worse run: the page says so plainly, and using it takes a second, named confirmation
    assert len(app.error) == 1 and app.error[0].value.startswith("**The retrained run is worse than the one in use.**")
    assert "image auroc falls from" in app.error[0].value.lower()
    assert any("far too few to converge" in item.value or "far from convergence" in item.value for item in app.warning)
    assert app.button(key="use-retrained").disabled
    assert "image AUROC" in app.checkbox(key="confirm-worse").label
    app.checkbox(key="confirm-worse").check().run()
    assert not app.button(key="use-retrained").disabled
    cards = next(frame.value for frame in app.dataframe if list(frame.value.columns) == ["before", "after"])
    assert "nan" not in cards.to_string().lower()
    assert "image AUROC" in cards.index and "escape rate" in cards.index
    assert any(item.value.startswith("**Images whose verdict changed:") for item in app.markdown)
    roc = app.get("plotly_chart")[-1].proto.spec
    assert '"before (AUROC' in roc and '"after (AUROC' in roc
    assert any(item.value.startswith("Both runs on the same 138 test images") for item in app.caption)
    manifest = (runs_root / run_id / "manifest.json").read_text()
    assert '"train_good": 241' in manifest    # the false reject joined the training images
    # a reload forgets the session; the page finds the retraining again and shows the same comparison
    reloaded = open_page("review")
    assert any(item.value.startswith("Both runs on the same 138 test images") for item in reloaded.caption)


def test_the_threshold_page_exports_an_inspector_with_its_threshold_inside():
    import zipfile

    app = open_page("threshold")
    app.number_input(key="threshold_input").set_value(0.12).run()
    app.button(key="export_inspector").click().run()
    assert not app.exception
    archive = zipfile.ZipFile(io.BytesIO(app.session_state["inspector_zip"]))
    manifest = json.loads(archive.read("inspector/manifest.json"))
    assert manifest["threshold"] == pytest.approx(0.12) and manifest["score"] == "map_max"
    assert {"inspector/saved_model/saved_model.pb", "inspector/inspector.onnx"} <= set(archive.namelist())
    assert any(item.value.startswith("The zip holds the SavedModel and its ONNX copy (inspector.onnx), checked with "
                                     "onnxruntime") for item in app.caption)
    # another threshold: the inspector made at 0.12 is no longer offered
    app.number_input(key="threshold_input").set_value(0.15).run()
    assert not app.exception and "inspector_zip" not in app.session_state
    assert not any(item.value.startswith("The zip holds") for item in app.caption)
