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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    environment = os.environ | {"RESIDUAL_LAB_RUNS": str(tmp_path_factory.mktemp("runs"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("the Streamlit server did not become healthy within 90 s")
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        yield context.new_page()
        browser.close()


def _metric(page, label: str):
    card = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True)).first
    return card.locator('[data-testid="stMetricValue"]')


def test_threshold_slider_changes_the_metrics(page, server):
    page.goto(f"{server}/threshold", wait_until="networkidle")
    recall = _metric(page, "Recall")
    expect(recall).to_have_text(re.compile(r"%"), timeout=120_000)
    before = recall.inner_text()
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(40):
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        if recall.inner_text() != before:
            break
        page.wait_for_timeout(150)
    expect(recall).not_to_have_text(before, timeout=30_000)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / "threshold.png"), full_page=True)


def core_verdicts(paths) -> dict:
    """The core's verdicts for these files under the demo run's own default decision."""
    from core.bundles import load_bundle
    from core.pipeline import judged_rows, score_sources

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
    page.screenshot(path=str(ARTIFACTS / "inspect.png"), full_page=True)


def test_compare_page_shows_every_detector_and_their_roc_curves(page, server):
    page.goto(f"{server}/compare", wait_until="networkidle")
    expect(page.get_by_text("ROC by detector")).to_be_visible(timeout=180_000)
    for name in ("NCAE residual (map_max)", "Memory bank on NCAE encoder", "Supervised: gradient boosting"):
        expect(page.get_by_text(re.compile(re.escape(name) + r" \(AUROC 0\.\d{3}\)")).first).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
