"""Which score column should decide by default? Measured on every image set the project has.

For each set (the three generated ones, and four made from real photographs by
:mod:`benchmarks.real_photos`), an NCAE and a CAE are trained at the default settings (seed 0) on
the good training images, and every score column's image AUROC on the test images is recorded,
together with the fused score as it was (two-sided, all eleven statistics) and as it is now
(one-sided, error statistics only). The result is ``benchmarks/recorded/primary_score.json``; the
choice it supports is written down in :mod:`core.decision`.

    python -m benchmarks.primary_score [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from core.quiet import import_tensorflow_quietly



def measure(root: Path, name: str, model: str) -> dict:
    from core.data.datasets import open_dataset
    from core.detectors.autoencoder.detector import ResidualDetector
    from core.evaluation.metrics import ThresholdTable
    from core.detectors.common.residuals import STATISTIC_NAMES, residual_maps, residual_statistics
    from core.detectors.autoencoder.stat_distance import StatDistance

    with open_dataset(root) as data:
        detector = ResidualDetector(model=model, seed=0)
        good = data.load(data.train_good, detector.input_size).images
        started = time.perf_counter()
        detector.fit(good)
        seconds = time.perf_counter() - started
        test = [sample for sample in data.test if sample.label in ("good", "defect")]
        decoded = data.load(test, detector.input_size)
        labels = np.array([test[index].label for index in decoded.kept])
        table = detector.score(decoded.images).table
        held_out = good[detector.held_out_indices_]
        reference = residual_statistics(residual_maps(held_out, detector.reconstruct(held_out)))
        statistics = {column: table[column].to_numpy() for column in STATISTIC_NAMES}
        two_sided = StatDistance.fit(reference, columns=STATISTIC_NAMES, one_sided=False).distance(statistics)
        held_out_table = detector.score(held_out).table
    auroc = {column: ThresholdTable(table[column], labels).auroc() for column in table.columns}
    auroc["stat_distance_two_sided_all"] = ThresholdTable(two_sided, labels).auroc()
    for fusion, fused in _z_fusions(held_out_table, table).items():
        auroc[fusion] = ThresholdTable(fused, labels).auroc()
    return {"set": name, "model": model, "n_good": int((labels == "good").sum()),
            "n_defect": int((labels == "defect").sum()), "training_seconds": round(seconds, 1),
            "image_auroc": {key: round(float(value), 4) for key, value in auroc.items()}}


def _z_fusions(reference, table) -> dict[str, np.ndarray]:
    """Simpler label-free fusions: one-sided robust z-scores of log error statistics, combined."""
    columns = ("mean", "std", "max", "mse", "map_max")
    z = []
    for column in columns:
        good = np.log(np.maximum(reference[column].to_numpy(), 1e-12))
        centre = np.median(good)
        scale = max(1.4826 * np.median(np.abs(good - centre)), 1e-6)
        z.append(np.maximum((np.log(np.maximum(table[column].to_numpy(), 1e-12)) - centre) / scale, 0.0))
    z = np.stack(z, axis=1)
    return {"fused_max_z": z.max(axis=1), "fused_mean_z": z.mean(axis=1),
            "fused_max_z_maps": z[:, [2, 4]].max(axis=1)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Image AUROC of every score column on every image set.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/recorded/primary_score.json"))
    arguments = parser.parse_args()
    import_tensorflow_quietly()
    from benchmarks.real_photos import every_image_set

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, root in every_image_set(Path(scratch)).items():
            for model in ("ncae", "cae"):
                rows.append(measure(root, name, model))
                print(json.dumps(rows[-1]), flush=True)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps({"command": "python -m benchmarks.primary_score", "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
