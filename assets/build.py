"""Rebuild everything in assets/ from the project's own code: ``make demo-assets``.

- ``assets/demo_model/``: an NCAE bundle trained at the default settings (seed 0) on the demo set;
- ``assets/samples/``: a few demo test images (good and defective) for trying the Inspect page.

The demo set and the training are seeded, so the weights come out the same on the same machine;
only the manifest's creation time (and the archive's timestamps) change from one build to the next.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from core.quiet import import_tensorflow_quietly

ASSETS = Path(__file__).resolve().parent
SAMPLE_PICKS = {"good": 3, "blowhole": 1, "scratch": 1, "crack": 1, "edge_chip": 1, "stain": 1}


def main() -> None:
    import_tensorflow_quietly()
    from core.data.datasets import open_dataset
    from core.detectors.autoencoder.detector import ResidualDetector
    from core.files import atomic_copy
    from core.runs.pipeline import train_run

    with tempfile.TemporaryDirectory() as scratch, open_dataset("demo") as dataset:
        staging = Path(scratch) / "demo_model"
        detector = train_run(dataset, staging, ResidualDetector(model="ncae", seed=0),
                             progress=lambda update: print(f"epoch {update.epoch}/{update.epochs} "
                                                           f"val_loss {update.val_loss:.5f}", file=sys.stderr))
        target = ASSETS / "demo_model"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(staging, target)
        samples = ASSETS / "samples"
        shutil.rmtree(samples, ignore_errors=True)
        for folder, count in SAMPLE_PICKS.items():
            for path in sorted((dataset.root / "test" / folder).glob("*.png"))[:count]:
                atomic_copy(path, samples / f"{folder}_{path.name}")
    print(f"demo model trained in {detector.training_seconds_:.0f} s; assets written to {ASSETS}", file=sys.stderr)


if __name__ == "__main__":
    main()
