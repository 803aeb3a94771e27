"""Native resolution and colour, shown rather than claimed (issue: images as they come off the line).

1. **High resolution.** ``demo-data --image-size 512`` (pinholes of 1–2 px radius, 1 px hairline
   cracks). The NCAE trained on 64 px patches and judged on whole 512 px images, against the old
   path: the whole image shrunk to 64 px.
2. **Colour.** ``demo-data --colour`` (a ``colour_stain`` of the metal's own luma). The NCAE at the
   native 128 px in colour (``channels=3``) against the same in grey.
3. **Real photographs** (:mod:`benchmarks.real_photos`: brick, burlap, granite, walnut crops with pasted
   defects, none made by the project's generator). The NCAE at what ``train`` chooses without options
   (native 96 px, 64 px patches, colour), against the recorded 64 px grey figures of
   ``benchmarks/recorded/real_surfaces_ncae.json`` (the same sets; the mean of 3 seeds there, seed 0 here).
4. **Speed at 512 px.** Scoring whole images the way ``python -m core score`` does (decode, frame
   check, network, residual statistics, maps) in images/s, the network's forward pass alone in
   images/s and GFLOP/s, and the residual statistics against their earlier formulation (``** 3``,
   ``** 4`` over a whole 64-image batch at once), in one run. The training time is in (1).

Every figure is image AUROC on the detector's primary score (``map_max``, fixed in advance), per
defect type, on the test images; the defaults are the command line's (nothing tuned on these
sets). Written to ``benchmarks/recorded/native_resolution.json``.

    python -m benchmarks.native_resolution [--only high_resolution|colour|speed] [--out FILE] [--seed 0]

``--only`` measures one part and keeps the others already recorded in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from core.quiet import import_tensorflow_quietly

RECORDED = Path(__file__).resolve().parent / "recorded" / "native_resolution.json"


def network_flops(network, height: int, width: int) -> float:
    """Multiply–adds × 2 of one forward pass on a ``height``×``width`` image (convolutions only; they are
    all but a fraction of a percent of the work)."""
    import keras

    from core.detectors.autoencoder.layers import NeighborConv2D

    flops, scale = 0.0, 1.0   # scale: this layer's output side relative to the input's
    for layer in network.layers:
        if isinstance(layer, (keras.layers.Conv2D, NeighborConv2D)) and not isinstance(layer, keras.layers.Conv2DTranspose):
            kernel = layer.kernel.shape
            stride = layer.strides[0] if hasattr(layer, "strides") else 1
            scale /= stride
            flops += 2 * kernel[0] * kernel[1] * kernel[2] * kernel[3] * (height * scale) * (width * scale)
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            kernel = layer.kernel.shape   # (k, k, out, in), applied at the input's resolution
            flops += 2 * kernel[0] * kernel[1] * kernel[2] * kernel[3] * (height * scale) * (width * scale)
            scale *= layer.strides[0]
    return flops


def per_type_auroc(table, samples, column: str) -> dict:
    from core.evaluation.metrics import threshold_summary

    labels = np.array([sample.label for sample in samples])
    types = np.array([sample.defect_type for sample in samples])
    scores = table[column].to_numpy()
    figures = {"all": threshold_summary(scores, labels)["image_auroc"]}
    for kind in sorted(set(types[labels == "defect"])):
        chosen = (labels == "good") | (types == kind)
        figures[kind] = threshold_summary(scores[chosen], labels[chosen])["image_auroc"]
    return {key: round(float(value), 4) for key, value in figures.items()}


def train_and_judge(root: Path, seed: int, **parameters) -> dict:
    """Train an NCAE with ``parameters`` on the set's good images and judge its test images."""
    from core.data.datasets import open_dataset
    from core.detectors import new_detector
    from core.evaluation.scoring import score_samples

    detector = new_detector("ncae", seed=seed, **parameters)
    with open_dataset(root) as data:
        good = data.load(data.train_good, detector.input_size, detector.channels).images
        started = time.perf_counter()
        detector.fit(good)
        training = time.perf_counter() - started
        test = [sample for sample in data.test if sample.label in ("good", "defect")]
        started = time.perf_counter()
        scored = score_samples(detector, data, test)
        scoring = time.perf_counter() - started
    return {"parameters": {key: value for key, value in parameters.items()},
            "training_seconds": round(training, 1), "epochs_run": len(detector.history_["loss"]),
            "scoring_images_per_second": round(len(test) / scoring, 1),
            "image_auroc": per_type_auroc(scored.table, scored.kept_samples, detector.primary_score),
            "detector": detector}


def forward_speed(detector, size: int, repeats: int = 5) -> dict:
    """The network's forward pass alone on whole ``size`` px images: images/s and GFLOP/s."""
    images = np.random.default_rng(0).uniform(0.2, 0.8, (8, size, size)).astype(np.float32)
    detector.reconstruct(images)   # traced once
    started = time.perf_counter()
    for _ in range(repeats):
        detector.reconstruct(images)
    seconds = (time.perf_counter() - started) / (repeats * len(images))
    flops = network_flops(detector.model_, size, size)
    return {"images_per_second": round(1 / seconds, 1), "gflop_per_image": round(flops / 1e9, 3),
            "gflop_per_second": round(flops / seconds / 1e9, 1)}


