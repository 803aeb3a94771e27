"""Which detector for these parts, from good images only: ``python -m core advise`` and Data & Model's check.

A user usually has good images and no defects. The check holds out a share of the good training images,
pastes synthetic defects on copies of them (DRAEM's generator, :mod:`core.detectors.draem.synthetic_anomalies`:
Perlin-shaped blobs filled with a re-lit piece of another good image or a procedural pattern), trains every
detector as ``train`` would (its defaults, the images' own resolution and colour) on the remaining good
images, and ranks the detectors by the image AUROC of their primary score: held-out good against the same
images with a defect pasted in. The held-out good images and their defective copies go through the same
decoding and the same PNG file, so nothing but the pasted defect tells them apart.

How far to trust the ranking is measured, not assumed: ``benchmarks/detector_check.py`` runs the check on the
good training images of every labelled set the project has and compares its ranking with the ranking on that
set's real test images (:data:`AGREEMENT`). DRAEM is trained on anomalies from the same generator, so the check
flatters it; the measured agreement says how much that matters.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from core.data.datasets import Dataset, open_dataset
from core.defaults import MIN_TRAINING_IMAGES
from core.detectors import CANDIDATE_NAMES, detector_for_images, label
from core.detectors.features import BackboneUnavailable
from core.errors import DatasetError
from core.evaluation.evaluate import evaluate_detector, load_test_images

CHECK_SHARE = 0.3        # of the good training images, held out to carry the synthetic defects
MIN_CHECK_IMAGES = 6
SYNTHETIC_DEFECT = "synthetic"
MIN_DEFECT_SHARE = 0.002   # of a copy's pixels visibly changed (2 % or more): a paste that changed less is redrawn
# How the check's ranking agreed with the real one on the eight labelled sets (3 generated, 4 gimp-data
# photographs, the ELPV monocrystalline solar cells): benchmarks/recorded/detector_check.json, written by
# ``python -m benchmarks.detector_check``. The check's pick is shown as a recommendation only when it was within
# RECOMMEND_WITHIN of the best real detector on at least RECOMMEND_ON of the sets.
AGREEMENT = {"sets": 8, "top_pick_within_0.02": 7, "mean_rank_correlation": 0.78}
RECOMMEND_WITHIN, RECOMMEND_ON = 0.02, 6


def is_recommendation() -> bool:
    return AGREEMENT["sets"] > 0 and AGREEMENT["top_pick_within_0.02"] >= RECOMMEND_ON


def agreement_words() -> str:
    """One sentence on how far the check can be trusted, from :data:`AGREEMENT`."""
    if not AGREEMENT["sets"]:
        return "A rough guide: how well this check agrees with real defects has not been measured."
    figures = (f"on {AGREEMENT['sets']} labelled sets its first choice was within {RECOMMEND_WITHIN} of the best "
               f"detector on real defects {AGREEMENT['top_pick_within_0.02']} times, and its ranking agreed with the "
               f"real one at a mean rank correlation of {AGREEMENT['mean_rank_correlation']:.2f}")
    return (f"A recommendation: {figures}." if is_recommendation() else
            f"A rough guide, not a recommendation: {figures}. Confirm with real defect images (compare) before "
            "relying on it.")


def write_check_set(dataset: Dataset, out: Path, seed: int = 0) -> dict:
    """An MVTec-layout set under ``out``: the good training images not held out (linked, as they are), the held-out
    ones (decoded and written again as PNG) and a copy of each with a synthetic defect (``test/synthetic``, its mask
    in ``ground_truth/synthetic``). Returns the counts and the working size of the copies."""
    from PIL import Image

    from core.data.images import decode_frame, fitted_size
    from core.data.native import MAX_DEFAULT_WORKING_SIZE, default_channels, native_long_side
    from core.detectors.draem.synthetic_anomalies import augment

    good = dataset.train_good
    check_count = max(MIN_CHECK_IMAGES, round(CHECK_SHARE * len(good)))
    if len(good) - check_count < MIN_TRAINING_IMAGES:
        raise DatasetError(f"{dataset.root}: the detector check needs at least {MIN_TRAINING_IMAGES + MIN_CHECK_IMAGES} "
                           f"good training images ({MIN_TRAINING_IMAGES} to train on, {MIN_CHECK_IMAGES} to hold out); "
                           f"this set has {len(good)}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(good))
    held_out, training = [good[i] for i in sorted(order[:check_count])], [good[i] for i in sorted(order[check_count:])]
    paths = [sample.path for sample in good]
    channels = default_channels(paths)
    side = min(native_long_side(paths) or 256, MAX_DEFAULT_WORKING_SIZE)
    folders = {name: out / name for name in ("train/good", "test/good", f"test/{SYNTHETIC_DEFECT}",
                                             f"ground_truth/{SYNTHETIC_DEFECT}")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for index, sample in enumerate(training):
        target = folders["train/good"] / f"{index:05d}{sample.path.suffix.lower()}"
        try:
            os.symlink(sample.path.resolve(), target)
        except OSError:   # a file system without links: a copy does as well
            target.write_bytes(sample.path.read_bytes())
    squares, crops = [], []
    for sample in held_out:
        square, original = decode_frame(sample.path, side, channels=channels)
        _, (top, bottom, left, right) = fitted_size(original, side)
        squares.append(square)
        crops.append((slice(top, side - bottom), slice(left, side - right)))
    squares = np.stack(squares)
    defective, masks = augment(squares, rng, anomaly_share=1.0)
    for index, crop in enumerate(crops):
        for _ in range(50):   # a paste that fell in the padding or hardly changed anything is drawn again
            if masks[index][crop].mean() >= MIN_DEFECT_SHARE:
                break
            again, again_mask = augment(squares[index:index + 1], rng, anomaly_share=1.0)
            defective[index], masks[index] = again[0], again_mask[0]

    def png(array, path):
        pixels = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(pixels.squeeze()).save(path)

    for index, crop in enumerate(crops):
        png(squares[index][crop], folders["test/good"] / f"{index:05d}.png")
        png(defective[index][crop], folders[f"test/{SYNTHETIC_DEFECT}"] / f"{index:05d}.png")
        png(masks[index][crop], folders[f"ground_truth/{SYNTHETIC_DEFECT}"] / f"{index:05d}_mask.png")
    return {"training_images": len(training), "held_out_images": len(held_out), "side": side, "channels": channels}


def detector_check(dataset: Dataset, names: tuple[str, ...] = CANDIDATE_NAMES, seed: int = 0,
                   progress: Callable[[str], None] = lambda message: None, also=None) -> dict:
    """Every detector in ``names`` (by default all but the baselines, the CAEs) trained on most of ``dataset``'s good
    training images and judged on the rest,
    with and without synthetic defects; rows best first (a detector that refuses the images last, with why).
    ``also(detector)``, when given, adds its dict to each fitted detector's row (the agreement benchmark judges the
    same fitted detector on real defects with it)."""
    with tempfile.TemporaryDirectory(prefix="residual-lab-check-") as scratch:
        counts = write_check_set(dataset, Path(scratch), seed)
        rows = []
        with open_dataset(scratch) as check:
            training_paths = [sample.path for sample in check.train_good]
            for name in names:
                progress(f"checking {label(name)} ({len(rows) + 1} of {len(names)})")
                row = {"detector": name, "label": label(name)}
                try:
                    detector = detector_for_images(name, training_paths, seed)
                    good = check.load(check.train_good, int(detector.input_size), detector.channels).images
                    started = time.perf_counter()
                    detector.fit(good)
                    seconds = time.perf_counter() - started
                except (ValueError, BackboneUnavailable) as error:   # it cannot fit these images: say why
                    rows.append(row | {"refused": str(error)})
                    continue
                test = load_test_images(check, int(detector.input_size), detector.channels)
                figures, _ = evaluate_detector(detector, test)
                rows.append(row | {"score": detector.primary_score, "check_auroc": round(figures["image_auroc"], 4),
                                   "check_pixel_auroc": figures.get("pixel_auroc"),
                                   "training_seconds": round(seconds, 1),
                                   "scoring_images_per_second": round(figures["scoring_images_per_second"], 1)}
                            | (also(detector) if also else {}))
    rows.sort(key=lambda row: -row.get("check_auroc", -1.0))
    fitted = [row for row in rows if "check_auroc" in row]
    return {"data": str(dataset.root), "seed": seed, **counts, "rows": rows,
            "pick": fitted[0]["detector"] if fitted else None,
            "recommendation": is_recommendation(), "how_far_to_trust_it": agreement_words()}


def check_rows(report: dict) -> list[dict]:
    """The printed table's rows and the page's: rank, detector, check AUROC (or why it refused)."""
    rows = []
    for rank, row in enumerate(report["rows"], start=1):
        refused = "refused" in row
        rows.append({"rank": "—" if refused else rank, "detector": row["label"], "name": row["detector"],
                     "check AUROC": f"refused: {row['refused']}" if refused else f"{row['check_auroc']:.3f}",
                     "train s": "—" if refused else f"{row['training_seconds']:.0f}",
                     "images/s": "—" if refused else f"{row['scoring_images_per_second']:.0f}"})
    return rows
