"""Every detector's scoring speed and its share of the machine's arithmetic, in one run.

    python -m benchmarks.detector_speed [--data demo] [--out FILE]

For each registered detector, fitted as ``python -m core train --data <set>`` builds it (its working
size and channels from the images) but with one epoch where it trains in epochs (scoring costs the
same whatever the weights), on the demo's test images (the lattice detector, which refuses the demo's
castings, on the generated woven texture's):

- **score end to end**: decoding the files at the working size and ``score`` with maps, as the
  ``score`` command and the pages do: images/s;
- **the network alone**: the forward pass(es) of the network(s) its exported inspector runs
  (``inspector_judge(tf).networks``), batched: images/s, GFLOP per image counted by TensorFlow's
  profiler on the frozen graph, and GFLOP/s achieved;
- **detector maths**: GFLOP per image outside the networks where it dominates (the memory bank's
  search, PaDiM's Mahalanobis distances), counted by hand;
- **share of the roofline**: total GFLOP/s achieved over :data:`ROOFLINE_GFLOPS`, the float32
  matrix-product rate this machine reaches (measured in the same run with a large numpy product).

Written to ``benchmarks/recorded/detector_speed.json``; the README's speed table follows it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from core.quiet import import_tensorflow_quietly

RECORDED = Path(__file__).resolve().parent / "recorded" / "detector_speed.json"


def roofline_gflops() -> float:
    """Float32 matrix-product rate on this machine, GFLOP/s (best of three 2048² products)."""
    rng = np.random.default_rng(0)
    left, right = rng.normal(size=(2, 2048, 2048)).astype(np.float32)
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        left @ right
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - started) / 1e9)
    return round(best, 1)


def graph_flops(network, shape) -> float:
    """Floating-point operations of one forward pass of a Keras ``network`` on one input of ``shape``."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda batch: network(batch, training=False))
    frozen = convert_variables_to_constants_v2(function.get_concrete_function(tf.TensorSpec((1, *shape), tf.float32)))
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    return float(tf.compat.v1.profiler.profile(graph=frozen.graph, options=options).total_float_ops)


def network_input_shape(network, detector) -> tuple:
    shape = tuple(network.inputs[0].shape[1:])
    if None in shape:   # a network that takes any size works at the detector's size
        shape = (int(detector.input_size), int(detector.input_size), shape[-1])
    return shape


def maths_flops(detector, name: str) -> float:
    """GFLOP-sized arithmetic outside the networks, per image: searches and distances, counted by hand."""
    if name == "memory_bank":
        search, (height, width) = detector.bank_search_, detector.grid_shape_
        dim = detector.memory_bank_.shape[1]
        entries = len(detector.memory_bank_)
        if not getattr(search, "exhaustive", True):
            entries = search.probed_cells * entries / len(search.centres) + len(search.centres)
        return 2.0 * height * width * entries * dim
    if name == "padim":
        mean = detector.mean_ if hasattr(detector, "mean_") else None
        if mean is not None:
            positions, dim = int(np.prod(mean.shape[:-1])), int(mean.shape[-1])
            return 2.0 * positions * dim * dim
    return 0.0


