"""Dashboard speed, printed as one JSON object.

    python -m benchmarks.dashboard_speed

- slider moves are measured in the browser by ``benchmarks.live_threshold`` (the Threshold page's
  slider no longer reaches the server per move);
- cold start: from launching ``streamlit run`` to the Threshold page showing its metrics in Chromium,
  once with an empty demo cache (demo set generated and scored) and once with it warm;
- Compare's first visit: on a fresh server (warm demo cache), from opening the Compare page to its ROC
  chart of every detector.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _dashboard(cache_dir: str):
    """A fresh ``streamlit run`` of the dashboard on a free port with its own demo cache."""
    from benchmarks.live_threshold import streamlit_server

    return streamlit_server(ROOT / "dashboard" / "app.py", {"RESIDUAL_LAB_CACHE": cache_dir})


@contextlib.contextmanager
def _chromium_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def cold_start(cache_dir: str) -> float:
    """Seconds from launching the server to the Threshold page showing its metrics (in its live component)."""
    from benchmarks.live_threshold import component

    started = time.perf_counter()
    with _dashboard(cache_dir) as url, _chromium_page() as page:
        page.goto(f"{url}/threshold")
        component(page)
        return round(time.perf_counter() - started, 1)


def compare_first_visit(cache_dir: str) -> float:
    """Seconds from opening /compare on a fresh server to the ROC chart of every detector."""
    with _dashboard(cache_dir) as url, _chromium_page() as page:
        started = time.perf_counter()
        page.goto(f"{url}/compare")
        page.get_by_text("ROC by detector").first.wait_for(timeout=300_000)
        return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    result = {}
    if Path("/usr/bin/chromium").exists():
        with tempfile.TemporaryDirectory() as cache:
            result["cold_start_seconds_empty_demo_cache"] = cold_start(cache)
            result["cold_start_seconds_warm_demo_cache"] = cold_start(cache)
            result["compare_first_visit_seconds"] = compare_first_visit(cache)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
