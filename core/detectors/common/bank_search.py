"""Nearest bank entry for every patch: an inverted-file search over cells of the bank, and its exact check.

A memory bank of 10,000 entries in 64 dimensions, searched in full for each of the 3,136 patches of
an image, costs about 4 GFLOP per image: 13–16 images/s on two cores, whatever exact method does it
(scikit-learn's brute force, a float32 matrix product, FAISS's flat index all measured alike;
``benchmarks/memory_bank_search.py``). :class:`CellSearch` cuts the bank into cells of about
:data:`ENTRIES_PER_CELL` entries around k-means centres and compares each patch only with the entries of
the :data:`PROBED_CELLS` cells whose centres are nearest to it (an IVF-Flat index, as FAISS calls it; here
in numpy, with the matrix products grouped by cell so they stay large).

The distance it returns is always a true distance to some bank entry, so it is never below the exact
nearest distance, and it *is* the exact one for nearly every patch (99.8 % of the demo's patches).
:meth:`CellSearch.exact_distances` searches the whole bank for the few patches where it matters: the
memory bank uses it to make every image score exactly what an exhaustive search gives (see
:func:`exact_largest`), so verdicts and image AUROC do not depend on the index, only the pixel maps may
be higher by a hair at a few patches.
"""

from __future__ import annotations

import math

import numpy as np

# About 156 entries per cell and 4 cells probed: about a sixteenth of the bank per patch. On all eight labelled
# sets image AUROC is unchanged and pixel AUROC moves by at most 0.0007 (3 cells: 0.0009, 6 cells: 0.0004), at
# 5.1 times the speed of the whole bank in one run (benchmarks/recorded/memory_bank_search.json).
ENTRIES_PER_CELL = 156
PROBED_CELLS = 4
# below this many cells, the whole bank is as cheap to search as the probed cells
MIN_CELLS = 4 * PROBED_CELLS
LLOYD_ITERATIONS = 10
# queries per matrix product: bounds its (queries × entries) memory, 650 MB at most for a 10,000-entry bank
QUERY_CHUNK = 16384


