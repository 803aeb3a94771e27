"""Every detector on real industrial images: electroluminescence images of monocrystalline solar cells (ELPV).

The ELPV data set (Buerhop-Lutz et al. 2018; Deitsch et al. 2019) holds 2,624 electroluminescence
images of solar cells, 300×300 grey, each with an expert's defect probability (0, 1/3, 2/3 or 1). It
ships in the PyPI wheel ``elpv-dataset``; this script downloads the wheel with ``pip download`` into a
cache folder outside the repository and reads ``labels.csv`` and the images straight from it. **The
images are CC BY-NC-SA 4.0: they are never committed, shipped or copied into the repository.**

Protocol (fixed before any detector was run on it):

- the **monocrystalline** cells only: the polycrystalline cells are held back as an independent check
  of what is built on this benchmark, and are neither trained, tuned nor reported on here;
- good = defect probability 0, split 70 % train / 30 % test with a fixed seed (0); defects = probability
  ≥ 2/3, all in the test set; the uncertain 1/3 cells are left out;
- every detector with ``python -m core train``'s defaults (``--seed`` 0, 1, 2), judged by
  ``python -m core evaluate`` on its primary score; a detector that refuses the images is recorded
  with its reason.

    python -m benchmarks.industrial [--detectors NAME ...] [--seeds 3] [--out benchmarks/recorded/industrial.json]
    python -m benchmarks.industrial --table    # the README's row, from the recorded file
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

WHEEL = "elpv-dataset==1.0.0.post1"
CACHE = Path(os.environ.get("RESIDUAL_LAB_BENCHMARK_CACHE", Path.home() / ".cache" / "residual-lab")) / "elpv"
SPLIT_SEED = 0
TRAIN_SHARE = 0.7


def wheel_path() -> Path:
    """The ELPV wheel, downloaded from PyPI into the cache on first use."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob("elpv_dataset-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(CACHE)],
                       check=True)
        found = sorted(CACHE.glob("elpv_dataset-*.whl"))
    return found[-1]


def monocrystalline_set(root: Path) -> dict:
    """Write the protocol's MVTec-layout folder under ``root`` (train/good, test/good, test/defect); its counts."""
    import numpy as np

    with zipfile.ZipFile(wheel_path()) as wheel:
        rows = [line.split() for line in wheel.read("elpv_dataset/data/labels.csv").decode().splitlines()
                if line.strip()]
        mono = [(name, float(probability)) for name, probability, kind in rows if kind == "mono"]
        good = sorted(name for name, probability in mono if probability == 0)
        defects = sorted(name for name, probability in mono if probability >= 2 / 3 - 1e-9)
        order = np.random.default_rng(SPLIT_SEED).permutation(len(good))
        train_count = round(TRAIN_SHARE * len(good))
        parts = {"train/good": [good[index] for index in order[:train_count]],
                 "test/good": [good[index] for index in order[train_count:]], "test/defect": defects}
        for folder, names in parts.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            for name in names:
                (root / folder / Path(name).name).write_bytes(wheel.read(f"elpv_dataset/data/{name}"))
    return {folder: len(names) for folder, names in parts.items()}


def cli(*arguments) -> tuple[int, str, str]:
    from core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(argument) for argument in arguments])
    return code, out.getvalue(), err.getvalue()


def measure(data: Path, runs: Path, name: str, seed: int) -> dict:
    """Train ``name`` with ``train``'s defaults and evaluate it; its primary score's figures, or why it refused."""
    from core.detectors import detector_class

    run = runs / f"{name}-{seed}"
    started = time.perf_counter()
    code, _, error = cli("train", "--data", data, "--model", name, "--out", run, "--seed", seed)
    if code != 0:
        return {"seed": seed, "refused": error.strip().splitlines()[-1] if error.strip() else f"exit {code}"}
    seconds = time.perf_counter() - started
    code, out, error = cli("evaluate", "--run", run, "--data", data, "--json")
    if code != 0:
        raise RuntimeError(error)
    report = json.loads(out)
    manifest = json.loads((run / "manifest.json").read_text())
    primary = manifest.get("primary_score") or detector_class(name).primary_score
    return {"seed": seed, "primary_score": primary, "image_auroc": report["scores"][primary]["image_auroc"],
            "image_auprc": report["scores"][primary]["image_auprc"],
            "image_auroc_by_column": {column: figures["image_auroc"] for column, figures in report["scores"].items()},
            "training_seconds": round(seconds, 1), "working_size": manifest["input_size"],
            "patch_size": manifest["parameters"].get("patch_size")}


RECORDED = Path(__file__).resolve().parent / "recorded" / "industrial.json"


def markdown_table(path: Path = RECORDED) -> str:
    """Image AUROC on the primary score per detector, mean ± std over the seeds (each seed's figure in brackets)."""
    from core.detectors import label

    detectors = json.loads(path.read_text())["detectors"]
    header = "| set | " + " | ".join(label(name) for name in detectors) + " |"
    cells = []
    for entry in detectors.values():
        if "refused" in entry:
            cells.append("refused")
            continue
        seeds = ", ".join(f"{seed['image_auroc']:.2f}" for seed in entry["per_seed"])
        cells.append(f"{entry['image_auroc']['mean']:.3f} ± {entry['image_auroc']['std']:.3f} ({seeds})")
    best = max((entry["image_auroc"]["mean"] for entry in detectors.values() if "image_auroc" in entry), default=None)
    cells = [f"**{cell.split(' (')[0]}** ({cell.split(' (')[1]}" if best is not None and cell.startswith(f"{best:.3f}")
             else cell for cell in cells]
    return "\n".join([header, "|---" * (len(detectors) + 1) + "|",
                      "| solar cells, monocrystalline (ELPV) | " + " | ".join(cells) + " |"])


def main() -> None:
    from core.detectors import DETECTOR_NAMES
    from core.quiet import import_tensorflow_quietly

    if "--table" in sys.argv[1:]:
        print(markdown_table())
        return

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", default=list(DETECTOR_NAMES), choices=DETECTOR_NAMES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    import_tensorflow_quietly()
    import numpy as np

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "elpv_mono"
        counts = monocrystalline_set(data)
        print(json.dumps(counts), file=sys.stderr)
        for name in arguments.detectors:
            seeds = []
            for seed in range(arguments.seeds):
                seeds.append(measure(data, Path(scratch) / "runs", name, seed))
                print(name, json.dumps(seeds[-1]), file=sys.stderr)
                if "refused" in seeds[-1]:
                    break
            values = [entry["image_auroc"] for entry in seeds if "image_auroc" in entry]
            results[name] = {"per_seed": seeds} | (
                {"image_auroc": {"mean": float(np.mean(values)), "std": float(np.std(values))}} if values else
                {"refused": seeds[0]["refused"]})
    report = {"command": "python -m benchmarks.industrial", "data": "ELPV monocrystalline cells (elpv-dataset "
              "1.0.0.post1, CC BY-NC-SA 4.0, downloaded at benchmark time)", "protocol": {
                  "good": "defect probability 0", "defect": "defect probability >= 2/3", "left_out": "probability 1/3",
                  "train_share_of_good": TRAIN_SHARE, "split_seed": SPLIT_SEED, "counts": counts,
                  "settings": "python -m core train defaults, --seed 0..n-1; evaluate on the primary score"},
              "detectors": results}
    if arguments.out and arguments.out.is_file():   # the other detectors' recorded figures stay
        report["detectors"] = json.loads(arguments.out.read_text())["detectors"] | results
    text = json.dumps(report, indent=1)
    print(text)
    if arguments.out:
        arguments.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
