"""Speed of the core engine, printed as one JSON object.

    python -m benchmarks.core_speed [--quick]

- training images/s and scoring images/s (residual statistics and stat_distance included) at the
  default input size, on the demo generator's images;
- NeighborConv2D fused (one 3×3 convolution, centre tap zeroed) against the reference formulation
  (8 shifted copies + 1×1 convolution), same weights, same run: milliseconds per batch and ratio;
- threshold look-up latency with 100,000 scores (one O(n log n) preparation, then O(log n) each).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from core.quiet import import_tensorflow_quietly


def _best_of(function, repeats):
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def training_and_scoring(quick: bool) -> dict:
    from core.defaults import DEFAULT_INPUT_SIZE
    from core.detectors.autoencoder.detector import ResidualDetector
    from core.data.synthetic import render_part

    rng = np.random.default_rng(0)
    count = 64 if quick else 200
    images = np.stack([render_part(rng, DEFAULT_INPUT_SIZE)[0] for _ in range(count)])
    epochs = 2 if quick else 5
    detector = ResidualDetector(epochs=epochs, patience=epochs)
    detector.fit(images)
    trained_per_epoch = detector.n_train_images_
    images_per_second_training = trained_per_epoch * len(detector.history_["loss"]) / detector.training_seconds_
    detector.score(images[:32])  # warm-up: graph tracing is a one-off cost
    scoring_seconds = _best_of(lambda: detector.score(images), 3)
    return {"input_size": DEFAULT_INPUT_SIZE, "training_images": trained_per_epoch, "epochs": epochs,
            "training_images_per_second": round(images_per_second_training, 1),
            "scoring_images": count, "scoring_images_per_second": round(count / scoring_seconds, 1)}


def neighbor_conv_fused_vs_reference(quick: bool) -> list[dict]:
    import keras
    import tensorflow as tf

    from core.detectors.autoencoder.layers import NeighborConv2D, neighbor_conv_reference

    results = []
    for channels, filters in ((1, 32), (16, 32)):
        batch = np.random.default_rng(0).random((32, 128, 128, channels)).astype("float32")
        layer = NeighborConv2D(filters)
        layer.build(batch.shape)
        kernel, bias = layer.kernel, layer.bias
        fused = tf.function(lambda x, layer=layer: layer(x))
        reference = tf.function(lambda x, kernel=kernel, bias=bias: neighbor_conv_reference(x, kernel, bias))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(fused(batch)),
                                   keras.ops.convert_to_numpy(reference(batch)), rtol=1e-4, atol=1e-4)
        repeats = 5 if quick else 20
        fused_seconds = _best_of(lambda: fused(batch).numpy(), repeats)
        reference_seconds = _best_of(lambda: reference(batch).numpy(), repeats)
        results.append({"batch_shape": list(batch.shape), "filters": filters,
                        "fused_ms_per_batch": round(fused_seconds * 1000, 2),
                        "reference_ms_per_batch": round(reference_seconds * 1000, 2),
                        "reference_over_fused": round(reference_seconds / fused_seconds, 2)})
    return results


def threshold_lookup(quick: bool) -> dict:
    from core.evaluation.metrics import ThresholdTable

    rng = np.random.default_rng(0)
    count = 100_000
    labels = rng.random(count) < 0.1
    scores = rng.normal(labels * 1.5, 1.0)
    started = time.perf_counter()
    table = ThresholdTable(scores, labels)
    preparation = time.perf_counter() - started
    thresholds = rng.uniform(-3, 4, 2_000 if quick else 20_000)
    started = time.perf_counter()
    for threshold in thresholds:
        table.at(threshold)
    per_lookup = (time.perf_counter() - started) / len(thresholds)
    return {"scores": count, "preparation_ms": round(preparation * 1000, 2),
            "lookup_us": round(per_lookup * 1e6, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and images (a smoke run)")
    arguments = parser.parse_args()
    import_tensorflow_quietly()
    import tensorflow as tf

    result = {
        "machine": {"python": platform.python_version(), "tensorflow": tf.__version__,
                    "cpus": __import__("os").cpu_count()},
        "training_and_scoring": training_and_scoring(arguments.quick),
        "neighbor_conv": neighbor_conv_fused_vs_reference(arguments.quick),
        "threshold_lookup": threshold_lookup(arguments.quick),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
