"""What you see is what you save, in a real Chromium: a data set cannot run code in the page, and the page never
shows one decision while saving another.

Uses Debian's Chromium at /usr/bin/chromium (Playwright never downloads a browser here). Screenshots land in
test-artifacts/ (git-ignored).
"""

import io
import json
import re
import shutil
import time
import zipfile

import pytest

# this folder is on the path; importing test_browser also refuses to skip in CI when Chromium is missing
from test_browser import ARTIFACTS, ROOT, launch_chromium, start_server, whole_page_screenshot  # noqa: E402

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from benchmarks.live_threshold import component, wait_in_frame  # noqa: E402

DEMO_RUN = ROOT / "assets" / "demo_model"
pytestmark = pytest.mark.e2e

# Each payload, if it ever became markup, would add an element whose id starts with "xss-" and set window.top.__xss.
# None has a slash, so each is a valid folder or file name.
TYPE_PAYLOAD = "<img id=xss-type src=x onerror=window.top.__xss='type'>"
FILE_PAYLOAD = "<img id=xss-file src=x onerror=window.top.__xss='file'>[link](javascript:window.top.__xss='link')"
RUN_PAYLOAD = "<img id=xss-run src=x onerror=window.top.__xss='run'>"
RUN_ID_PAYLOAD = "20260101-000000-ncae-<i id=xss-runid>"
SET_PAYLOAD = "set-<svg id=xss-set onload=window.top.__xss='set'>"

PROBE = """() => {
    let flag = null;
    try { flag = window.top.__xss ?? window.__xss ?? null; } catch (error) { flag = window.__xss ?? null; }
    const injected = document.querySelectorAll('[id^="xss-"], [onerror], [onload], a[href^="javascript"]').length;
    return { flag: flag, injected: injected, url: location.href };
}"""


def assert_no_script_ran(page, where: str) -> None:
    """No payload became an element and none ran, in the page and in every frame inside it."""
    for frame in page.frames:
        found = frame.evaluate(PROBE)
        assert found["flag"] is None and found["injected"] == 0, (where, found)
    assert page.title() in ("Residual Lab", "Residual Lab inspection report") or "Residual Lab" in page.title(), \
        (where, page.title())


def wait_for_page(page, heading: str) -> None:
    expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=180_000)
    expect(page.locator('[data-testid="stSpinner"]')).to_have_count(0, timeout=180_000)
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=180_000)
    page.wait_for_load_state("networkidle")
    assert page.locator('[data-testid="stException"]').count() == 0, heading


def go_to(page, heading: str) -> None:
    """Another page by the sidebar, in the same browser session (an address typed in starts a new session)."""
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=heading).first.click()
    wait_for_page(page, heading)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A data set whose defect folder, file names and own folder carry payloads, a run named with one, and a
    server allowed to read them."""
    from core.data.synthetic import DemoSetSize, generate_demo_set
    from core.runs.store import rename_run

    base = tmp_path_factory.mktemp("hostile")
    data = generate_demo_set(base / "data" / SET_PAYLOAD, DemoSetSize(train_good=24, test_good=6,
                                                                      test_defect_per_type=2), size=64, seed=3)
    for folder in ("test", "ground_truth"):
        (data / folder / "crack").rename(data / folder / TYPE_PAYLOAD)
    (data / "test" / "good" / "000.png").rename(data / "test" / "good" / f"{FILE_PAYLOAD}.png")
    (data / "test" / "blowhole" / "000.png").rename(data / "test" / "blowhole" / f"{FILE_PAYLOAD}.png")
    (data / "ground_truth" / "blowhole" / "000_mask.png").rename(
        data / "ground_truth" / "blowhole" / f"{FILE_PAYLOAD}_mask.png")
    runs = base / "runs"
    run = runs / RUN_ID_PAYLOAD
    shutil.copytree(DEMO_RUN, run)
    rename_run(run, RUN_PAYLOAD)
    process, url = start_server({"RESIDUAL_LAB_RUNS": str(runs), "RESIDUAL_LAB_DATA_ROOTS": str(base / "data")})
    yield {"url": url, "data": data, "runs": runs, "run": run}
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module; each test gets a context of its own (no cookies, storage or cache shared)."""
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture()
def context(browser):
    fresh = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    yield fresh
    fresh.close()