def statistics_before(residuals: np.ndarray) -> dict:
    """The residual statistics as computed before this change (np.power, whole batch at once), for timing."""
    signed = np.asarray(residuals, dtype=np.float64).reshape(len(residuals), -1)
    absolute = np.abs(signed)
    mean = absolute.mean(axis=1)
    centred = absolute - mean[:, None]
    var = (centred ** 2).mean(axis=1)
    safe = np.where(var > 1e-18, var, 1.0)
    return {"skewness": (centred ** 3).mean(axis=1) / safe ** 1.5, "kurtosis": (centred ** 4).mean(axis=1) / safe ** 2,
            "mse": (signed ** 2).mean(axis=1)}


def speed(root: Path, seed: int) -> dict:
    """Scoring speed at 512 px; the weights do not change the cost, so a 3-epoch network is timed."""
    from core.data.datasets import open_dataset
    from core.detectors import new_detector
    from core.detectors.common.residuals import residual_statistics
    from core.evaluation.scoring import score_samples

    detector = new_detector("ncae", seed=seed, input_size=512, patch_size=64, epochs=3)
    with open_dataset(root) as data:
        detector.fit(data.load(data.train_good[:48], 512).images)
        test = [sample for sample in data.test if sample.label in ("good", "defect")]
        score_samples(detector, data, test[:8])   # traced once
        started = time.perf_counter()
        score_samples(detector, data, test)
        end_to_end = len(test) / (time.perf_counter() - started)
        residuals = np.random.default_rng(0).normal(0, 0.02, (64, 512, 512)).astype(np.float32)
        timings = {}
        for name, function in (("before", statistics_before), ("now", residual_statistics)):
            started = time.perf_counter()
            function(residuals)
            timings[name] = (time.perf_counter() - started) / len(residuals) * 1000
    return {"score_images_per_second_512_px": round(end_to_end, 1),
            "what_score_includes": "decode PNG, fit to 512 px, frame check, network, residual statistics, "
                                   "smoothed map, stat_distance (as python -m core score)",
            "test_images": len(test),
            "forward_pass_512_px": forward_speed(detector, 512),
            "residual_statistics_ms_per_image": {"before": round(timings["before"], 2),
                                                 "now": round(timings["now"], 2),
                                                 "speed_up": round(timings["before"] / timings["now"], 1)}}


def real_photos(out: Path, seed: int) -> dict:
    from benchmarks.real_photos import write_real_sets
    from core.data.native import autoencoder_resolution, default_channels

    recorded = Path(__file__).resolve().parent / "recorded" / "real_surfaces_ncae.json"
    before = {row["set"].replace("real:", ""): row["image_auroc"]["mean"]
              for row in json.loads(recorded.read_text())["rows"]} if recorded.is_file() else {}
    rows = {}
    for name, root in write_real_sets(out, seed).items():
        paths = sorted((root / "train" / "good").iterdir())
        size, patch = autoencoder_resolution(paths)
        result = train_and_judge(root, seed, input_size=size, patch_size=patch, channels=default_channels(paths))
        rows[name] = {key: value for key, value in result.items() if key != "detector"} | {
            "image_auroc_64_px_grey_recorded": before.get(name)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RECORDED)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("high_resolution", "colour", "real_photos", "speed"))
    arguments = parser.parse_args()
    import_tensorflow_quietly()
    from core.data.native import autoencoder_resolution
    from core.data.synthetic import generate_demo_set

    report = json.loads(arguments.out.read_text()) if arguments.only and arguments.out.is_file() else {}
    wanted = (arguments.only,) if arguments.only else ("high_resolution", "colour", "real_photos", "speed")
    with tempfile.TemporaryDirectory() as scratch:
        high = generate_demo_set(Path(scratch) / "high", size=512, seed=arguments.seed)
        if "high_resolution" in wanted:
            paths = sorted((high / "train" / "good").iterdir())
            size, patch = autoencoder_resolution(paths)   # what `train` chooses without options: 512, 64 px patches
            native = train_and_judge(high, arguments.seed, input_size=size, patch_size=patch)
            report["high_resolution"] = {
                "set": "demo-data --image-size 512 (pinhole, hairline_crack)",
                "native_512_px_patches": {key: value for key, value in native.items() if key != "detector"},
                "shrunk_to_64_px": {key: value for key, value in
                                    train_and_judge(high, arguments.seed, input_size=64).items() if key != "detector"},
            }
        if "colour" in wanted:
            colour = generate_demo_set(Path(scratch) / "colour", seed=arguments.seed, colour=True)
            report["colour"] = {
                "set": "demo-data --colour (colour_stain keeps the metal's luma)",
                "channels_3": {key: value for key, value in train_and_judge(
                    colour, arguments.seed, input_size=128, patch_size=64, channels=3).items() if key != "detector"},
                "channels_1": {key: value for key, value in train_and_judge(
                    colour, arguments.seed, input_size=128, patch_size=64, channels=1).items() if key != "detector"},
            }
        if "real_photos" in wanted:
            report["real_photos"] = real_photos(Path(scratch) / "real", arguments.seed)
        if "speed" in wanted:
            report["speed"] = speed(high, arguments.seed)
    report["machine"] = "2 CPU cores, no GPU (TensorFlow CPU)"
    text = json.dumps(report, indent=2)
    arguments.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
