"""The memory bank's search: cells against the whole bank, on every labelled set, and its speed before and after.

    python -m benchmarks.memory_bank_search [--sets demo,brick,...] [--out FILE]

For each set (the three generated ones, the four ``gimp-data`` photographs, the ELPV monocrystalline
solar cells, downloaded at benchmark time) one memory bank is fitted at the app's defaults (seed 0)
and the same test images are scored with each search: the whole bank (what every earlier release
did), and the cell search probing 3, 4 and 6 cells. Image AUROC, pixel AUROC (where the set has
masks) and the share of patches whose distance is the exhaustive one are recorded per search, and
the largest change against the whole bank.

Speed, in the same run, on the demo's test images, ``score`` on a fitted bank: the release before
(scikit-learn's brute-force search and ``scipy.ndimage.zoom`` for the feature resampling) against
today's (cell search and the matrix resampling); and, if ``faiss-cpu`` happens to be installed, FAISS's
flat and IVF indexes on the same patches, for reference (the app does not use it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from core.quiet import import_tensorflow_quietly

RECORDED = Path(__file__).resolve().parent / "recorded" / "memory_bank_search.json"
PROBES = (3, 4, 6)


class _ScikitSearch:
    """The release before's search (scikit-learn brute force), with the cell search's interface."""

    def __init__(self, bank):
        from sklearn.neighbors import NearestNeighbors

        self.search = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(bank)

    def kneighbors(self, queries, n_neighbors=1):
        return self.search.kneighbors(queries, n_neighbors=n_neighbors)

    def exact_distances(self, queries):
        return self.search.kneighbors(queries, n_neighbors=1)[0][:, 0]


def _zoom_resampling(stack, height, width):
    from scipy import ndimage

    zoom = (1, height / stack.shape[1], width / stack.shape[2], 1)
    return ndimage.zoom(stack, zoom, order=1, mode="nearest", grid_mode=True).astype(np.float32)


def compare_searches(detector, test) -> dict:
    from core.detectors.common.bank_search import CellSearch
    from core.evaluation.evaluate import evaluate_detector

    features = detector.extractor_(test.images)
    queries = features.reshape(-1, features.shape[-1])
    fitted = detector.bank_search_
    exhaustive = CellSearch(detector.memory_bank_, probed_cells=None)
    exact = exhaustive.kneighbors(queries)[0][:, 0]
    rows = {}
    for name, search in [("whole bank", exhaustive)] + [(f"{probes} cells", CellSearch(detector.memory_bank_, probes))
                                                         for probes in PROBES]:
        detector.bank_search_ = search
        figures, _ = evaluate_detector(detector, test, detector.primary_score)
        found = search.kneighbors(queries)[0][:, 0]
        rows[name] = {"image_auroc": round(float(figures["image_auroc"]), 5),
                      "pixel_auroc": None if figures.get("pixel_auroc") is None else round(float(figures["pixel_auroc"]), 5),
                      "exact_share": round(float(np.mean(found <= exact + 1e-6)), 5),
                      "largest_overshoot": round(float(np.max(found - exact)), 5)}
    detector.bank_search_ = fitted
    for name, row in rows.items():
        row["image_auroc_change"] = round(row["image_auroc"] - rows["whole bank"]["image_auroc"], 5)
        if row["pixel_auroc"] is not None:
            row["pixel_auroc_change"] = round(row["pixel_auroc"] - rows["whole bank"]["pixel_auroc"], 5)
    return rows


def images_per_second(detector, images) -> float:
    detector.score(images[:8])   # the backbone's first call traces its graph
    started = time.perf_counter()
    detector.score(images)
    return round(len(images) / (time.perf_counter() - started), 1)


def speed(detector, images) -> dict:
    import core.detectors.common.patch_features as patch_features
    from core.detectors.common.bank_search import CellSearch

    today = CellSearch(detector.memory_bank_)   # the app's default probes
    resampling = patch_features._resize_stack
    detector.bank_search_ = _ScikitSearch(detector.memory_bank_)
    patch_features._resize_stack = _zoom_resampling
    try:
        before = images_per_second(detector, images)
    finally:
        patch_features._resize_stack = resampling
    detector.bank_search_ = CellSearch(detector.memory_bank_, probed_cells=None)
    exhaustive_today = images_per_second(detector, images)
    detector.bank_search_ = today
    after = images_per_second(detector, images)
    report = {"images": len(images), "before_images_per_second": before,
              "whole_bank_with_todays_resampling_images_per_second": exhaustive_today,
              "after_images_per_second": after, "speed_up": round(after / before, 2)}
    report["faiss"] = faiss_reference(detector, images)
    return report


def faiss_reference(detector, images) -> dict | str:
    try:
        import faiss
    except ImportError:
        return "faiss-cpu not installed: not measured"
    features = detector.extractor_(images)
    queries = np.ascontiguousarray(features.reshape(-1, features.shape[-1]), np.float32)
    bank = np.ascontiguousarray(detector.memory_bank_, np.float32)
    dim = bank.shape[1]
    indexes = {"flat": faiss.IndexFlatL2(dim)}
    for cells, probes in ((64, 4), (128, 8)):
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, cells)
        index.train(bank)
        index.nprobe = probes
        indexes[f"ivf {cells} cells, {probes} probed"] = index
    report = {}
    for name, index in indexes.items():
        index.add(bank)
        started = time.perf_counter()
        index.search(queries, 1)
        report[name] = {"search_only_images_per_second": round(len(images) / (time.perf_counter() - started), 1)}
    started = time.perf_counter()
    detector.bank_search_.kneighbors(queries)
    report["this project's cell search"] = {
        "search_only_images_per_second": round(len(images) / (time.perf_counter() - started), 1)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", help="comma-separated set names (default: all)")
    parser.add_argument("--out", type=Path, default=RECORDED)
    arguments = parser.parse_args()
    import_tensorflow_quietly()
    from benchmarks.feature_autoencoder_sweep import image_sets
    from core.data.datasets import open_dataset
    from core.detectors import new_detector
    from core.evaluation.evaluate import load_test_images

    result = {"command": "python -m benchmarks.memory_bank_search", "sets": {}}
    with tempfile.TemporaryDirectory() as scratch:
        sets = image_sets(Path(scratch))
        chosen = arguments.sets.split(",") if arguments.sets else list(sets)
        for name in chosen:
            detector = new_detector("memory_bank", seed=0)
            with open_dataset(sets[name]) as data:
                good = data.load(data.train_good, detector.input_size, detector.channels).images
                test = load_test_images(data, detector.input_size, detector.channels)
            detector.fit(good)
            result["sets"][name] = compare_searches(detector, test)
            if name == "casting":   # the demo set
                result["speed_on_the_demo"] = speed(detector, test.images)
            print(json.dumps({name: result["sets"][name], "speed": result.get("speed_on_the_demo")}), flush=True)
    changes = [(abs(row.get(f"{kind}_auroc_change") or 0.0), kind, name, search)
               for name, rows in result["sets"].items() for search, row in rows.items()
               for kind in ("image", "pixel") if search != "whole bank"]
    result["largest_change_by_search"] = {
        f"{probes} cells": max(((change, kind, name) for change, kind, name, search in changes
                                if search == f"{probes} cells"), default=None) for probes in PROBES}
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