def test_a_hostile_data_set_never_runs_script_on_any_page_or_in_the_report(hostile, context, tmp_path):
    from core.runs.corrections import corrections_file, load_corrections

    ARTIFACTS.mkdir(exist_ok=True)
    url = hostile["url"]
    page = context.new_page()
    page.goto(url, wait_until="networkidle")
    wait_for_page(page, "Data & Model")
    page.get_by_text("Folder on the server").click()
    folder = page.get_by_role("textbox", name="Folder path")
    folder.fill(str(hostile["data"]))
    folder.press("Enter")
    page.get_by_role("button", name="Use this folder").click()
    expect(page.get_by_text(f"In use: {hostile['data']}", exact=False)).to_be_visible(timeout=60_000)
    # the run named with markup is listed, by its name, as text
    page.locator('[data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=re.compile(re.escape(RUN_PAYLOAD))).click()
    wait_for_page(page, "Data & Model")
    expect(page.get_by_text(RUN_PAYLOAD).first).to_be_visible()
    assert_no_script_ran(page, "data & model")
    whole_page_screenshot(page, ARTIFACTS / "xss-data_model.png")

    # a review mark whose defect type is markup, made the way the Details dialog makes it
    marks = load_corrections(corrections_file(hostile["runs"], str(hostile["run"]), str(hostile["data"])))
    marks.mark(f"test/good/{FILE_PAYLOAD}.png", "defect", TYPE_PAYLOAD)

    for path, heading in (("residuals", "Residuals"), ("statistics", "Statistics"), ("threshold", "Threshold"),
                          ("compare", "Compare"), ("review", "Review")):
        go_to(page, heading)
        if path == "statistics":
            page.get_by_text("defect type", exact=True).click()   # the legend names every defect type
            wait_for_page(page, heading)
        if path == "threshold":
            frame = component(page)
            shown = frame.evaluate("() => [...document.querySelectorAll('#per-type tr[data-type]')]"
                                   ".map(row => [row.getAttribute('data-type'), row.cells[0].textContent])")
            assert [TYPE_PAYLOAD, TYPE_PAYLOAD] in shown   # the name is there, as text
        assert_no_script_ran(page, path)
        whole_page_screenshot(page, ARTIFACTS / f"xss-{path}.png")

    # Inspect: files named with markup, and a zip holding a non-image named with markup
    go_to(page, "Inspect")
    picture = (hostile["data"] / "test" / "good" / "001.png").read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(f"{FILE_PAYLOAD}.txt", "not a picture")
        bundle.writestr(f"{FILE_PAYLOAD}.png", picture)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([
        {"name": f"{FILE_PAYLOAD}.png", "mimeType": "image/png", "buffer": picture},
        {"name": "parts.zip", "mimeType": "application/zip", "buffer": archive.getvalue()}])
    expect(page.get_by_text("Why INVALID")).to_be_visible(timeout=120_000)
    wait_for_page(page, "Inspect")
    assert_no_script_ran(page, "inspect")
    whole_page_screenshot(page, ARTIFACTS / "xss-inspect.png")

    # the report: its preview inside the page, and the downloaded file on its own
    go_to(page, "Report")
    page.get_by_role("button", name="Build report").click()
    download_button = page.get_by_role("button", name="Download report (HTML)")
    expect(download_button).to_be_visible(timeout=180_000)
    # the preview frame has drawn its inline charts (its scripts ran) before it is searched for payloads
    expect(page.frame_locator("iframe[srcdoc]").locator(".chart .main-svg").first).to_be_visible(timeout=30_000)
    assert_no_script_ran(page, "report preview")
    with page.expect_download() as download:
        download_button.click()
    report = tmp_path / "report.html"
    download.value.save_as(report)
    assert TYPE_PAYLOAD not in report.read_text() and "&lt;img id=xss-type" in report.read_text()
    viewer = context.new_page()
    violations = []
    viewer.on("console", lambda message: violations.append(message.text)
              if "Content Security Policy" in message.text else None)
    viewer.goto(report.as_uri(), wait_until="load")
    expect(viewer.locator(".chart .main-svg").first).to_be_visible(timeout=30_000)
    assert_no_script_ran(viewer, "downloaded report")
    assert not violations, violations   # the report's own scripts all run under its policy
    viewer.screenshot(path=str(ARTIFACTS / "xss-report.png"), full_page=True)


def test_the_live_component_refuses_inline_script_by_policy(hostile, context):
    """Defence in depth: even markup that reached the component's page could not run, by its CSP."""
    page = context.new_page()
    page.goto(f"{hostile['url']}/threshold", wait_until="networkidle")
    frame = component(page)
    policy = frame.evaluate(
        "() => document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]').content")
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    # resolves once the image's error event has been dispatched: its inline handler has had its chance by then
    frame.evaluate("""() => new Promise(resolve => { const holder = document.createElement('div');
        holder.innerHTML = "<img id=xss-probe src=x onerror=\\"window.__xss='policy'\\">";
        holder.querySelector('img').addEventListener('error', () => resolve(true));
        document.body.appendChild(holder); })""")
    assert frame.evaluate("() => window.__xss ?? null") is None


# -- what you see is what you save, on the demo -----------------------------------------------------------

@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    process, url = start_server({"RESIDUAL_LAB_RUNS": str(tmp_path_factory.mktemp("runs"))})
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture()
def page(demo_server, context):
    ARTIFACTS.mkdir(exist_ok=True)
    return context.new_page()


@pytest.fixture(scope="module")
def demo_table():
    from core.data.datasets import open_dataset
    from core.runs.bundles import load_bundle
    from core.evaluation.scoring import score_samples

    with open_dataset("demo") as dataset:
        return score_samples(load_bundle(DEMO_RUN), dataset, dataset.test).table


def type_threshold(page, value: float) -> None:
    box = page.get_by_role("spinbutton", name="Exact value")
    box.fill(str(value))
    box.press("Enter")
    expect(page.get_by_text(re.compile(rf"^Released at {value:.6g}"))).to_be_visible(timeout=30_000)


def cards(frame) -> dict:
    return frame.evaluate("() => Object.fromEntries([...document.querySelectorAll('.card .value')]"
                          ".map(node => [node.dataset.metric, node.textContent]))")


def downloaded_threshold_file(page, tmp_path) -> dict:
    with page.expect_download() as download:
        page.get_by_role("button", name="Download threshold file").click()
    path = tmp_path / "threshold.json"
    download.value.save_as(path)
    return json.loads(path.read_text())


def as_shown(value) -> str:
    from dashboard.words import percent

    return percent(value)


def test_a_typed_threshold_outside_the_scores_is_the_one_threshold_everywhere(page, demo_server, demo_table,
                                                                                tmp_path):
    from core.evaluation.outcomes import outcomes

    page.goto(f"{demo_server}/threshold", wait_until="networkidle")
    frame = component(page)
    type_threshold(page, 5)
    wait_in_frame(frame, "state.threshold === 5")
    assert float(frame.locator("#threshold-value").get_attribute("data-value")) == 5
    assert float(frame.locator("#threshold").get_attribute("max")) >= 5      # the slider's range reaches it
    step = float(frame.locator("#threshold").get_attribute("step"))
    assert float(frame.locator("#threshold").input_value()) == pytest.approx(5, abs=step)   # its handle is there
    expected = outcomes(demo_table["map_max"], demo_table["label"], 5)
    shown = cards(frame)
    assert shown["recall"] == as_shown(expected.recall) == "0.0 %"
    assert frame.locator('[data-metric="defect_ng"]').inner_text() == "0"
    saved = downloaded_threshold_file(page, tmp_path)
    assert saved["threshold"] == 5 and saved["metrics"]["recall"] == expected.recall
    # and below every score: everything rejected, on the screen and in the file
    type_threshold(page, -1)
    wait_in_frame(frame, "state.threshold === -1")
    assert float(frame.locator("#threshold").get_attribute("min")) <= -1
    assert cards(frame)["false_reject_rate"] == "100.0 %"
    assert downloaded_threshold_file(page, tmp_path)["metrics"]["false_reject_rate"] == 1.0


def test_a_band_above_a_typed_threshold_moves_and_the_page_keeps_working(page, demo_server, demo_table, tmp_path):
    page.goto(f"{demo_server}/threshold", wait_until="networkidle")
    frame = component(page)
    frame.locator("#band-toggle").check()
    expect(page.get_by_text(re.compile(r"review from"))).to_be_visible(timeout=30_000)
    band_start = float(frame.locator("#review-value").get_attribute("data-value"))
    below = round(band_start * 0.8, 6)
    type_threshold(page, below)
    expect(page.get_by_text(re.compile(r"above the new threshold; it now starts at"))).to_be_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    for name in ("Save threshold to the run", "Download threshold file", "Export inspector"):
        expect(page.get_by_role("button", name=name)).to_be_visible()
    saved = downloaded_threshold_file(page, tmp_path)
    band = saved["review_band"]
    assert band["reject_from"] == below and band["review_from"] < below
    assert float(frame.locator("#review-value").get_attribute("data-value")) == pytest.approx(band["review_from"])


@pytest.mark.parametrize("where", ["below", "inside", "above"])
def test_the_downloaded_file_carries_exactly_the_numbers_and_preset_on_the_screen(page, demo_server, demo_table,
                                                                                   tmp_path, where):
    """With the review band on, band set below, inside and above the threshold: cards, file and core agree."""
    from core.evaluation.outcomes import outcomes

    page.goto(f"{demo_server}/threshold", wait_until="networkidle")
    frame = component(page)
    # the first visit is at the run's default (tests/app/test_page_consistency.py clicks the preset itself)
    frame.locator("#band-toggle").check()
    threshold = float(frame.locator("#threshold-value").get_attribute("data-value"))
    scores = demo_table["map_max"]
    wanted = {"below": float(scores.min()) - 0.01, "inside": threshold * 0.8, "above": threshold * 1.5}[where]
    frame.evaluate(f"""() => {{ const input = document.getElementById('review-from');
        input.value = {wanted}; input.dispatchEvent(new Event('input')); input.dispatchEvent(new Event('change')); }}""")
    expected_band = min(max(wanted, float(frame.locator("#review-from").get_attribute("min"))), threshold)
    review_from = float(frame.locator("#review-value").get_attribute("data-value"))
    assert review_from == pytest.approx(expected_band, rel=1e-3, abs=1e-3)
    expect(page.get_by_text(re.compile(rf"review from {review_from:.6g}"))).to_be_visible(timeout=30_000)
    # the server has the release: its run ends, and the download button it drew carries this decision
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=60_000)
    page.wait_for_load_state("networkidle")
    saved = downloaded_threshold_file(page, tmp_path)
    expected = outcomes(scores, demo_table["label"], threshold, review_from)
    shown = cards(frame)
    metrics = saved["metrics"]
    assert saved["preset"] == "Run default" and saved["threshold"] == threshold, (saved, threshold, review_from)
    assert saved["review_band"]["review_from"] == review_from
    for card, key in (("precision", "precision"), ("recall", "recall"), ("accuracy", "accuracy"),
                      ("false_reject_rate", "false_reject_rate"), ("escape_rate", "escape_rate"),
                      ("review_rate", "review_rate")):
        assert shown[card] == as_shown(metrics[key]) == as_shown(getattr(expected, key)), card
    assert "review left out" in frame.locator('[data-card="accuracy"]').inner_text()
    assert "parts sent to review are left out" in metrics["accuracy_of"]
    # the server's caption reads the same rates as the cards, to the decimal
    caption = page.get_by_text(re.compile(r"^Released at")).inner_text()
    assert f"escape rate {shown['escape_rate']}" in caption and f"accuracy {shown['accuracy']}" in caption


