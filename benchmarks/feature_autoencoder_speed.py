"""Scoring speed of the NCAE on features against the memory bank, in one run on the same images.

Both are fitted on the demo's good training images and score its 140 test images (224 px colour, maps
included, as ``score`` does); the best of three passes is kept. Run it on a quiet machine: the figures in
``benchmarks/recorded/real_surfaces_*.json`` were measured while other benchmarks ran.

    python -m benchmarks.feature_autoencoder_speed [--out benchmarks/recorded/feature_autoencoder_speed.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from core.quiet import import_tensorflow_quietly

RECORDED = Path(__file__).resolve().parent / "recorded" / "feature_autoencoder_speed.json"


def images_per_second(detector, images, passes: int = 3) -> float:
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        detector.score(images, with_maps=True)
        best = min(best, time.perf_counter() - started)
    return len(images) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RECORDED)
    arguments = parser.parse_args()
    import_tensorflow_quietly()
    from core.data.datasets import open_dataset
    from core.detectors import new_detector

    figures = {}
    with open_dataset("demo") as data:
        for name in ("ncae_features", "memory_bank"):
            detector = new_detector(name, seed=0)
            good = data.load(data.train_good, detector.input_size, detector.channels).images
            test = data.load(data.test, detector.input_size, detector.channels).images
            detector.fit(good)
            figures[name] = round(images_per_second(detector, test), 1)
            print(name, figures[name], flush=True)
    result = {"command": "python -m benchmarks.feature_autoencoder_speed", "images": "the demo's 140 test images, "
              "224 px colour, with maps", "images_per_second": figures,
              "ratio": round(figures["ncae_features"] / figures["memory_bank"], 1)}
    arguments.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
