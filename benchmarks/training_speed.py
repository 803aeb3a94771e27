"""How long the NCAE trains at ``train``'s defaults, and what shorter schedules cost in AUROC, across sets.

    python -m benchmarks.training_speed [--sets casting,texture,...] [--schedules today,...] [--out FILE]

Each schedule trains the NCAE exactly as ``python -m core train --data <set>`` builds it (native
resolution, 64 px patches above 64 px, colour when the images are) with only the schedule changed,
seed 0, on the three generated sets (casting is the demo) and two ``gimp-data`` photographs (brick,
walnut; :mod:`benchmarks.real_photos`). Recorded per set and schedule: training seconds, epochs run,
image AUROC on the primary score (``map_max``, fixed in advance) and pixel AUROC. The schedule is
chosen on the mean over the sets (the demo alone must also stay ≥ 0.99), not on the demo's figure,
and written to ``benchmarks/recorded/training_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from core.quiet import import_tensorflow_quietly

RECORDED = Path(__file__).resolve().parent / "recorded" / "training_speed.json"
SETS = ("casting", "texture", "object", "real:brick", "real:walnut")
# schedule name -> the detector parameters it changes
SCHEDULES = {
    "today": {},   # train's defaults as they are when the benchmark runs
    "24 epochs": {"epochs": 24},
    "16 epochs": {"epochs": 16},
    "48 epochs of 1024 patches": {"epochs": 48, "patches_per_epoch": 1024},
    "24 epochs at learning rate 4e-3": {"epochs": 24, "learning_rate": 4e-3},
    "24 epochs with cosine decay from 4e-3": {"epochs": 24, "learning_rate": 4e-3, "learning_rate_decay": "cosine"},
    "20 epochs with cosine decay from 4e-3": {"epochs": 20, "learning_rate": 4e-3, "learning_rate_decay": "cosine"},
    "24 epochs with cosine decay from 2e-3": {"epochs": 24, "learning_rate_decay": "cosine"},
}


def measure(root: Path, changes: dict, seed: int = 0) -> dict:
    from core.data.datasets import open_dataset
    from core.detectors import detector_for_images
    from core.evaluation.evaluate import evaluate_detector, load_test_images

    with open_dataset(root) as data:
        detector = detector_for_images("ncae", [sample.path for sample in data.train_good], seed=seed)
        detector.set_params(**changes)
        good = data.load(data.train_good, detector.input_size, detector.channels)
        test = load_test_images(data, detector.input_size, detector.channels)
    started = time.perf_counter()
    detector.fit(good.images, image_sizes=good.sizes)
    seconds = time.perf_counter() - started
    figures, _ = evaluate_detector(detector, test, detector.primary_score)
    return {"training_seconds": round(seconds, 1), "epochs_run": len(detector.history_.get("loss", [])),
            "input_size": int(detector.input_size), "patch_size": detector.patch_size,
            "image_auroc": round(float(figures["image_auroc"]), 4),
            "pixel_auroc": None if figures.get("pixel_auroc") is None else round(float(figures["pixel_auroc"]), 4),
            # the held-out loss after every epoch: what a stopping rule can see
            "held_out_loss": [float(f"{value:.5g}") for value in detector.history_.get("val_loss", [])]}


def mean_over_sets(sets: dict) -> dict:
    """Each schedule measured on every set (seed 0): mean training seconds and image AUROC."""
    base = {name: schedules for name, schedules in sets.items() if " (seed " not in name}
    return {schedule: {key: round(sum(base[name][schedule][key] for name in base) / len(base), 4)
                       for key in ("training_seconds", "image_auroc")}
            for schedule in SCHEDULES if all(schedule in measured for measured in base.values())}


def over_seeds(sets: dict) -> dict:
    """For a set measured with more seeds: each schedule's image AUROC per seed and its mean."""
    summary = {}
    for name in {name.split(" (seed ")[0] for name in sets if " (seed " in name}:
        seeds = [sets[name]] + [schedules for other, schedules in sorted(sets.items())
                                if other.startswith(f"{name} (seed ")]
        summary[name] = {schedule: {"image_auroc": [entry[schedule]["image_auroc"] for entry in seeds],
                                    "mean": round(sum(entry[schedule]["image_auroc"] for entry in seeds) / len(seeds), 4)}
                         for schedule in SCHEDULES if all(schedule in entry for entry in seeds)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--schedules", default=",".join(SCHEDULES))
    parser.add_argument("--out", type=Path, default=RECORDED)
    parser.add_argument("--seed", type=int, default=0, help="recorded as 'SET (seed N)' unless 0")
    arguments = parser.parse_args()
    import_tensorflow_quietly()
    from benchmarks.real_photos import every_image_set

    # schedules measured in an earlier run are kept: a new schedule can be added without training the others again
    result = json.loads(arguments.out.read_text()) if arguments.out.is_file() else {"sets": {}}
    result |= {"command": "python -m benchmarks.training_speed", "schedules": SCHEDULES}
    with tempfile.TemporaryDirectory() as scratch:
        sets = every_image_set(Path(scratch))
        for name in arguments.sets.split(","):
            recorded_as = name if arguments.seed == 0 else f"{name} (seed {arguments.seed})"
            result["sets"].setdefault(recorded_as, {})
            for schedule in arguments.schedules.split(","):
                result["sets"][recorded_as][schedule] = measure(sets[name], SCHEDULES[schedule], arguments.seed)
                print(json.dumps({recorded_as: {schedule: result["sets"][recorded_as][schedule]}}), flush=True)
    result["mean_over_sets"] = mean_over_sets(result["sets"])
    result["over_seeds"] = over_seeds(result["sets"])
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
