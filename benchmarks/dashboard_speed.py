"""Dashboard speed, printed as one JSON object.

    python -m benchmarks.dashboard_speed

- slider moves are measured in the browser by ``benchmarks.live_threshold`` (the Threshold page's
  slider no longer reaches the server per move);
- cold start: from launching ``streamlit run`` to the Threshold page showing its metrics in Chromium,
  once with an empty demo cache (demo set generated and scored) and once with it warm;
- Compare's first visit: on a fresh server (warm demo cache), from opening the Compare page to its first
  ROC chart and to the memory bank's curve in it: the first time on this machine (the memory bank on the
  model's encoder is built meanwhile), and after a restart (its figures are read from ``runs/cache/compare/``);
- first paint: on a fresh server, from opening the app to its title (before the engine has loaded);
- switching detector: on Data & Model, from choosing PaDiM after the memory bank to the memory bank's
  controls being gone, and to PaDiM's figures;
- export: on Threshold with the demo model, from "Export inspector" to its download button.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _dashboard(cache_dir: str):
    """A fresh ``streamlit run`` of the dashboard on a free port with its own demo cache and runs folder."""
    from benchmarks.live_threshold import streamlit_server

    # what `make run` serves: dashboard/server.py, or app.py in a release that has no server.py (compared before/after)
    served = ROOT / "dashboard" / ("server.py" if (ROOT / "dashboard" / "server.py").is_file() else "app.py")
    return streamlit_server(served, {"RESIDUAL_LAB_CACHE": cache_dir,
                                                            "RESIDUAL_LAB_RUNS": str(Path(cache_dir) / "runs")})


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


def compare_first_visit(cache_dir: str) -> dict:
    """Seconds from opening /compare on a fresh server to its first ROC chart (the model's and the supervised
    reference's curves, while the memory bank on the encoder is built), and to the curve of the memory bank."""
    with _dashboard(cache_dir) as url, _chromium_page() as page:
        started = time.perf_counter()
        page.goto(f"{url}/compare")
        page.get_by_text("ROC by detector").first.wait_for(timeout=300_000)
        first = time.perf_counter() - started
        page.get_by_text(re.compile(r"^Memory bank on NCAE encoder \(AUROC")).first.wait_for(timeout=300_000)
        return {"first_figures_seconds": round(first, 1),
                "every_detector_seconds": round(time.perf_counter() - started, 1)}


def first_paint(cache_dir: str) -> float:
    """Seconds from opening the app on a server that has served no page yet to its title showing (the engine,
    TensorFlow included, is still loading then)."""
    with _dashboard(cache_dir) as url, _chromium_page() as page:
        started = time.perf_counter()
        page.goto(url)
        page.get_by_role("heading", name="Residual Lab").first.wait_for(timeout=120_000)
        return round(time.perf_counter() - started, 2)


def _detector_metric(page, name: str):
    return page.locator('[data-testid="stMetric"]').filter(has_text="Detector").filter(has_text=name).first


def detector_switch(cache_dir: str) -> dict:
    """On Data & Model with the demo, the memory bank chosen and shown: seconds from choosing PaDiM to the memory
    bank's own controls (its backbone) being gone, and to PaDiM's figures showing."""
    with _dashboard(cache_dir) as url, _chromium_page() as page:
        page.goto(url)
        page.get_by_role("radiogroup", name="Detector").first.get_by_text(re.compile(r"^Memory bank")).click(timeout=120_000)
        _detector_metric(page, "Memory bank").wait_for(timeout=300_000)
        backbone = page.get_by_text("Backbone", exact=True)
        started = time.perf_counter()
        page.get_by_role("radiogroup", name="Detector").first.get_by_text("PaDiM", exact=True).click()
        backbone.first.wait_for(state="detached", timeout=300_000)
        gone = time.perf_counter() - started
        _detector_metric(page, "PaDiM").wait_for(timeout=300_000)
        return {"old_controls_gone_seconds": round(gone, 2),
                "padim_shown_seconds": round(time.perf_counter() - started, 1)}


def export_seconds(cache_dir: str) -> float:
    """On Threshold with the demo model: seconds from "Export inspector" to its download button."""
    with _dashboard(cache_dir) as url, _chromium_page() as page:
        page.goto(f"{url}/threshold")
        button = page.get_by_role("button", name="Export inspector")
        button.wait_for(timeout=300_000)
        page.wait_for_load_state("networkidle")
        started = time.perf_counter()
        button.click()
        page.get_by_role("button", name="Download inspector (.zip)").wait_for(timeout=300_000)
        return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    arguments = parser.parse_args()
    result = {}
    if Path("/usr/bin/chromium").exists():
        with tempfile.TemporaryDirectory() as cache:
            result["first_paint_seconds"] = first_paint(cache)
            result["cold_start_seconds_empty_demo_cache"] = cold_start(cache)
            result["cold_start_seconds_warm_demo_cache"] = cold_start(cache)
            result["compare_first_visit"] = compare_first_visit(cache)
            result["compare_first_visit_after_a_restart"] = compare_first_visit(cache)
            result["switch_memory_bank_to_padim"] = detector_switch(cache)
            result["export_inspector_seconds"] = export_seconds(cache)
    print(json.dumps(result, indent=2))
    if arguments.out:
        arguments.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
