"""The memory bank on ImageNet features (EfficientNet-Lite0 from its pip package) on every image set.

Sets: the three the project generates (casting = the demo, texture, object) and four made from
real photographs by :mod:`benchmarks.real_photos` (brick, burlap, granite, walnut). For each set
and seed the detector is fitted on the good training images only; image AUROC, pixel AUROC,
AUPRO, fitting time and scoring speed are measured on the test images, and mean ± std over the
seeds is written to ``benchmarks/recorded/real_surfaces.json``. The autoencoders' figures on the
same sets are in ``benchmarks/recorded/primary_score.json``.

    python -m benchmarks.real_surfaces [--seeds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from core.quiet import import_tensorflow_quietly

FIGURES = ("image_auroc", "pixel_auroc", "pixel_aupro", "training_seconds", "scoring_images_per_second")


def measure(root: Path, seed: int) -> dict:
    from core.compare import evaluate_detector, load_test_images
    from core.datasets import open_dataset
    from core.memory_bank import MEMORY_BANK_COLUMN, PACKAGED_BACKBONE, MemoryBankDetector

    detector = MemoryBankDetector(backbone=PACKAGED_BACKBONE, seed=seed)   # the default coreset ratio, as the app uses
    with open_dataset(root) as data:
        good = data.load(data.train_good, detector.input_size).images
        test = load_test_images(data, detector.input_size)
    started = time.perf_counter()
    detector.fit(good)
    seconds = time.perf_counter() - started
    figures, _ = evaluate_detector(detector, test, MEMORY_BANK_COLUMN)
    return {key: float(value) for key, value in (figures | {"training_seconds": seconds}).items() if key in FIGURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/recorded/real_surfaces.json"))
    arguments = parser.parse_args()
    import_tensorflow_quietly()
    from benchmarks.real_photos import every_image_set

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, root in every_image_set(Path(scratch)).items():
            runs = [measure(root, seed) for seed in range(arguments.seeds)]
            row = {"set": name, "detector": "memory bank on EfficientNet-Lite0 (ImageNet)"}
            for key in FIGURES:
                values = np.array([run[key] for run in runs])
                row[key] = {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps({"command": f"python -m benchmarks.real_surfaces --seeds {arguments.seeds}",
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
