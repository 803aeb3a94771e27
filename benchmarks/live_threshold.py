"""How fast the Threshold page's live component follows the slider, measured in Chromium.

For each case the page is opened, the time until its numbers show is taken (first render), then the
slider is moved by keyboard ``moves`` times; the component records, for every move, the time from the
input event to its numbers written on the page, and to the next painted frame. No server round trip
is made per move (the browser test checks that too).

Cases: the demo on the real Threshold page (140 images) and 100,000 synthetic scores on a page with
the component alone (``benchmarks/live_threshold_app.py``). Written to
``benchmarks/recorded/live_threshold.json``.

    python -m benchmarks.live_threshold
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "benchmarks" / "recorded" / "live_threshold.json"
CHROMIUM = "/usr/bin/chromium"
COMPONENT_FRAME = 'iframe[title*="live_threshold"]'


@contextlib.contextmanager
def streamlit_server(script: Path, environment: dict | None = None):
    """``streamlit run script`` on a free port; yields its address once healthy."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=os.environ | (environment or {}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_in_frame(frame, expression: str, timeout: float = 30_000) -> None:
    """Wait until ``expression`` is true in the component's frame. Playwright's ``wait_for_function`` polls by
    evaluating a string inside the page, which the component's Content-Security-Policy refuses (no eval); each
    ``evaluate`` here comes from the browser's debugging protocol instead, which the policy does not govern."""
    deadline = time.monotonic() + timeout / 1000
    while not frame.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression} was not true within {timeout / 1000:.0f} s")
        frame.page.wait_for_timeout(25)


def component(page):
    """The live component's frame (a Playwright Frame), once its numbers are on the page."""
    page.frame_locator(COMPONENT_FRAME).last.locator('[data-metric="recall"]').wait_for(timeout=180_000)
    # right after a whole-page rerun Streamlit can still hold the previous run's frame, collapsed to height 0,
    # beside the new one: the live one is the last that is shown
    frame = next(frame for frame in reversed(page.frames) if "live_threshold" in frame.url and _shown(frame))
    wait_in_frame(frame, "document.querySelector('[data-metric=recall]').textContent !== '—'", timeout=60_000)
    return frame


def _shown(frame) -> bool:
    try:
        return not frame.is_detached() and frame.frame_element().get_attribute("height") != "0"
    except Exception:   # noqa: BLE001  (detached between the two calls)
        return False


def move_and_measure(page, frame, moves: int = 40) -> dict:
    """Move the slider ``moves`` times by keyboard; the component's own latencies for those moves."""
    frame.evaluate("window.liveLatencies = []; window.liveFrameLatencies = []")
    frame.locator("#threshold").focus()
    for index in range(moves):
        page.keyboard.press("ArrowRight" if index % 8 < 6 else "ArrowLeft")
    wait_in_frame(frame, f"window.liveFrameLatencies.length >= {moves}")
    numbers, frames = frame.evaluate("window.liveLatencies"), frame.evaluate("window.liveFrameLatencies")
    return {"moves": moves, "numbers_median_ms": round(statistics.median(numbers), 2),
            "numbers_max_ms": round(max(numbers), 2), "painted_median_ms": round(statistics.median(frames), 2),
            "painted_max_ms": round(max(frames), 2)}


def measure(url: str, path: str = "") -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
        started = time.perf_counter()
        page.goto(f"{url}/{path}")
        frame = component(page)
        first_render = time.perf_counter() - started
        figures = move_and_measure(page, frame)
        browser.close()
    return {"first_render_seconds": round(first_render, 2)} | figures


def main() -> None:
    report = {}
    with streamlit_server(ROOT / "benchmarks" / "live_threshold_app.py", {"LIVE_SCORES": "100000"}) as url:
        measure(url)   # the first visit builds and caches the payload; the figures are for a page opened after
        report["scores_100000"] = measure(url)
    with streamlit_server(ROOT / "dashboard" / "server.py") as url:
        measure(url, "threshold")
        report["demo_threshold_page"] = measure(url, "threshold")
    report["note"] = ("numbers: input event to every number written on the page; painted: to the next frame. "
                      "first render: page opened to the component's numbers shown (server already warm).")
    text = json.dumps(report, indent=2)
    RECORDED.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
