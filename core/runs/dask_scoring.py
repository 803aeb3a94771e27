"""Batch scoring on a Dask cluster: ``python -m core score --engine dask``.

Why Dask rather than Ray: it is pure Python (a few MB from PyPI, against Ray's large native wheel and the
Arrow stack Ray Data needs), a local cluster starts in about a second on a laptop or a 2-core box, and the
same code connects to an existing cluster (``--scheduler tcp://host:8786``) however it was started: by
hand, on Kubernetes, on a batch queue. Scoring needs nothing Ray Data adds: the work is embarrassingly
parallel and the result is rows.

How it runs:

- the images are cut into shards of ``shard_size`` in input order; each shard is one task. The default,
  a multiple of the plain path's batch of 256, gives the workers the same batches as a single process
  (on 20,000 images every ``map_max`` came out the same to the bit; other sizes agree to float32
  round-off, because the network's kernels block a batch of another size differently);
- a worker loads the run once (:func:`_detector_of`, cached per worker process) and scores its shards
  with the same code as the single-process ``score`` (:func:`core.runs.pipeline.write_judged_rows`), so
  the rows are the same: frame check, verdicts, unreadable files as ``INVALID`` with their reason;
- each shard is written by its worker as ``part-NNNNN.csv`` (scores.csv's columns, with a header), through
  a temporary file that replaces it only when complete: the folder never holds a half-written shard;
- ``job.json`` says which run, decision, inputs and shard size the folder belongs to. Run the same
  command again after a failure or Ctrl-C and only the missing shards are scored; a different job is
  refused, so shards of two jobs never mix.

The workers must reach the run folder and the images under the same names as this machine: a shared
file system, or URIs (``s3://``, ``gs://``, ``https://`` with the matching fsspec package installed on
every worker).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import threading
import time
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Callable

from core.data.images import is_uri
from core.errors import InputError

JOB_FILE = "job.json"
JOB_FORMAT = "residual-lab-sharded-scores/1"
DEFAULT_SHARD_SIZE = 1024   # four of score's batches of 256: a shard's batches are the plain path's batches
CONNECT_SECONDS = 10
TASKS_IN_FLIGHT_PER_WORKER = 2   # enough to keep every worker busy without holding millions of tasks

_loaded: dict[tuple[str, str], object] = {}
_loads: dict[tuple[str, str], int] = {}
_loading = threading.Lock()


def shard_name(index: int) -> str:
    return f"part-{index:05d}.csv"


@dataclass
class ShardReport:
    """What a worker says about one shard it wrote."""

    index: int
    rows: int
    verdicts: dict[str, int]
    unreadable: list[str]     # each unreadable input's reason, as in its row
    seconds: float
    worker: str
    model_loads: int          # how many times this worker process has loaded the run (1 when cached)
    peak_memory_bytes: int    # the worker process's peak resident memory so far


@dataclass
class JobSummary:
    images: int
    shards: int
    shards_skipped: int       # already written by an earlier run of the same job
    seconds: float
    verdicts: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    workers: dict[str, dict] = field(default_factory=dict)   # per worker: shards, images, model loads, peak memory

    @property
    def images_per_second(self) -> float:
        scored = sum(worker["images"] for worker in self.workers.values())
        return scored / self.seconds if self.seconds > 0 else 0.0


def score_on_dask(run_dir: Path, model_sha256: str, items: list, decision, out: Path, *,
                  scheduler: str | None = None, workers: int | None = None,
                  shard_size: int = DEFAULT_SHARD_SIZE,
                  progress: Callable[[int, int, int, int], None] | None = None) -> JobSummary:
    """Score ``items`` (:class:`core.data.datasets.ScoreItem`) with the run in ``run_dir`` on a Dask cluster
    and write the shards into the folder ``out``.

    ``scheduler``: the address of an existing cluster; without it a local cluster of ``workers`` processes
    (default: one per CPU core) is started and stopped. ``progress(images_done, images, shards_done,
    shards)`` is called as shards finish. ``InputError`` for what the user can fix (a folder of another
    job, workers that cannot reach the run).
    """
    from distributed import Client, LocalCluster, as_completed

    from core.files import atomic_write_json

    if shard_size < 1:
        raise InputError("--shard-size must be at least 1.")
    run_dir, out = Path(run_dir).resolve(), Path(out).absolute()
    # a worker elsewhere does not share this process's working folder: sources go as absolute paths (the
    # names the rows report stay as given)
    items = [item if isinstance(item.source, bytes) or is_uri(item.source) or os.path.isabs(item.source) else
             replace(item, source=os.path.abspath(item.source)) for item in items]
    shards = [items[start:start + shard_size] for start in range(0, len(items), shard_size)]
    job = _job_document(run_dir, model_sha256, items, decision, shard_size, len(shards))
    _check_folder(out, job)
    to_do = [index for index in range(len(shards)) if not (out / shard_name(index)).is_file()]
    summary = JobSummary(len(items), len(shards), len(shards) - len(to_do), 0.0)
    for index in sorted(set(range(len(shards))) - set(to_do)):   # written by an earlier run: counted as well
        _count_written_shard(summary, out / shard_name(index))
    started = time.perf_counter()
    if not to_do:   # every shard is on disk: the job is finished without starting (or reaching) a cluster
        summary.seconds = time.perf_counter() - started
        _finish_job(out, job, summary)
        return summary
    cluster = None
    if scheduler is None:
        count = workers or os.cpu_count() or 1
        threads = max(1, (os.cpu_count() or 1) // count)
        # one thread per task, and TensorFlow told how many cores its worker may use, so that the workers
        # share the machine instead of each starting a thread per core
        cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None,
                               env={"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
                                    "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": str(threads)},
                               silence_logs=50)
    try:
        client = _connect(Client, cluster if cluster is not None else scheduler)
        with client:
            _check_workers(client, run_dir, model_sha256)
            if not (out / JOB_FILE).is_file():
                atomic_write_json(out / JOB_FILE, job | {"state": "running"})
            worker_count = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
            pending = iter(to_do)

            def submit(index: int):
                return client.submit(_score_shard, str(run_dir), model_sha256, shards[index], decision,
                                     str(out / shard_name(index)), index, pure=False, retries=2)

            running = as_completed([submit(index) for index in
                                    islice(pending, worker_count * TASKS_IN_FLIGHT_PER_WORKER)],
                                   loop=client.loop)
            done_images = len(items) - sum(len(shards[index]) for index in to_do)
            done_shards = summary.shards_skipped
            if progress is not None:
                progress(done_images, len(items), done_shards, len(shards))
            for future in running:
                report: ShardReport = future.result()
                future.release()
                _add(summary, report)
                done_images += report.rows
                done_shards += 1
                if progress is not None:
                    progress(done_images, len(items), done_shards, len(shards))
                for index in islice(pending, 1):
                    running.add(submit(index))
    finally:
        if cluster is not None:
            cluster.close()
    summary.seconds = time.perf_counter() - started
    _finish_job(out, job, summary)
    return summary


def _connect(client_class, address):
    """A client of the local cluster or of the scheduler at ``address``; one sentence when it cannot be reached."""
    try:
        return client_class(address, set_as_default=False, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(f"cannot reach the Dask scheduler at {address} within {CONNECT_SECONDS} s "
                         f"({type(error).__name__}); is it running, and is the address right?") from None


def read_shards(out: Path):
    """Every shard of a finished job as one scores.csv-shaped table, in input order."""
    import pandas as pd

    from core.runs.store import read_scores_csv

    job = json.loads((Path(out) / JOB_FILE).read_text())
    tables = [read_scores_csv(Path(out) / shard_name(index)) for index in range(job["shards"])]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _count_written_shard(summary: JobSummary, path: Path) -> None:
    """Add a shard an earlier run of the job wrote to the summary's verdicts and unreadable files: the summary
    (and job.json) is always over every shard of the job, not only those written this time."""
    from core.evaluation.scoring import UNREADABLE
    from core.runs.store import read_scores_csv

    table = read_scores_csv(path)
    if "verdict" in table:
        for verdict, count in table["verdict"].value_counts().items():
            summary.verdicts[verdict] = summary.verdicts.get(verdict, 0) + int(count)
    if "reason" in table:
        summary.unreadable += [reason for reason in table["reason"] if reason.startswith(UNREADABLE)]


def _add(summary: JobSummary, report: ShardReport) -> None:
    for verdict, count in report.verdicts.items():
        summary.verdicts[verdict] = summary.verdicts.get(verdict, 0) + count
    summary.unreadable += report.unreadable
    worker = summary.workers.setdefault(report.worker, {"shards": 0, "images": 0, "seconds": 0.0})
    worker["shards"] += 1
    worker["images"] += report.rows
    worker["seconds"] += report.seconds
    worker["model_loads"] = report.model_loads
    worker["peak_memory_bytes"] = max(worker.get("peak_memory_bytes", 0), report.peak_memory_bytes)


def _job_document(run_dir: Path, model_sha256: str, items: list, decision, shard_size: int, shards: int) -> dict:
    names = hashlib.sha256()
    for item in items:
        names.update(item.name.encode("utf-8", "surrogateescape") + b"\0")
    return {"format": JOB_FORMAT, "run": str(run_dir), "model_sha256": model_sha256,
            "decision": None if decision is None else {"column": decision.column, "threshold": decision.threshold,
                                                       "review_from": decision.review_from},
            "images": len(items), "inputs_sha256": names.hexdigest(), "shard_size": shard_size, "shards": shards}


def _check_folder(out: Path, job: dict) -> None:
    """Refuse ``out`` unless it is new, empty, or holds the same job (then its shards are kept)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; with --engine, --out names the folder the shards go into.")
    if out.is_dir() and any(out.iterdir()):
        try:
            earlier = json.loads((out / JOB_FILE).read_text())
        except (OSError, ValueError):
            raise InputError(f"{out}: is not empty and holds no job of this command; choose a new folder.") from None
        same = {key: earlier.get(key) for key in job} == job
        if not same:
            raise InputError(f"{out}: holds the shards of another job (another run, decision, list of images or "
                             "shard size); choose a new folder, or give the same arguments to finish that job.")