def test_dragging_the_line_updates_every_number_while_dragging(page, demo_server):
    page.goto(f"{demo_server}/threshold", wait_until="networkidle")
    frame = component(page)
    wait_in_frame(frame, "window.Plotly && document.querySelector('#histogram .shapelayer path')")
    frame.locator("#histogram").scroll_into_view_if_needed()
    before = frame.evaluate("() => [state.threshold, document.querySelector('[data-metric=\"good_ng\"]').textContent]")
    x, y = frame.evaluate("""() => { const gd = document.getElementById('histogram'), size = gd._fullLayout._size;
        return [size.l + gd._fullLayout.xaxis.l2p(state.threshold), size.t + size.h / 2]; }""")
    box = frame.locator("#histogram").bounding_box()
    frame.evaluate("window.liveSent = 0")
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.mouse.down()
    page.mouse.move(box["x"] + x - 150, box["y"] + y, steps=10)
    # still held down: the threshold, its slider and the numbers have followed; the server has heard nothing yet
    during = frame.evaluate("() => [state.threshold, document.querySelector('[data-metric=\"good_ng\"]').textContent]")
    assert during[0] < before[0] and during[1] != before[1]
    assert float(frame.locator("#threshold").input_value()) == pytest.approx(during[0], rel=1e-2)
    assert frame.evaluate("window.liveSent") == 0
    page.mouse.up()
    expect(page.get_by_text(re.compile(rf"^Released at {during[0]:.6g}"))).to_be_visible(timeout=30_000)


