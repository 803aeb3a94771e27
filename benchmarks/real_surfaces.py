"""Every detector on every image set, at its defaults, judged on its primary score.

Sets: the three the project generates (casting = the demo, texture, object) and four made from
real photographs by :mod:`benchmarks.real_photos` (brick, burlap, granite, walnut). For each set
and seed the detector is fitted on the good training images only; image AUROC (on its primary
score, fixed in advance), pixel AUROC, AUPRO, fitting time and scoring speed are measured on the
test images, and mean ± std over the seeds is written to
``benchmarks/recorded/real_surfaces_<detector>.json`` (the memory bank's to ``real_surfaces.json``).

    python -m benchmarks.real_surfaces [--detector NAME] [--seeds 3] [--out FILE]
    python -m benchmarks.real_surfaces --table    # the README's table, from the recorded files
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


def table_label(name: str) -> str:
    """A detector's column heading: its name on the pages and the score it is judged on (from the registry)."""
    from core.detectors import label, primary_score_of

    return f"{label(name)} ({primary_score_of(name)})"


def measure(root: Path, seed: int, kind: str) -> dict:
    from core.data.datasets import open_dataset
    from core.detectors import new_detector
    from core.evaluation.evaluate import evaluate_detector, load_test_images

    detector = new_detector(kind, seed=seed)  # every default as the app uses it
    with open_dataset(root) as data:
        good = data.load(data.train_good, detector.input_size, detector.channels).images
        test = load_test_images(data, detector.input_size, detector.channels)
    started = time.perf_counter()
    detector.fit(good)
    seconds = time.perf_counter() - started
    figures, _ = evaluate_detector(detector, test, detector.primary_score)
    return {key: float(value) for key, value in (figures | {"training_seconds": seconds}).items() if key in FIGURES}


RECORDED = Path(__file__).resolve().parent / "recorded"


def recorded_path(detector: str) -> Path:
    return RECORDED / ("real_surfaces.json" if detector == "memory_bank" else f"real_surfaces_{detector}.json")


def markdown_table() -> str:
    """Image AUROC (pixel AUROC) per set and detector, mean ± std over seeds, the best image AUROC in bold;
    AUPRO; then each detector's fitting time and scoring speed, from the recorded files."""
    from core.detectors import DETECTOR_NAMES

    recorded = {name: {row["set"]: row for row in json.loads(recorded_path(name).read_text())["rows"]}
                for name in DETECTOR_NAMES if recorded_path(name).is_file()}
    sets = list(next(iter(recorded.values())))
    lines = ["| set | " + " | ".join(table_label(name) for name in recorded) + " |",
             "|---|" + "---|" * len(recorded)]
    for name in sets:
        best = max(recorded[detector][name]["image_auroc"]["mean"] for detector in recorded
                   if "refused" not in recorded[detector][name])
        cells = []
        for detector in recorded:
            row = recorded[detector][name]
            if "refused" in row:
                cells.append("refused ¹")
                continue
            image = f"{row['image_auroc']['mean']:.3f} ± {row['image_auroc']['std']:.3f}"
            cells.append(f"{f'**{image}**' if row['image_auroc']['mean'] == best else image} "
                         f"({row['pixel_auroc']['mean']:.3f})")
        lines.append(f"| {name.replace('real:', '')} | " + " | ".join(cells) + " |")
    lines += ["", "AUPRO (mean over seeds):", "", "| set | " + " | ".join(table_label(name) for name in recorded) + " |",
              "|---|" + "---|" * len(recorded)]
    for name in sets:
        lines.append(f"| {name.replace('real:', '')} | " +
                     " | ".join("refused ¹" if "refused" in recorded[detector][name] else
                                f"{recorded[detector][name]['pixel_aupro']['mean']:.3f}" for detector in recorded) + " |")
    lines += ["", "| detector | fitting, s (range over sets) | scoring, images/s (range over sets) |", "|---|---|---|"]
    for detector, rows in recorded.items():
        seconds = [row["training_seconds"]["mean"] for row in rows.values() if "refused" not in row]
        speed = [row["scoring_images_per_second"]["mean"] for row in rows.values() if "refused" not in row]
        lines.append(f"| {table_label(detector)} | {min(seconds):.0f}–{max(seconds):.0f} | {min(speed):.0f}–{max(speed):.0f} |")
    refusals = sorted({row["refused"] for rows in recorded.values() for row in rows.values() if "refused" in row})
    if refusals:
        lines += ["", "¹ The detector refused to fit: " + " ".join(refusals)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    from core.detectors import DETECTOR_NAMES

    parser.add_argument("--detector", choices=DETECTOR_NAMES, default="memory_bank")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", action="store_true", help="print the README's table from the recorded files")
    arguments = parser.parse_args()
    if arguments.table:
        print(markdown_table())
        return
    out = arguments.out or recorded_path(arguments.detector)
    import_tensorflow_quietly()
    from benchmarks.real_photos import every_image_set

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, root in every_image_set(Path(scratch)).items():
            row = {"set": name, "detector": table_label(arguments.detector)}
            try:
                runs = [measure(root, seed, arguments.detector) for seed in range(arguments.seeds)]
            except ValueError as error:   # a detector that refuses this kind of image says why
                rows.append(row | {"refused": str(error)})
                print(json.dumps(rows[-1]), flush=True)
                continue
            for key in FIGURES:
                values = np.array([run[key] for run in runs])
                row[key] = {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = f"python -m benchmarks.real_surfaces --detector {arguments.detector} --seeds {arguments.seeds}"
    out.write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