def _finish_job(out: Path, job: dict, summary: JobSummary) -> None:
    from core.files import atomic_write_json

    atomic_write_json(out / JOB_FILE, job | {
        "state": "complete", "seconds": round(summary.seconds, 3), "verdicts": summary.verdicts,
        "unreadable": len(summary.unreadable), "shards_already_written": summary.shards_skipped,
        "workers": summary.workers,
        "client_peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})


def _check_workers(client, run_dir: Path, model_sha256: str) -> None:
    """Refuse in one sentence when a worker cannot reach the run (another machine without the shared folder)."""
    answers = client.run(_can_read_run, str(run_dir), model_sha256)
    if not answers:
        raise InputError("the Dask cluster has no workers.")
    for worker, problem in answers.items():
        if problem:
            raise InputError(f"Dask worker {worker}: {problem}")


def _can_read_run(run_dir: str, model_sha256: str) -> str:
    try:
        from core.runs.bundles import read_manifest
    except ImportError:
        return "cannot import this project's 'core' package; start the workers from its environment."
    try:
        manifest = read_manifest(Path(run_dir))
    except Exception as error:  # noqa: BLE001 (any reason is told to the user in one line)
        return f"cannot read the run at {run_dir} ({error}); give a path every worker can reach."
    if manifest.get("model_sha256") != model_sha256:
        return f"the run at {run_dir} is not the same run as on this machine (its model differs)."
    return ""


def _detector_of(run_dir: str, model_sha256: str):
    """The run's detector, loaded once per worker process and kept for every later shard."""
    key = (run_dir, model_sha256)
    with _loading:
        if key not in _loaded:
            from core.quiet import import_tensorflow_quietly

            import_tensorflow_quietly()
            from core.runs.bundles import load_bundle

            _loaded[key] = load_bundle(Path(run_dir))   # checks every file against the run's hashes
            _loads[key] = _loads.get(key, 0) + 1
        return _loaded[key], _loads[key]


def _score_shard(run_dir: str, model_sha256: str, items: list, decision, shard_path: str, index: int) -> ShardReport:
    from core.files import atomic_writer
    from core.runs.pipeline import write_judged_rows

    started = time.perf_counter()
    detector, loads = _detector_of(run_dir, model_sha256)
    with atomic_writer(shard_path, "w") as handle:
        written = write_judged_rows(handle, detector, items, decision)
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = f"pid {os.getpid()}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KiB
    return ShardReport(index, written.rows, written.verdicts, written.unreadable, time.perf_counter() - started, worker,
                       loads, peak)
