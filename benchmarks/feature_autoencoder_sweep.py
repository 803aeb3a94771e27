"""Choosing the feature-space NCAE's settings across eight image sets, never on one set's test images.

Sets: the three the project generates (casting, texture, object), the four ``gimp-data`` photographs
(brick, burlap, granite, walnut; :mod:`benchmarks.real_photos`) and the ELPV monocrystalline solar
cells (:mod:`benchmarks.industrial`). For each setting (feature layers, grid, widths, code size) the
detector is fitted on each set's good training images with seed 0, and the image AUROC of every score
column it writes is measured on that set's test images.

The setting and the primary column are chosen by the **mean image AUROC over the eight sets**. So that
this choice is not judged on the images it was made on, each set also gets a *leave-one-set-out*
figure: the AUROC on that set of the setting and column that win on the other seven. Those figures are
the honest ones; the mean over all eight flatters the winner.

    python -m benchmarks.feature_autoencoder_sweep [--out benchmarks/recorded/feature_autoencoder_sweep.json]
    python -m benchmarks.feature_autoencoder_sweep --settings "NAME" ...   # measure these, keep the other rows
    python -m benchmarks.feature_autoencoder_sweep --summary    # the choice, from the recorded file
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from core.quiet import import_tensorflow_quietly

RECORDED = Path(__file__).resolve().parent / "recorded" / "feature_autoencoder_sweep.json"
# What is compared. The first is the prototype's setting (stages 2 and 3 of EfficientNet-Lite0 on the stride-8
# grid); then the stride-4 grid, deeper stages (3 and 5) on their stride-8 and stride-16 grids, and a wider code.
# The first five were measured before border calibration existed, so they are run without it; the last is the
# wide setting with the residual rescaled per ring of positions from the border (the memory bank's calibration).
SETTINGS = {
    "stages 2+3, stride 8": dict(feature_layers=("block_2_out", "block_4_out"), grid="coarsest", border_rings=0),
    "stages 2+3, stride 4": dict(feature_layers=("block_2_out", "block_4_out"), grid="finest", border_rings=0),
    "stages 3+5, stride 8": dict(feature_layers=("block_4_out", "block_10_out"), grid="finest", border_rings=0),
    "stages 3+5, stride 16": dict(feature_layers=("block_4_out", "block_10_out"), grid="coarsest", border_rings=0),
    "stages 2+3, stride 8, wide": dict(feature_layers=("block_2_out", "block_4_out"), grid="coarsest",
                                       widths=(256, 128), bottleneck=64, border_rings=0),
    "stages 2+3, stride 8, wide, border calibration": dict(feature_layers=("block_2_out", "block_4_out"),
                                                           grid="coarsest", widths=(256, 128), bottleneck=64,
                                                           border_rings=4),
}


def image_sets(scratch: Path) -> dict[str, Path]:
    from benchmarks.industrial import monocrystalline_set
    from benchmarks.real_photos import every_image_set

    sets = every_image_set(scratch)
    monocrystalline_set(scratch / "elpv")
    return sets | {"elpv:mono": scratch / "elpv"}


class _CachedFeatures:
    """Wraps a detector's feature extractor so that the same images at the same layers and grid are run through
    the backbone once for the whole sweep (the autoencoder is what changes between settings)."""

    store: dict = {}

    def __init__(self, extractor, key):
        self.extractor, self.key = extractor, key

    def __getattr__(self, name):
        return getattr(self.extractor, name)

    def __call__(self, images, should_stop=None):
        fingerprint = hashlib.sha1(np.ascontiguousarray(images[:, ::17, ::17]).tobytes()).hexdigest()
        key = (self.key, images.shape, fingerprint)
        if key not in self.store:
            self.store[key] = (self.extractor(images), self.extractor.layer_scales)
        features, scales = self.store[key]
        self.extractor.layer_scales = scales
        return features


def measure(name: str, root: Path, setting: dict, model: str) -> dict:
    from core.data.datasets import open_dataset
    from core.detectors import new_detector
    from core.evaluation.evaluate import load_test_images
    from sklearn.metrics import roc_auc_score

    detector = new_detector(f"{model}_features", seed=0, **setting)
    original = detector._new_extractor

    def cached():
        return _CachedFeatures(original(), (name, tuple(detector.feature_layers), detector.grid))

    detector._new_extractor = cached
    with open_dataset(root) as data:
        good = data.load(data.train_good, detector.input_size, detector.channels).images
        test = load_test_images(data, detector.input_size, detector.channels)
    started = time.perf_counter()
    detector.fit(good)
    seconds = time.perf_counter() - started
    table = detector.score(test.images).table
    defect = test.labels == "defect"
    return {"aurocs": {column: round(float(roc_auc_score(defect, np.nan_to_num(table[column].to_numpy()))), 4)
                       for column in table.columns},
            "training_seconds": round(seconds, 1), "epochs_run": len(detector.history_.get("loss", []))}


def choose(rows: list[dict], model: str) -> dict:
    """The setting and column with the best mean AUROC over the sets, and each set's leave-one-set-out figure."""
    rows = [row for row in rows if row["model"] == model]
    sets = sorted({row["set"] for row in rows})
    auroc = {(row["setting"], column, row["set"]): value for row in rows for column, value in row["aurocs"].items()}
    candidates = sorted({(setting, column) for setting, column, _ in auroc})

    def best(over):
        return max(candidates, key=lambda candidate: np.mean([auroc.get((*candidate, name), 0.0) for name in over]))

    winner = best(sets)
    held_out = {}
    for name in sets:
        chosen = best([other for other in sets if other != name])
        held_out[name] = {"setting": chosen[0], "column": chosen[1], "image_auroc": auroc[(*chosen, name)]}
    return {"setting": winner[0], "column": winner[1],
            "mean_image_auroc": round(float(np.mean([auroc[(*winner, name)] for name in sets])), 4),
            "per_set": {name: auroc[(*winner, name)] for name in sets}, "leave_one_set_out": held_out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RECORDED)
    parser.add_argument("--models", nargs="+", default=["ncae", "cae"])
    parser.add_argument("--summary", action="store_true", help="print the choice from the recorded file")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS),
                        help="measure only these settings; the recorded file's rows of the others are kept")
    arguments = parser.parse_args()
    if arguments.summary:
        rows = json.loads(arguments.out.read_text())["rows"]
        for model in sorted({row["model"] for row in rows}):
            print(model, json.dumps(choose(rows, model), indent=1))
        return
    import_tensorflow_quietly()
    rows = [] if set(arguments.settings) == set(SETTINGS) else [
        row for row in json.loads(arguments.out.read_text())["rows"]
        if row["setting"] not in arguments.settings or row["model"] not in arguments.models]
    with tempfile.TemporaryDirectory() as scratch:
        for name, root in image_sets(Path(scratch)).items():
            for label in arguments.settings:
                setting = SETTINGS[label]
                for model in arguments.models:
                    row = {"set": name, "setting": label, "model": model} | measure(name, root, setting, model)
                    rows.append(row)
                    print(json.dumps({key: row[key] for key in ("set", "setting", "model", "training_seconds")}
                                     | {key: row["aurocs"][key] for key in ("mean", "map_max", "stat_distance")}),
                          flush=True)
            _CachedFeatures.store.clear()
    result = {"command": "python -m benchmarks.feature_autoencoder_sweep", "settings": {
        label: {key: list(value) if isinstance(value, tuple) else value for key, value in setting.items()}
        for label, setting in SETTINGS.items()}, "rows": rows}
    result["chosen"] = {model: choose(rows, model) for model in sorted({row["model"] for row in rows})}
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=1) + "\n")
    for model, chosen in result["chosen"].items():
        print(model, json.dumps(chosen, indent=1))


if __name__ == "__main__":
    main()
