"""Peak memory and time of ``python -m core score`` on 2,000 and 20,000 small images.

Each count is a folder of PNG files (copies of the demo test images, 128×128), scored by the demo
model into scores.csv, measured with ``/usr/bin/time -v`` (maximum resident set size, wall time).
``--repo DIR`` measures another checkout of the project (for a before/after comparison in one run).

    python -m benchmarks.score_memory [--counts 2000 20000] [--repo DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_folder(folder: Path, count: int) -> Path:
    sources = sorted((ROOT / "assets" / "samples").glob("*.png"))
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        target = folder / f"{index:06d}.png"
        if not target.exists():
            shutil.copyfile(sources[index % len(sources)], target)
    return folder


def measure(repo: Path, folder: Path, out: Path) -> dict:
    environment = os.environ | {"PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "core", "score", "--run",
                             str(repo / "assets" / "demo_model"), "--data", str(folder), "--out", str(out)],
                            cwd=repo, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", result.stderr).group(1)
    seconds = sum(float(part) * 60 ** index for index, part in enumerate(reversed(wall.split(":"))))
    rows = sum(1 for _ in open(out, encoding="utf-8")) - 1
    return {"peak_rss_mb": round(peak_kb / 1024, 1), "wall_seconds": round(seconds, 1), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for count in arguments.counts:
            folder = make_folder(Path(scratch) / f"images-{count}", count)
            figures = measure(arguments.repo.resolve(), folder, Path(scratch) / f"scores-{count}.csv")
            results.append({"images": count, **figures})
            print(json.dumps(results[-1]), file=sys.stderr)
    report = {"command": "python -m benchmarks.score_memory", "repo": str(arguments.repo), "results": results}
    print(json.dumps(report, indent=1))
    if arguments.out:
        arguments.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