def test_both_sliders_share_one_axis(page, demo_server):
    page.goto(f"{demo_server}/threshold", wait_until="networkidle")
    frame = component(page)
    frame.locator("#band-toggle").check()
    threshold, review = frame.locator("#threshold"), frame.locator("#review-from")
    assert threshold.get_attribute("min") == review.get_attribute("min")
    assert threshold.get_attribute("max") == review.get_attribute("max")
    # the band's handle is left of the threshold's: same scale, lower value
    low, high = float(threshold.get_attribute("min")), float(threshold.get_attribute("max"))
    position = lambda slider: (float(slider.input_value()) - low) / (high - low)  # noqa: E731
    assert position(review) < position(threshold)
    # dragged past the threshold (to the end of the track, then further), the band's handle stops at it
    review.focus()
    for key in ("End", "ArrowRight", "ArrowRight"):
        page.keyboard.press(key)
    assert float(review.input_value()) == pytest.approx(float(threshold.input_value()))


def test_the_decision_actions_sit_above_the_pictures_and_a_reload_keeps_the_decision(page, demo_server):
    page.goto(f"{demo_server}/threshold", wait_until="networkidle")
    component(page)
    type_threshold(page, 0.13)
    save = page.get_by_role("button", name="Save threshold to the run")
    heading = page.get_by_role("heading", name=re.compile("Misclassified at this threshold"))
    assert save.bounding_box()["y"] < heading.bounding_box()["y"]
    assert save.is_disabled()   # the demo model is read-only: said before any click
    expect(page.get_by_text("The demo model is read-only: download the file instead.")).to_be_visible()
    page.reload(wait_until="networkidle")
    frame = component(page)
    expect(page.get_by_text(re.compile(r"^Released at 0\.13\b"))).to_be_visible(timeout=60_000)
    assert float(frame.locator("#threshold-value").get_attribute("data-value")) == 0.13
    whole_page_screenshot(page, ARTIFACTS / "threshold-decision.png")


