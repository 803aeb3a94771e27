"""Speed of the memory-bank detector on the demo set, printed as one JSON object.

    python -m benchmarks.memory_bank_speed

Builds the bank on the shipped demo model's encoder at the default coreset ratio, then scores the
demo test images with each exact nearest-neighbour search scikit-learn offers and with the cell search the
detector uses (:class:`~core.detectors.common.bank_search.CellSearch`): same bank, same run, and the largest
difference in image scores between them.
"""

from __future__ import annotations

import json
import time

import numpy as np

from core.quiet import import_tensorflow_quietly

SEARCHES = ("kd_tree", "ball_tree", "brute", "cells")


class _ScikitSearch:
    """A scikit-learn search with the interface the memory bank asks of its search."""

    def __init__(self, bank, algorithm):
        from sklearn.neighbors import NearestNeighbors

        self.search = NearestNeighbors(n_neighbors=1, algorithm=algorithm).fit(bank)

    def kneighbors(self, queries, n_neighbors=1):
        return self.search.kneighbors(queries, n_neighbors=n_neighbors)

    def exact_nearest(self, queries):
        distances, indices = self.search.kneighbors(queries, n_neighbors=1)
        return distances[:, 0], indices[:, 0]

    def exact_distances(self, queries):
        return self.exact_nearest(queries)[0]

    def exact_neighbours(self, queries, count):
        return self.search.kneighbors(queries, n_neighbors=count)[1]


def main() -> None:
    import_tensorflow_quietly()
    from core.detectors.common.bank_search import CellSearch
    from core.runs.bundles import load_bundle
    from core.data.datasets import open_dataset
    from core.detectors.memory_bank.detector import MEMORY_BANK_COLUMN, MemoryBankDetector

    autoencoder = load_bundle("assets/demo_model")
    with open_dataset("demo") as dataset:
        good = dataset.load(dataset.train_good, autoencoder.input_size).images
        test = dataset.load(dataset.test, autoencoder.input_size).images
    started = time.perf_counter()
    bank = MemoryBankDetector(autoencoder).fit(good)
    report = {"coreset_ratio": bank.coreset_ratio, "good_patches": bank.n_good_patches_,
              "bank_size": len(bank.memory_bank_), "feature_dim": int(bank.memory_bank_.shape[1]),
              "fit_seconds": round(time.perf_counter() - started, 2), "test_images": len(test), "searches": {}}
    reference = None
    for search in SEARCHES:
        bank.bank_search_ = (CellSearch(bank.memory_bank_) if search == "cells"
                             else _ScikitSearch(bank.memory_bank_, search))
        bank.score(test[:8])  # warm-up: the encoder's first call traces the graph
        started = time.perf_counter()
        scores = bank.score(test).table[MEMORY_BANK_COLUMN].to_numpy()
        seconds = time.perf_counter() - started
        reference = scores if reference is None else reference
        report["searches"][search] = {"images_per_second": round(len(test) / seconds, 1),
                                      "max_score_difference": float(np.abs(scores - reference).max())}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
