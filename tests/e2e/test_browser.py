"""End to end in a real Chromium: the slider on the Threshold page and drag-and-drop on Inspect.

Uses Debian's Chromium at /usr/bin/chromium (Playwright never downloads a browser here).
Screenshots land in test-artifacts/ (git-ignored).
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
SAMPLES = ROOT / "assets" / "samples"

pytestmark = pytest.mark.e2e

if not CHROMIUM.exists():
    message = "Chromium is not installed: run `apt-get install -y chromium` (Debian) to run the browser tests."
    if os.environ.get("CI"):
        raise RuntimeError(message)  # in CI the browser tests must run, never skip
    pytest.skip(message, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


def whole_page_screenshot(page, path: Path) -> None:
    """Screenshot the whole page, not just the first screen.

    Streamlit scrolls inside its own main container, so Playwright's ``full_page`` stops at the
    window's height; the window is stretched to the content's height for the shot, then restored.
    """
    viewport = page.viewport_size
    measure = """() => Math.max(...[...document.querySelectorAll('[data-testid="stMain"], '
        + '[data-testid="stAppViewContainer"], section.main')].map(element => element.scrollHeight), 0)"""
    # the page may still be adding elements below the fold: wait until its height stops changing
    height, previous = page.evaluate(measure), -1
    for _ in range(20):
        if height == previous:
            break
        page.wait_for_timeout(250)
        height, previous = page.evaluate(measure), height
    page.set_viewport_size({"width": viewport["width"], "height": min(max(height, viewport["height"]), 12_000)})
    page.wait_for_timeout(300)  # plotly re-lays its charts out for the new window size
    page.screenshot(path=str(path))
    page.set_viewport_size(viewport)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(environment: dict):
    """``streamlit run`` of the dashboard on a free port with ``environment`` added; (process, address) once healthy."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "server.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=os.environ | environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail("the Streamlit server did not become healthy within 90 s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process, url = start_server({"RESIDUAL_LAB_RUNS": str(tmp_path_factory.mktemp("runs"))})
    yield url
    process.terminate()
    process.wait(timeout=20)


def launch_chromium(playwright):
    """Debian's Chromium, headless, with nothing of its own reaching the network."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"])


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        yield context.new_page()
        browser.close()


def _metric(page, label: str):
    card = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True)).first
    return card.locator('[data-testid="stMetricValue"]')


def test_the_slider_updates_every_number_in_the_browser_without_the_server(page, server):
    """Keyboard moves change the numbers at once and tell the server nothing; after a pause the release is
    told once, and the server's caption (and thumbnails) follow it."""
    from benchmarks.live_threshold import component, move_and_measure

    page.goto(f"{server}/threshold", wait_until="networkidle")
    frame = component(page)
    recall = frame.locator('[data-metric="recall"]')
    released = page.get_by_text(re.compile(r"^Released at"))
    before, released_before = recall.inner_text(), released.inner_text()
    # a busy machine can pause longer than 400 ms between two key presses, which is a release: a longer pause
    frame.evaluate("() => { state.releasePause = 3000; window.liveSent = 0; }")
    figures = move_and_measure(page, frame, moves=24)
    assert recall.inner_text() != before
    # every move was measured and none reached the server: its caption still names the old threshold
    assert frame.evaluate("window.liveSent") == 0 and released.inner_text() == released_before
    assert figures["numbers_median_ms"] <= 50, figures
    threshold = float(frame.locator("#threshold-value").get_attribute("data-value"))
    expect(page.get_by_text(re.compile(rf"^Released at {threshold:.6g}:"))).to_be_visible(timeout=30_000)
    assert frame.evaluate("window.liveSent") == 1
    whole_page_screenshot(page, ARTIFACTS / "threshold.png")


def test_dragging_the_threshold_line_on_the_histogram_moves_the_threshold(page, server):
    from benchmarks.live_threshold import component, wait_in_frame

    page.goto(f"{server}/threshold", wait_until="networkidle")
    frame = component(page)
    wait_in_frame(frame, "window.Plotly && document.querySelector('#histogram .shapelayer path')")
    before = float(frame.locator("#threshold-value").get_attribute("data-value"))
    frame.locator("#histogram").scroll_into_view_if_needed()
    # where the orange line is drawn, in the histogram's own pixels
    x, y = frame.evaluate("""() => { const gd = document.getElementById('histogram'), size = gd._fullLayout._size;
        return [size.l + gd._fullLayout.xaxis.l2p(state.threshold), size.t + size.h / 2]; }""")
    box = frame.locator("#histogram").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.mouse.down()
    page.mouse.move(box["x"] + x + 80, box["y"] + y, steps=8)
    page.mouse.up()
    wait_in_frame(frame, f"state.threshold > {before}")
    after = float(frame.locator("#threshold-value").get_attribute("data-value"))
    assert after > before
    step = float(frame.locator("#threshold").get_attribute("step"))
    assert float(frame.locator("#threshold").input_value()) == pytest.approx(after, abs=step)   # the slider followed
    expect(page.get_by_text(re.compile(rf"^Released at {after:.6g}:"))).to_be_visible(timeout=30_000)


def test_the_per_type_recall_and_the_three_way_table_are_the_cores(page, server):
    from benchmarks.live_threshold import component
    from core.data.datasets import open_dataset
    from core.evaluation.outcomes import outcomes, per_defect_type
    from core.runs.bundles import load_bundle
    from core.evaluation.scoring import score_samples

    page.goto(f"{server}/threshold", wait_until="networkidle")
    frame = component(page)
    frame.locator("#band-toggle").check()
    frame.locator("#threshold").focus()
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    threshold = float(frame.locator("#threshold-value").get_attribute("data-value"))
    review_from = float(frame.locator("#review-value").get_attribute("data-value"))
    with open_dataset("demo") as dataset:
        table = score_samples(load_bundle(ROOT / "assets" / "demo_model"), dataset, dataset.test).table
    expected = per_defect_type(table["map_max"], table["label"], table["defect_type"], threshold, review_from)
    for row in expected.itertuples():
        shown = frame.locator(f'tr[data-type="{row._1}"] td').all_inner_texts()
        assert shown[:5] == [row._1, str(row.images), str(row._3), str(row._4), str(row._5)], (shown, row)
    three_way = outcomes(table["map_max"], table["label"], threshold, review_from)
    cells = {name: int(frame.locator(f'[data-metric="{name}"]').inner_text()) for name in
             ("good_ok", "good_review", "good_ng", "defect_ok", "defect_review", "defect_ng")}
    assert (cells["good_ok"], cells["good_review"], cells["good_ng"]) == three_way.good
    assert (cells["defect_ok"], cells["defect_review"], cells["defect_ng"]) == three_way.defect
    assert three_way.good[1] + three_way.defect[1] > 0   # the band starts inside the range, not empty


@pytest.fixture(scope="module")
def large_table_server():
    from benchmarks.live_threshold import streamlit_server

    with streamlit_server(ROOT / "benchmarks" / "live_threshold_app.py", {"LIVE_SCORES": "100000"}) as url:
        yield url


def test_the_slider_follows_at_once_on_100000_scores(page, large_table_server):
    from benchmarks.live_threshold import component, move_and_measure

    page.goto(large_table_server)
    frame = component(page)
    figures = move_and_measure(page, frame, moves=30)
    assert figures["numbers_median_ms"] <= 50, figures
    assert frame.locator('[data-metric="defect_ng"]').inner_text().isdigit()


def core_verdicts(paths) -> dict:
    """The core's verdicts for these files under the demo run's own default decision."""
    from core.runs.bundles import load_bundle
    from core.evaluation.scoring import judged_rows, score_sources

    detector = load_bundle(ROOT / "assets" / "demo_model")
    rows = judged_rows(score_sources(detector, list(paths), [path.name for path in paths]),
                       detector.default_decision_)
    return dict(zip(rows["path"], rows["verdict"]))


def test_dropped_images_get_the_cores_verdicts(page, server, tmp_path):
    page.goto(f"{server}/inspect", wait_until="networkidle")
    uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    expect(uploader).to_be_attached(timeout=120_000)
    files = sorted(SAMPLES.glob("good_*.png"))[:1] + sorted(SAMPLES.glob("blowhole_*.png"))[:1]
    expected = core_verdicts(files)
    assert sorted(expected.values()) == ["NG", "OK"]   # one passes, one is rejected: both verdicts are checked
    black = tmp_path / "black.png"
    from PIL import Image
    import numpy as np

    Image.fromarray(np.zeros((128, 128), np.uint8)).save(black)
    uploader.set_input_files([str(path) for path in files] + [str(black)])
    for path in files:
        expect(page.get_by_text(f"{expected[path.name]} · {path.name}", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("INVALID · black.png", exact=True)).to_be_visible(timeout=30_000)
    for name in ("OK", "NG", "INVALID"):
        assert _metric(page, name).inner_text() == "1", name
    expect(page.locator('[data-testid="stImage"] img').nth(1)).to_be_visible(timeout=30_000)
    page.wait_for_load_state("networkidle")
    whole_page_screenshot(page, ARTIFACTS / "inspect.png")


def test_compare_page_shows_every_detector_and_their_roc_curves(page, server):
    page.goto(f"{server}/compare", wait_until="networkidle")
    expect(page.get_by_text("ROC by detector")).to_be_visible(timeout=180_000)
    # the model's curve and the supervised reference's come first; the memory bank's once it is built
    for name in ("NCAE residual (map_max)", "Supervised: gradient boosting", "Memory bank on NCAE encoder"):
        expect(page.get_by_text(re.compile(re.escape(name) + r" \(AUROC 0\.\d{3}\)")).first).to_be_visible(
            timeout=180_000)
    expect(page.get_by_text("being built")).to_have_count(0)
    page.wait_for_load_state("networkidle")
    whole_page_screenshot(page, ARTIFACTS / "compare.png")


def _luminance(colour: str) -> float:
    channels = [int(part) / 255 for part in re.findall(r"[\d.]+", colour)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(first: str, second: str) -> float:
    high, low = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_downloaded_report_reads_on_paper(page, server, tmp_path):
    page.goto(f"{server}/report", wait_until="networkidle")
    build = page.get_by_role("button", name="Build report")
    expect(build).to_be_visible(timeout=120_000)
    build.click()
    download_button = page.get_by_role("button", name="Download report (HTML)")
    expect(download_button).to_be_visible(timeout=120_000)
    with page.expect_download() as download:
        download_button.click()
    report = tmp_path / "report.html"
    download.value.save_as(report)
    viewer = page.context.new_page()
    viewer.goto(report.as_uri(), wait_until="load")
    expect(viewer.locator(".chart .main-svg").first).to_be_visible(timeout=30_000)
    background = viewer.evaluate("getComputedStyle(document.body).backgroundColor")
    # every text on the page background: titles, axes, ticks, legends, annotations (a matrix cell's
    # own text is drawn on the cell, in a colour Plotly picks against the cell)
    fills = viewer.evaluate("""() => Array.from(document.querySelectorAll('.chart svg text'))
        .filter(node => node.textContent.trim() && !node.closest('.heatmaplayer'))
        .map(node => getComputedStyle(node).fill)""")
    assert len(fills) > 20
    worst = min(_contrast(fill, background) for fill in fills)
    assert worst >= 4.5, (worst, sorted(set(fills)))
    text = viewer.inner_text("body")
    assert "Decision" in text and "map_max" in text and "held-out good training images" in text
    assert "good (no defect)" in text and "defects caught (recall)" in text
    assert "Defects caught (recall)" in text and " %" in text
    viewer.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    viewer.pdf(path=str(ARTIFACTS / "report.pdf"), format="A4")   # print stylesheet: A4, no chart cut
    viewer.close()


PAGES = ("", "residuals", "statistics", "threshold", "compare", "inspect", "report")
TITLES = {"": "Data & Model", "residuals": "Residuals", "statistics": "Statistics", "threshold": "Threshold",
          "compare": "Compare", "inspect": "Inspect", "report": "Report"}


def test_every_page_opens_without_an_error_at_common_screen_widths(page, server):
    for name in PAGES:
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.goto(f"{server}/{name}", wait_until="networkidle")
        expect(page.get_by_role("heading", name=TITLES[name]).first).to_be_visible(timeout=180_000)
        expect(page.locator('[data-testid="stSpinner"]')).to_have_count(0, timeout=180_000)
        # the script has finished (a progress box is not a spinner): the header's running indicator is gone
        expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=180_000)
        page.wait_for_load_state("networkidle")
        # a wider window lays the same page out again in the browser; the server runs nothing for it
        for width in (1280, 1920):
            page.set_viewport_size({"width": width, "height": 1000})
            assert page.locator('[data-testid="stException"]').count() == 0, (name, width)
            whole_page_screenshot(page, ARTIFACTS / f"page-{name or 'data_model'}-{width}.png")
    page.set_viewport_size({"width": 1500, "height": 1100})
