"""Batch scoring of many images: the single-process `score` against `score --engine dask` on this machine.

Writes ``--images`` generated demo parts (20,000 by default; one in ten with a defect) as PNG files, then
scores them with the demo run three ways, each a fresh `python -m core` process as a user starts it:

- plain `score` (one process);
- `score --engine dask --workers 1` and `--workers 2` (a local cluster, the default shard size).

For each it records the wall time from the command's start to its end (cluster start and every worker's
TensorFlow import included), images per second, and peak resident memory: of the process for the plain
path, of each worker (from ``job.json``) and of the client process for the engine. It also checks that
the engine's rows agree with the plain ones: the same verdicts, and the largest score difference.

    python -m benchmarks.batch_scoring [--images 20000] [--out benchmarks/recorded/batch_scoring.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "assets" / "demo_model"
RECORDED = ROOT / "benchmarks" / "recorded" / "batch_scoring.json"


def _write_block(arguments) -> int:
    from PIL import Image

    from core.data.synthetic import DEFECT_TYPES, render_part

    folder, start, count = arguments
    rng = np.random.default_rng(start)
    for index in range(start, start + count):
        defect = DEFECT_TYPES[rng.integers(len(DEFECT_TYPES))] if rng.uniform() < 0.1 else None
        image, _ = render_part(rng, defect=defect)
        buffer = io.BytesIO()
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, "PNG")
        (Path(folder) / f"part_{index:07d}.png").write_bytes(buffer.getvalue())
    return count


def write_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    block = 1000
    jobs = [(str(folder), start, min(block, count - start)) for start in range(0, count, block)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        written = sum(pool.map(_write_block, jobs))
    assert written == count


def _timed(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak resident bytes of the command's process (or of its largest child), and its stderr."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    return seconds, usage.ru_maxrss * 1024, stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RECORDED)
    arguments = parser.parse_args()
    from core.runs.dask_scoring import read_shards
    from core.runs.store import read_scores_csv

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "images"
        started = time.perf_counter()
        write_images(folder, arguments.images)
        print(f"wrote {arguments.images} images in {time.perf_counter() - started:.0f} s", flush=True)
        core = [sys.executable, "-m", "core", "score", "--run", str(RUN), "--data", str(folder)]

        plain_csv = Path(scratch) / "plain.csv"
        seconds, peak, _ = _timed([*core, "--out", str(plain_csv)])
        plain = read_scores_csv(plain_csv)
        results.append({"path": "plain score (one process)", "workers": 1, "seconds": round(seconds, 1),
                        "images_per_second": round(arguments.images / seconds, 1),
                        "peak_memory_mib": {"process": round(peak / 2**20)}})
        print(json.dumps(results[-1]), flush=True)

        for workers in (1, 2):
            out = Path(scratch) / f"shards-{workers}"
            seconds, _, _ = _timed([*core, "--out", str(out), "--engine", "dask", "--workers", str(workers)])
            job = json.loads((out / "job.json").read_text())
            rows = read_shards(out)
            merged = plain.merge(rows, on="path", suffixes=("", "_engine"))
            assert len(merged) == len(plain) == len(rows) == arguments.images
            results.append({
                "path": f"score --engine dask --workers {workers}", "workers": workers, "seconds": round(seconds, 1),
                "images_per_second": round(arguments.images / seconds, 1),
                "images_per_second_after_start": round(arguments.images / job["seconds"], 1),
                "peak_memory_mib": {"client": round(job["client_peak_memory_bytes"] / 2**20),
                                    "per_worker": sorted(round(worker["peak_memory_bytes"] / 2**20)
                                                         for worker in job["workers"].values())},
                "model_loads_per_worker": sorted(worker["model_loads"] for worker in job["workers"].values()),
                "same_verdicts": int((merged["verdict"] == merged["verdict_engine"]).sum()),
                "largest_map_max_difference": float(np.nanmax(np.abs(merged["map_max"] - merged["map_max_engine"]))),
            })
            print(json.dumps(results[-1]), flush=True)

    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps({
        "command": f"python -m benchmarks.batch_scoring --images {arguments.images}",
        "run": "assets/demo_model (NCAE, 64 px grey)", "images": arguments.images,
        "machine": {"cpu_cores": os.cpu_count(), "python": platform.python_version()},
        "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
