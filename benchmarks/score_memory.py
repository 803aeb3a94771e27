"""Peak memory and time of ``python -m core score`` on 2,000 and 20,000 small images, and what slow hosts cost.

Each count is a folder of PNG files (copies of the demo test images, 128×128), scored by the demo
model into scores.csv, measured with ``/usr/bin/time -v`` (maximum resident set size, wall time).
``--repo DIR`` measures another checkout of the project (for a before/after comparison in one run).

``--slow-hosts`` also scores a list of 1,000 local paths, then the same list with 10 URLs on
127.0.0.1 added: 5 on a host that accepts and never answers, 5 on one that sends its headers and
then a byte every half second. With the default time limits (10 s to connect, 30 s to read, a
40 s deadline) and the URLs read concurrently, the second run should end within a minute of the
first, with 1,010 rows, the 10 URLs INVALID with their reason.

    python -m benchmarks.score_memory [--counts 2000 20000] [--slow-hosts] [--repo DIR] [--out FILE]
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
import threading
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


def measure(repo: Path, folder: Path | str, out: Path) -> dict:
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


class SlowHosts:
    """Two hosts on 127.0.0.1: one accepts and never answers, one trickles a byte every half second."""

    def __init__(self):
        import socket

        self._stop = threading.Event()
        self._held = []
        self.silent, self.trickling = socket.socket(), socket.socket()
        for listener, serve in ((self.silent, self._hold), (self.trickling, self._trickle)):
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            listener.settimeout(0.2)
            threading.Thread(target=self._accept, args=(listener, serve), daemon=True).start()

    def urls(self, each: int) -> list[str]:
        return [f"http://127.0.0.1:{listener.getsockname()[1]}/part{index}.png"
                for listener in (self.silent, self.trickling) for index in range(each)]

    def close(self) -> None:
        self._stop.set()
        for connection in self._held:
            connection.close()
        self.silent.close()
        self.trickling.close()

    def _accept(self, listener, serve) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    def _hold(self, connection) -> None:
        self._held.append(connection)

    def _trickle(self, connection) -> None:
        with connection:
            try:
                connection.recv(4096)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                while not self._stop.wait(0.5):
                    connection.sendall(b"\x00")
            except OSError:
                return


def measure_slow_hosts(repo: Path, scratch: Path) -> dict:
    """1,000 local paths, then the same with 10 slow URLs; wall times, rows and what the URLs' rows say."""
    import csv

    local = [str(path) for path in sorted(make_folder(scratch / "images-1000", 1000).glob("*.png"))]
    hosts = SlowHosts()
    try:
        urls = hosts.urls(5)
        (scratch / "local.txt").write_text("\n".join(local) + "\n")
        (scratch / "mixed.txt").write_text("\n".join(local[:500] + urls + local[500:]) + "\n")
        local_only = measure(repo, f"@{scratch / 'local.txt'}", scratch / "local.csv")
        mixed = measure(repo, f"@{scratch / 'mixed.txt'}", scratch / "mixed.csv")
    finally:
        hosts.close()
    with open(scratch / "mixed.csv", encoding="utf-8", newline="") as handle:
        remote_rows = [row for row in csv.DictReader(handle) if row["path"].startswith("http://")]
    return {"local_only": local_only, "with_10_slow_urls": mixed,
            "extra_seconds": round(mixed["wall_seconds"] - local_only["wall_seconds"], 1),
            "slow_url_verdicts": sorted({row["verdict"] for row in remote_rows}),
            "slow_url_reasons": sorted({row["reason"].split(" (", 1)[-1].rstrip(".)") for row in remote_rows})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--slow-hosts", action="store_true", help="also time 1,000 paths with 10 slow URLs")
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
        slow = measure_slow_hosts(arguments.repo.resolve(), Path(scratch)) if arguments.slow_hosts else None
    report = {"command": "python -m benchmarks.score_memory", "repo": str(arguments.repo), "results": results}
    if slow is not None:
        report["slow_hosts"] = slow
    print(json.dumps(report, indent=1))
    if arguments.out:
        arguments.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
