"""What you see is what you save, through Streamlit's own test runner on the demo: the heat scale and the verdict
use one threshold, Inspect keeps its batch and gives every file a row, the training form recommends in words."""

import io
import re
import zipfile
from pathlib import Path

import numpy as np

from core.runs.bundles import load_bundle
from test_pages import as_read, open_page  # this folder is on the path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "assets" / "samples"


def test_the_heat_scale_tops_at_the_threshold_the_verdict_uses():
    """Details once said "top of the scale: the reject threshold" at the run's 0.142 while judging at 0.172."""
    app = open_page("threshold")
    run_default = load_bundle(ROOT / "assets" / "demo_model").default_decision_.threshold
    app.number_input(key="threshold_input").set_value(0.172).run()
    app.switch_page("views/inspect.py").run()
    app.button(key="try_samples").click().run()
    assert not app.exception
    scale = next(as_read(item.value) for item in app.caption if "Colour scale" in item.value)
    assert "the reject threshold in use (0.172 on map_max)" in scale and f"{run_default:.4g}" not in scale
    judged = next(as_read(item.value) for item in app.caption if item.value.startswith("Judged with"))
    assert "0.172" in judged


def test_the_colour_bar_labels_are_readable():
    """The scale's numbers were drawn in a 10 px font, their digits 8 px tall; now at least 11 px type."""
    from dashboard.images import LABEL_FONT_SIZE, heat_picture

    assert LABEL_FONT_SIZE >= 11
    picture = heat_picture(np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32), 0.142)
    label_area = picture[: picture.shape[0] // 2, -56:]   # right of the colour bar, its top number only
    ink = np.where((label_area.max(axis=2) > 0.5).any(axis=1))[0]
    assert ink.max() - ink.min() + 1 >= 10   # the digits of "0.142" stand at least 10 px tall


def test_inspect_keeps_its_batch_after_a_trip_to_threshold_and_judges_it_again():
    app = open_page("inspect")
    files = [(path.name, path.read_bytes(), "image/png") for path in sorted(SAMPLES.glob("*.png"))]
    app.file_uploader[0].set_value(files).run()
    before = dict(zip(app.dataframe[0].value["path"], app.dataframe[0].value["verdict"]))
    assert set(before.values()) >= {"OK", "NG"}
    app.switch_page("views/threshold.py").run()
    app.number_input(key="threshold_input").set_value(10.0).run()   # nothing is rejected at 10
    app.switch_page("views/inspect.py").run()
    assert not app.exception
    after = dict(zip(app.dataframe[0].value["path"], app.dataframe[0].value["verdict"]))
    assert set(after) == set(before)                                   # the same batch, still there
    assert set(after.values()) <= {"OK", "INVALID"}                     # judged again at the new threshold
    assert any("dropped earlier in this session" in item.value for item in app.caption)
    app.button(key="inspect_clear").click().run()
    assert not app.dataframe


def test_a_file_in_an_inspect_zip_that_is_not_an_image_gets_an_invalid_row():
    app = open_page("inspect")
    archive = io.BytesIO()
    good = sorted(SAMPLES.glob("good_*.png"))[0]
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("parts/notes.txt", "measured on line 3")
        bundle.writestr(f"parts/{good.name}", good.read_bytes())
    app.file_uploader[0].set_value([("batch.zip", archive.getvalue(), "application/zip")]).run()
    assert not app.exception
    table = app.dataframe[0].value
    rows = dict(zip(table["path"], zip(table["verdict"], table["reason"])))
    assert rows["batch.zip/parts/notes.txt"][0] == "INVALID"
    assert "not a PNG, JPEG, BMP or TIFF image" in rows["batch.zip/parts/notes.txt"][1]
    assert rows[f"batch.zip/parts/{good.name}"][0] in ("OK", "NG", "REVIEW")


def test_a_detector_is_chosen_in_one_place_the_recommended_one_first_with_its_reason_in_words():
    """There were two detector choices (the model's "Detector" and the training form's "Detector to train"); now one,
    which the training form follows."""
    from core.detectors import RECOMMENDED_DETECTOR

    app = open_page()
    assert [radio.label for radio in app.radio if "etector" in radio.label] == ["Detector"]
    choice = app.radio(key="detector_kind")
    assert choice.options[0].startswith("The chosen model's own")
    assert choice.options[1].endswith("(recommended)") and choice.options[1].startswith("Memory bank")
    choice.set_value(RECOMMENDED_DETECTOR).run()
    reason = next(item.value for item in app.caption if "recommended:" in item.value)
    assert "best on the real photographs in our benchmarks" in reason
    assert not re.search(r"\(0\.\d+-[01]\.\d+\)", reason.split(".")[0])   # words first, not a bare range
    # a detector that is trained: the form below trains the one chosen, and says so
    app.radio(key="detector_kind").set_value("draem").run()
    assert not app.exception
    assert any(expander.label == "Train a new DRAEM run" for expander in app.expander)
    assert any("trained, not fitted on the spot" in item.value for item in app.info)
    assert app.session_state["detector_choice"].kind == "run"   # the pages keep the chosen model meanwhile


def test_the_threshold_page_saves_nothing_on_the_read_only_demo_and_says_so_before_the_click():
    app = open_page("threshold")
    assert app.button(key="save_threshold").disabled
    assert any(item.value == "The demo model is read-only: download the file instead." for item in app.caption)


def test_the_preset_clicked_is_the_preset_saved():
    """The file said "preset": null right after "Run default" was clicked."""
    app = open_page("threshold")
    app.number_input(key="threshold_input").set_value(0.2).run()
    assert app.session_state["preset"] is None
    next(button for button in app.button if button.label == "Run default").click().run()
    assert app.session_state["preset"] == "Run default"
    assert any(re.match(r"Released at \*\*[0-9.]+\*\* \(Run default\)", item.value) for item in app.caption)
    next(button for button in app.button if button.label == "Best F1").click().run()
    assert app.session_state["preset"] == "Best F1"


def test_a_detector_that_borrows_nothing_from_the_run_is_not_fitted_again_for_another_run():
    """PaDiM and a memory bank on ImageNet features depend on the data only: choosing another model keeps them (and
    their scores); a memory bank on the model's encoder and the run's own detector follow the model."""
    from dashboard import resources, session

    def key(run, choice):
        return resources.detector_key(f"/runs/{run}", f"sha-{run}", "demo", "", "fingerprint", choice)

    for choice in (session.DetectorChoice("padim"), session.DetectorChoice("memory_bank", "efficientnet_lite0")):
        assert key("a", choice) == key("b", choice) and hash(key("a", choice)) == hash(key("b", choice))
    for choice in (session.RUN_ITSELF, session.DetectorChoice("memory_bank", "encoder")):
        assert key("a", choice) != key("b", choice)