class CellSearch:
    """Nearest-entry search of ``bank`` (``(entries, dim)``): by ``probed_cells`` cells when the bank is large,
    in full when it is small or ``probed_cells`` is None. Deterministic: the cells' centres start from the
    bank's first rows (a greedy coreset's first rows are spread over the whole bank) and move by a fixed
    number of k-means steps, so a saved bank is searched as it was when fitted."""

    def __init__(self, bank: np.ndarray, probed_cells: int | None = PROBED_CELLS):
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.bank_norms = np.einsum("ij,ij->i", self.bank, self.bank)
        cells = len(self.bank) // ENTRIES_PER_CELL
        self.probed_cells = probed_cells   # None: always the whole bank
        self.exhaustive = probed_cells is None or cells < MIN_CELLS
        if self.exhaustive:
            return
        self.centres, assignment = _kmeans(self.bank, cells)
        self.centre_norms = np.einsum("ij,ij->i", self.centres, self.centres)
        # each cell's entries, and its columns for the matrix product: the entries times -2, and below them their
        # squared norms, which a query's appended 1 adds in the same product (a separate addition over the
        # product's result took a sixth of the search)
        self.cell_entries = [np.flatnonzero(assignment == cell) for cell in range(cells)]
        self.cell_columns = [np.ascontiguousarray(np.vstack([-2.0 * self.bank[entries].T, self.bank_norms[entries]]))
                             for entries in self.cell_entries]

    def kneighbors(self, queries: np.ndarray, n_neighbors: int = 1):
        """``(distances, indices)``, each ``(n, 1)``, in scikit-learn's shape; only the nearest one is offered."""
        if n_neighbors != 1:
            raise ValueError("CellSearch finds the nearest entry only.")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        indices = _in_chunks(self._exhaustive_nearest if self.exhaustive else self._probed_nearest, queries)
        return self.distances_to(queries, indices)[:, None], indices[:, None]

    def distances_to(self, queries: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Distance from each query to the bank entry it names, from the differences, summed in float64 (so the
        same pair always gives the same value, whichever search found it; float32 differences are exact to 3e-8
        relative and take a third of the time of float64 ones)."""
        differences = np.asarray(queries, np.float32) - self.bank[indices]
        return np.sqrt(np.einsum("ij,ij->i", differences, differences, dtype=np.float64))

    def exact_distances(self, queries: np.ndarray) -> np.ndarray:
        """Each query's distance to its nearest entry of the whole bank (the exhaustive search)."""
        return self.exact_nearest(queries)[0]

    def exact_nearest(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query's distance to its nearest entry of the whole bank, and that entry."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        indices = _in_chunks(self._exhaustive_nearest, queries)
        return self.distances_to(queries, indices), indices

    def exact_neighbours(self, queries: np.ndarray, count: int) -> np.ndarray:
        """The ``count`` entries of the whole bank nearest to each query, nearest first, ``(n, count)``: for a few
        queries (the memory bank's re-weighting asks it for one per image)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        squared = _ranking_distances(queries, self.bank, self.bank_norms)
        count = min(int(count), len(self.bank))
        nearest = np.argpartition(squared, count - 1, axis=1)[:, :count]
        order = np.argsort(np.take_along_axis(squared, nearest, axis=1), axis=1, kind="stable")
        return np.take_along_axis(nearest, order, axis=1)

    def _exhaustive_nearest(self, queries: np.ndarray) -> np.ndarray:
        return _nearest_row(queries, self.bank, self.bank_norms)

    def _probed_nearest(self, queries: np.ndarray) -> np.ndarray:
        cells = len(self.centres)
        probed = min(self.probed_cells, cells)
        to_centres = _ranking_distances(queries, self.centres, self.centre_norms)
        probes = np.argpartition(to_centres, probed - 1, axis=1)[:, :probed]
        with_one = np.hstack([queries, np.ones((len(queries), 1), np.float32)])
        best = np.full((len(queries), probed), np.inf, np.float32)
        best_entry = np.zeros((len(queries), probed), np.int64)
        # every (query, probe) pair grouped by its cell: one matrix product per cell
        pairs = np.argsort(probes, axis=None, kind="stable")
        pair_cells = probes.reshape(-1)[pairs]
        bounds = np.searchsorted(pair_cells, np.arange(cells + 1))
        for cell, entries in enumerate(self.cell_entries):
            chosen = pairs[bounds[cell]:bounds[cell + 1]]
            if not len(chosen) or not len(entries):
                continue
            rows, slots = np.divmod(chosen, probed)
            partial = with_one[rows] @ self.cell_columns[cell]   # |b|² - 2 q·b
            nearest = np.argmin(partial, axis=1)
            best[rows, slots] = partial[np.arange(len(rows)), nearest]
            best_entry[rows, slots] = entries[nearest]
        return best_entry[np.arange(len(queries)), np.argmin(best, axis=1)]


def exact_largest(approximate_scores: np.ndarray, exact_score_of) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the largest exact patch score and the patch that has it, given patch scores from the cell search.

    ``approximate_scores`` is ``(n_images, n_patches)``, never below the exact scores (a cell search
    distance is a true distance to some entry, and the scores rise with the distance);
    ``exact_score_of(image, patches)`` gives the exact scores of those patches. Patches are checked from
    the highest approximate score down until no unchecked one can beat the best exact score found:
    usually one check per image, since the highest patch was found exactly.
    """
    largest = np.empty(len(approximate_scores), np.float64)
    where = np.zeros(len(approximate_scores), np.int64)
    for image, scores in enumerate(approximate_scores):
        order = np.argsort(-scores, kind="stable")
        best, checked = -math.inf, 0
        while checked < len(order) and scores[order[checked]] > best:
            batch = order[checked:checked + 8]   # a few at a time: one small product instead of eight
            exact = np.asarray(exact_score_of(image, batch))
            if float(np.max(exact)) > best:
                best, where[image] = float(np.max(exact)), batch[int(np.argmax(exact))]
            checked += len(batch)
        largest[image] = best
    return largest, where


def _ranking_distances(queries: np.ndarray, rows: np.ndarray, row_norms: np.ndarray) -> np.ndarray:
    """``(queries, rows)`` squared distances less each query's |q|²: |q - r|² = |q|² + |r|² - 2 q·r, and |q|² does
    not change which rows are nearest."""
    return row_norms[None, :] - 2.0 * queries @ rows.T


def _nearest_row(queries: np.ndarray, rows: np.ndarray, row_norms: np.ndarray) -> np.ndarray:
    """Index of each query's nearest row."""
    return np.argmin(_ranking_distances(queries, rows, row_norms), axis=1)


def _in_chunks(nearest, queries: np.ndarray) -> np.ndarray:
    """``nearest(chunk)`` over :data:`QUERY_CHUNK` queries at a time, concatenated."""
    indices = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), QUERY_CHUNK):
        indices[start:start + QUERY_CHUNK] = nearest(queries[start:start + QUERY_CHUNK])
    return indices


def _kmeans(points: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from the first ``cells`` rows: the centres and each row's cell."""
    def nearest_centre(centres):
        return _nearest_row(points, centres, np.einsum("ij,ij->i", centres, centres))

    centres = points[:cells].copy()
    for _ in range(LLOYD_ITERATIONS):
        assignment = nearest_centre(centres)
        counts = np.bincount(assignment, minlength=cells)
        sums = np.zeros(centres.shape, np.float64)
        np.add.at(sums, assignment, points)
        moved = counts > 0   # an empty cell keeps its centre
        centres[moved] = (sums[moved] / counts[moved, None]).astype(np.float32)
    return centres, nearest_centre(centres)