def _maps_tensorflow(pid: int) -> bool:
    with open(f"/proc/{pid}/maps", encoding="utf-8") as maps:
        # the Python package's own extension: mapped by `import tensorflow`, not by the C++ library loaded before
        # the server listens
        return "_pywrap_tensorflow_internal" in maps.read()


def test_the_server_loads_the_engine_before_anyone_visits(tmp_path):
    """``make run``'s server (dashboard/server.py) loads the engine when no visitor has come within its first
    seconds, so a later visitor does not wait for it: with no page requested at all, TensorFlow is loaded in the
    server process. (A plain ``streamlit run dashboard/app.py`` imports it only when a page first runs; a visitor
    who comes at once gets the title first, the next test.)"""
    process, _ = start_server({"RESIDUAL_LAB_RUNS": str(tmp_path / "runs")})
    try:
        deadline = time.monotonic() + 120
        while not _maps_tensorflow(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _maps_tensorflow(process.pid)
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_first_visit_shows_the_title_and_what_is_loading_at_once(context, tmp_path):
    process, url = start_server({"RESIDUAL_LAB_RUNS": str(tmp_path / "runs")})
    try:
        page = context.new_page()
        page.goto(url)
        # before TensorFlow is imported: the title, the navigation and what is loading
        expect(page.get_by_text("Starting the detection engine")).to_be_visible(timeout=15_000)
        expect(page.get_by_role("heading", name="Residual Lab").first).to_be_visible()
        expect(page.locator('[data-testid="stSidebarNav"]')).to_be_visible()
        wait_for_page(page, "Data & Model")
        expect(page.get_by_text("Starting the detection engine")).to_have_count(0)
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_choosing_another_detector_takes_the_old_ones_controls_away_before_it_is_fitted(page, demo_server):
    """Choosing PaDiM after the memory bank: the memory bank's backbone and bank-size controls go at once, not
    seconds later when PaDiM has been fitted (they stayed on screen for the whole fit, and could be used). No other
    test of this module fits a memory bank or PaDiM on this server, so PaDiM is fitted after the click."""
    page.goto(demo_server)
    wait_for_page(page, "Data & Model")
    detectors = page.get_by_role("radiogroup", name="Detector").first
    detectors.get_by_text(re.compile(r"^Memory bank")).click()
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Detector")
    expect(metric.filter(has_text="Memory bank")).to_be_visible(timeout=180_000)
    backbone = page.locator('[data-testid="stSelectbox"]').filter(has_text="Backbone")
    expect(backbone).to_have_count(1)
    detectors.get_by_text("PaDiM", exact=True).click()
    expect(backbone).to_have_count(0, timeout=30_000)
    # gone while PaDiM is still being fitted: its figures are not there yet
    expect(metric.filter(has_text="PaDiM")).to_have_count(0)
    expect(metric.filter(has_text="PaDiM")).to_be_visible(timeout=180_000)


def test_the_component_and_the_server_write_every_share_alike(page, demo_server):
    """A rate read 16.3 % on a card and 16.2 % in the caption: halves were rounded up by JavaScript and to even
    by Python. Every share k/n for n up to 400 images now reads the same in both."""
    from dashboard.words import percent

    page.goto(f"{demo_server}/threshold", wait_until="networkidle")
    frame = component(page)
    shares = [k / n for n in range(1, 401) for k in range(n + 1)] + [float("nan")]
    in_browser = frame.evaluate("(values) => values.map((value) => percent(value === null ? NaN : value))",
                                [None if value != value else value for value in shares])
    differing = [(value, shown, percent(value)) for value, shown in zip(shares, in_browser) if shown != percent(value)]
    assert not differing, differing[:5]
    assert percent(13 / 80) == "16.3 %"


def scatter_point(page, index: int = 0):
    """The page position of the index-th marker of the Statistics scatter's first trace."""
    marker = page.locator('[data-testid="stPlotlyChart"] .scatterlayer .trace').first.locator(".point").nth(index)
    # Located and measured in one step: a redraw between the two would leave a detached marker.
    return tuple(marker.evaluate("""point => {
        const box = point.getBoundingClientRect();
        return [box.x + box.width / 2, box.y + box.height / 2];
    }"""))


def test_statistics_points_open_again_and_a_box_selection_shows_scores_and_verdicts(page, demo_server):
    page.goto(f"{demo_server}/statistics", wait_until="networkidle")
    wait_for_page(page, "Statistics")
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.scroll_into_view_if_needed()
    x, y = scatter_point(page, 3)
    for attempt in ("first", "again"):
        page.mouse.click(x, y)
        dialog = page.get_by_role("dialog")
        expect(dialog).to_be_visible(timeout=60_000)
        expect(dialog.get_by_text(re.compile(r"verdict:"))).to_be_visible()
        page.keyboard.press("Escape")
        expect(dialog).to_have_count(0, timeout=30_000)
        wait_for_page(page, "Statistics")
        x, y = scatter_point(page, 3)   # the chart was drawn anew: the same point, clicked again, opens again
    # a box selection over the whole plot: thumbnails that name score and verdict
    chart.hover()   # the mode bar shows on hover
    page.locator('[data-testid="stPlotlyChart"] .modebar-btn[data-val="select"]').first.click()
    drags = chart.locator(".nsewdrag")
    expect(drags.first).to_be_attached()
    # One read of every drag layer's box, in the page: the chart may be redrawn between a count and a
    # later per-element query. The largest is the scatter, not its marginal plots.
    area = max(drags.evaluate_all("""layers => layers.map((layer) => {
                   const box = layer.getBoundingClientRect();
                   return {x: box.x, y: box.y, width: box.width, height: box.height};
               })"""), key=lambda box: box["width"] * box["height"])
    page.mouse.move(area["x"] + 5, area["y"] + 5)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] - 5, area["y"] + area["height"] - 5, steps=10)
    page.mouse.up()
    expect(page.get_by_text(re.compile(r"images selected"))).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(r"^(OK|NG|REVIEW) · map_max \d")).first).to_be_visible()
    page.get_by_role("button", name="Clear selection").click()
    wait_for_page(page, "Statistics")
    expect(page.get_by_text(re.compile(r"images selected"))).to_have_count(0)
    x, y = scatter_point(page, 3)
    page.mouse.click(x, y)   # after a selection, a click on one point opens it
    expect(page.get_by_role("dialog")).to_be_visible(timeout=60_000)