def measure(name: str, data, test_paths: list, train_paths: list) -> dict:
    import tensorflow as tf

    from core.data.images import decode_many
    from core.detectors import applies, detector_for_images

    detector = detector_for_images(name, train_paths, seed=0, **({"epochs": 1} if applies(name, "epochs") else {}))
    good = data.load(data.train_good, int(detector.input_size), int(detector.channels))
    try:
        detector.fit(good.images, image_sizes=good.sizes)
    except ValueError as error:   # the lattice detector on parts that do not repeat
        return {"refused": str(error)}
    size, channels = int(detector.input_size), int(detector.channels)
    warm = decode_many(test_paths[:8], size, channels=channels)
    detector.score(warm.images, with_maps=True)
    started = time.perf_counter()
    decoded = decode_many(test_paths, size, channels=channels)
    detector.score(decoded.images, with_maps=True)
    end_to_end = time.perf_counter() - started

    networks = detector.inspector_judge(tf).networks
    network_flops, network_seconds = 0.0, 0.0
    for network in networks:
        shape = network_input_shape(network, detector)
        network_flops += graph_flops(network, shape)
        batch = np.random.default_rng(0).random((32, *shape)).astype(np.float32)
        network.predict_on_batch(batch)
        started = time.perf_counter()
        for _ in range(3):
            network.predict_on_batch(batch)
        network_seconds += (time.perf_counter() - started) / (3 * len(batch))
    extra = maths_flops(detector, name)
    count = len(decoded.images)
    row = {"working_size": size, "channels": channels, "images": count,
           "score_images_per_second": round(count / end_to_end, 1),
           "network_gflop_per_image": round(network_flops / 1e9, 3),
           "maths_gflop_per_image": round(extra / 1e9, 3)}
    if networks:
        row |= {"network_images_per_second": round(1 / network_seconds, 1),
                "network_gflop_per_second": round(network_flops / network_seconds / 1e9, 1)}
    counted = network_flops + extra
    # the lattice detector's FFTs and shifts are not counted: no figure rather than a zero
    row["score_gflop_per_second"] = round(counted * count / end_to_end / 1e9, 1) if counted else None
    return row


def measured_on_the_weave(name: str) -> dict:
    import tempfile

    from core.data.datasets import open_dataset
    from core.data.synthetic import generate_demo_set

    with tempfile.TemporaryDirectory() as scratch, \
            open_dataset(generate_demo_set(Path(scratch) / "texture", seed=0, style="texture")) as weave:
        row = measure(name, weave, [sample.path for sample in weave.test], [sample.path for sample in weave.train_good])
    return row | {"data": "the generated woven texture"}


def markdown_table(recorded: dict) -> str:
    """The README's table: one row per detector, from the recorded file."""
    from core.detectors import label

    def figure(value):
        return "—" if value is None else f"{value:g}"

    lines = ["| detector | working size | `score`, images/s | network alone, images/s | GFLOP per image "
             "(network + maths) | GFLOP/s achieved (`score`) | share of the roofline |", "|---|---|---|---|---|---|---|"]
    for name, row in recorded["detectors"].items():
        gflop = "—" if row["score_gflop_per_second"] is None else \
            f"{row['network_gflop_per_image']:g} + {row['maths_gflop_per_image']:g}"
        share = row.get("share_of_roofline")
        lines.append(f"| {label(name)} | {row['working_size']} px | {figure(row['score_images_per_second'])} | "
                     f"{figure(row.get('network_images_per_second'))} | {gflop} | "
                     f"{figure(row['score_gflop_per_second'])} | {'—' if share is None else f'{share:.0%}'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the README's table from the recorded file")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--detectors", help="comma-separated names (default: every registered detector)")
    parser.add_argument("--out", type=Path, default=RECORDED)
    arguments = parser.parse_args()
    if arguments.table:
        print(markdown_table(json.loads(arguments.out.read_text())))
        return
    import_tensorflow_quietly()
    from core.data.datasets import open_dataset
    from core.detectors import DETECTOR_NAMES

    result = {"command": "python -m benchmarks.detector_speed", "data": arguments.data,
              "roofline_gflop_per_second": roofline_gflops(), "detectors": {}}
    with open_dataset(arguments.data) as data:
        test_paths = [sample.path for sample in data.test]
        train_paths = [sample.path for sample in data.train_good]
        for name in (arguments.detectors.split(",") if arguments.detectors else DETECTOR_NAMES):
            row = measure(name, data, test_paths, train_paths)
            if "refused" in row:   # the lattice detector on parts that do not repeat: timed on the generated weave
                row = measured_on_the_weave(name) | {"refused_on_" + arguments.data: row["refused"]}
            if row.get("score_gflop_per_second") is not None:
                row["share_of_roofline"] = round(row["score_gflop_per_second"] / result["roofline_gflop_per_second"], 3)
            result["detectors"][name] = row
            print(json.dumps({name: row}), flush=True)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
