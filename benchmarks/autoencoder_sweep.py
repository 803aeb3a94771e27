"""The sweep behind the NCAE's default capacity and the memory bank's coreset ratio, as JSON.

    python -m benchmarks.autoencoder_sweep [--styles casting,texture,object] [--out FILE]

One factor at a time around the baseline (input 64, widths 16/48/64, bottleneck 8, MSE, no
denoising): narrower and wider bottleneck, wider and deeper encoder, SSIM loss, denoising, and a
larger input. Each configuration trains one NCAE (seed 0) on each generated image set and reports
image AUROC of the fixed ``max`` column and of every column, pixel AUROC / AUPRO of its smoothed
residual map, training time, and the memory bank built on its encoder at several coreset ratios.
The recorded run is ``benchmarks/recorded/autoencoder_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

from core.quiet import import_tensorflow_quietly

BASELINE = {"input_size": 64, "widths": (16, 48, 64), "bottleneck": 8, "loss": "mse", "noise_std": 0.0}
VARIANTS = {
    "baseline": {},
    "bottleneck_4": {"bottleneck": 4},
    "bottleneck_16": {"bottleneck": 16},
    "wider_32_64_96": {"widths": (32, 64, 96)},
    "deeper_16_32_48_64": {"widths": (16, 32, 48, 64)},
    "ssim_loss": {"loss": "ssim"},
    "denoising_0.05": {"noise_std": 0.05},
    "input_96": {"input_size": 96},
}
CORESET_RATIOS = (0.01, 0.05)


def sweep(styles, variants, out: Path | None) -> dict:
    import_tensorflow_quietly()
    from core.evaluation.compare import AUTOENCODER_SCORE_COLUMN
    from core.evaluation.evaluate import evaluate_detector, load_test_images
    from core.data.datasets import open_dataset
    from core.detectors.autoencoder.detector import ResidualDetector
    from core.files import atomic_write_json
    from core.detectors.memory_bank.detector import MEMORY_BANK_COLUMN, MemoryBankDetector
    from core.evaluation.metrics import threshold_summary
    from core.data.synthetic import generate_demo_set

    report = {"machine": {"python": platform.python_version(), "processor": platform.processor() or "unknown"},
              "baseline": {key: list(value) if isinstance(value, tuple) else value for key, value in BASELINE.items()},
              "results": {}}
    if out is not None and out.is_file():  # resume: keep what an interrupted sweep already measured
        report["results"] = json.loads(out.read_text(encoding="utf-8")).get("results", {})
    with tempfile.TemporaryDirectory() as scratch:
        for style in styles:
            root = generate_demo_set(Path(scratch) / style, seed=0, style=style)
            dataset = open_dataset(root)
            report["results"].setdefault(style, {})
            for name in variants:
                if name in report["results"][style]:
                    continue
                params = BASELINE | VARIANTS[name]
                size = params["input_size"]
                good = dataset.load(dataset.train_good, size).images
                test = load_test_images(dataset, size)
                detector = ResidualDetector(model="ncae", seed=0, **params).fit(good)
                figures, result = evaluate_detector(detector, test, AUTOENCODER_SCORE_COLUMN)
                entry = figures | {"training_seconds": detector.training_seconds_,
                                   "epochs_run": len(detector.history_["loss"]),
                                   "image_auroc_by_column": {column: threshold_summary(result.table[column].to_numpy(),
                                                                                       test.labels)["image_auroc"]
                                                             for column in result.table.columns},
                                   "memory_bank": {}}
                for ratio in CORESET_RATIOS:
                    bank = MemoryBankDetector(detector, coreset_ratio=ratio).fit(good)
                    bank_figures, _ = evaluate_detector(bank, test, MEMORY_BANK_COLUMN)
                    entry["memory_bank"][str(ratio)] = bank_figures | {"fit_seconds": bank.training_seconds_}
                report["results"][style][name] = entry
                print(json.dumps({"style": style, "variant": name, "image_auroc_max": entry["image_auroc"],
                                  "pixel_auroc": entry["pixel_auroc"],
                                  "memory_bank_auroc": {ratio: value["image_auroc"]
                                                        for ratio, value in entry["memory_bank"].items()},
                                  "seconds": round(entry["training_seconds"], 1)}), flush=True)
                if out is not None:
                    atomic_write_json(out, report)
            dataset.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", default="casting,texture,object")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here, updated after each run")
    arguments = parser.parse_args()
    report = sweep(arguments.styles.split(","), arguments.variants.split(","), arguments.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
