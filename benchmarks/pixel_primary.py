"""Can the pixel NCAE's primary score stop ranking defects as normal? Candidates measured across eight sets.

On the ELPV solar cells the pixel NCAE's ``map_max`` is near chance: bright, finely textured good cells carry
more reconstruction error everywhere than a darkened defective cell does at its worst spot. Candidates, each
computed from the same fitted NCAE's maps, none using a label:

- ``map_max``: the largest value of the smoothed |residual| (today's primary score);
- ``peak_contrast``: ``map_max`` over the image's own median smoothed |residual|, so a cell that is rough all
  over no longer looks worse than a calm cell with one bad spot;
- ``dark_peak`` / ``bright_peak``: the largest smoothed residual darker / brighter than the reconstruction;
- ``stat_distance``: the residual statistics' distance from the held-out good images' (a global term).

Each NCAE is trained as ``train`` trains it (its defaults, the images' native resolution, seed 0) on the
sets of :func:`benchmarks.feature_autoencoder_sweep.image_sets`. The candidate with the best mean image AUROC
over the sets would be chosen; each set's leave-one-set-out figure (the AUROC of the candidate that wins on
the other seven) is the honest one.

    python -m benchmarks.pixel_primary [--out benchmarks/recorded/pixel_primary.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from core.quiet import import_tensorflow_quietly

RECORDED = Path(__file__).resolve().parent / "recorded" / "pixel_primary.json"
CANDIDATES = ("map_max", "peak_contrast", "dark_peak", "bright_peak", "stat_distance")


def candidates(result, floor: float) -> dict[str, np.ndarray]:
    """Every candidate score for a scored batch (its table, smoothed |residual| maps and signed residuals)."""
    from scipy import ndimage

    maps = result.anomaly_maps.reshape(len(result.anomaly_maps), -1)
    signed = np.stack([ndimage.gaussian_filter(residual, 2.0) for residual in result.residuals])
    signed = signed.reshape(len(signed), -1)
    return {"map_max": result.table["map_max"].to_numpy(),
            "peak_contrast": maps.max(axis=1) / (np.median(maps, axis=1) + floor),
            "dark_peak": (-signed).max(axis=1), "bright_peak": signed.max(axis=1),
            "stat_distance": result.table["stat_distance"].to_numpy()}


def measure(root: Path, model: str) -> dict:
    from sklearn.metrics import roc_auc_score

    from core.data.datasets import open_dataset
    from core.detectors import detector_for_images
    from core.evaluation.evaluate import load_test_images

    with open_dataset(root) as data:
        detector = detector_for_images(model, [sample.path for sample in data.train_good], seed=0)
        good = data.load(data.train_good, int(detector.input_size), detector.channels).images
        test = load_test_images(data, int(detector.input_size), detector.channels)
    detector.fit(good)
    floor = 0.01 * float(detector.map_scales_["anomaly"])   # 1 % of the run's own map scale: no division by ~0
    scores = candidates(detector.score(test.images, with_maps=True), floor)
    defect = test.labels == "defect"
    return {"input_size": int(detector.input_size), "patch_size": getattr(detector, "patch_size", None),
            "image_auroc": {name: round(float(roc_auc_score(defect, np.nan_to_num(values))), 4)
                            for name, values in scores.items()}}


def choose(rows: list[dict]) -> dict:
    sets = [row["set"] for row in rows]
    auroc = {(row["set"], name): row["image_auroc"][name] for row in rows for name in CANDIDATES}

    def best(over):
        return max(CANDIDATES, key=lambda name: np.mean([auroc[(other, name)] for other in over]))

    return {"best_over_all_sets": best(sets),
            "mean_image_auroc": {name: round(float(np.mean([auroc[(s, name)] for s in sets])), 4) for name in CANDIDATES},
            "leave_one_set_out": {name: {"candidate": best([s for s in sets if s != name]),
                                         "image_auroc": auroc[(name, best([s for s in sets if s != name]))]}
                                  for name in sets}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RECORDED)
    parser.add_argument("--model", default="ncae", choices=("ncae", "cae"))
    arguments = parser.parse_args()
    import_tensorflow_quietly()
    from benchmarks.feature_autoencoder_sweep import image_sets

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, root in image_sets(Path(scratch)).items():
            rows.append({"set": name, "model": arguments.model} | measure(root, arguments.model))
            print(json.dumps(rows[-1]), flush=True)
    result = {"command": f"python -m benchmarks.pixel_primary --model {arguments.model}", "rows": rows,
              "choice": choose(rows)}
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["choice"], indent=1))


if __name__ == "__main__":
    main()
