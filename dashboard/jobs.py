"""Training and comparisons as background jobs whose state lives on disk (``status.json``).

The thread belongs to the server process, so it keeps going when the user switches pages or
reloads the tab; any page reads progress back from disk. Cancelling drops a ``cancel`` file that
the training loop checks after every epoch. Each job trains its own new detector: a model that
other sessions use is never trained in place.

Trainings run one at a time (:data:`_training_lock`): Keras seeds the whole process
(``keras.utils.set_random_seed``), so two trainings interleaved would disturb each other's random
draws and neither would be reproducible. A second job waits as ``queued``. At most
:data:`MAX_TRAINING_JOBS` jobs may be queued or running on the server, and one per browser session
(the page enforces that with :func:`is_alive`).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from core.detectors import training_parameters
from core.files import atomic_write_text
from core.runs.store import FINISHED_STATES, claim_run_folder, new_run_id, owner_fields, read_status, write_status

CANCEL_FILE = "cancel"
MAX_TRAINING_JOBS = 2
_threads: dict[str, threading.Thread] = {}
_lock = threading.Lock()
_training_lock = threading.Lock()
_starting = threading.Lock()


class TooManyJobs(RuntimeError):
    """The server already runs as many trainings as it allows; the message says so."""


def training_jobs() -> int:
    with _lock:
        return sum(1 for name, thread in _threads.items() if name.startswith("train-") and thread.is_alive())


def start_training(runs_root: Path, data_kind: str, data_location: str, model_kind: str, epochs: int,
                   input_size: int, seed: int, anomaly_source: str | None = None, patch_size: int | None = None,
                   channels: int = 1) -> Path:
    return _start(runs_root, data_kind, data_location, model_kind, epochs,
                  training_parameters(model_kind, seed, epochs=epochs, input_size=input_size, channels=channels,
                                      patch_size=patch_size, anomaly_source=anomaly_source))


def start_retraining(runs_root: Path, data_kind: str, data_location: str, manifest: dict, corrections_path: Path,
                     epochs: int | None = None) -> Path:
    """Train a new run like the one ``manifest`` describes, on the data as the review queue corrected it: test
    images marked good join the training set, excluded images leave it. The old run is not touched."""
    from core.detectors import detector_class
    from core.detectors.base import saved_parameters

    kind = manifest["model_kind"]
    parameters = saved_parameters(detector_class(kind), manifest)
    parameters.pop("model", None)   # new_detector names the autoencoder's network itself
    if epochs is not None and "epochs" in parameters:
        parameters["epochs"] = int(epochs)
    return _start(runs_root, data_kind, data_location, kind, int(parameters.get("epochs", 0)), parameters,
                  corrections_path=str(corrections_path), retrained_from=manifest["model_sha256"])


def _start(runs_root, data_kind, data_location, model_kind, epochs, parameters, corrections_path=None,
           retrained_from=None) -> Path:
    # checked and acted on under one lock: two sessions clicking "Start training" at once cannot both pass the check
    with _starting:
        return _start_unless_full(runs_root, data_kind, data_location, model_kind, epochs, parameters,
                                  corrections_path, retrained_from)


def _start_unless_full(runs_root, data_kind, data_location, model_kind, epochs, parameters, corrections_path,
                       retrained_from) -> Path:
    if training_jobs() >= MAX_TRAINING_JOBS:
        raise TooManyJobs(f"The server is already training {MAX_TRAINING_JOBS} models; wait until one "
                          "finishes or cancel one.")
    run_dir = claim_run_folder(Path(runs_root) / new_run_id(model_kind))
    write_status(run_dir, state="queued", model_kind=model_kind, epochs=epochs, epoch=0,
                 message="Waiting for the training before it to finish",
                 data=data_kind if data_kind == "demo" else data_location, **owner_fields(),
                 **({"retrained_from": retrained_from, "corrections_path": corrections_path} if retrained_from else {}))
    thread = threading.Thread(target=_train, name=f"train-{run_dir.name}", daemon=True,
                              args=(run_dir, data_kind, data_location, model_kind, parameters, corrections_path))
    with _lock:
        _threads[f"train-{run_dir.name}"] = thread
    thread.start()
    return run_dir


def _train(run_dir, data_kind, data_location, model_kind, parameters, corrections_path=None) -> None:
    from core.detectors import new_detector
    from core.detectors.base import TrainingCancelled
    from core.runs.pipeline import train_run

    try:
        with _training_lock:
            if (run_dir / CANCEL_FILE).exists():
                write_status(run_dir, state="cancelled", message="Training was cancelled before it started.")
                return
            with open_dataset_for(data_kind, data_location) as dataset:
                if corrections_path is not None:
                    from core.runs.corrections import corrected_dataset, load_corrections

                    dataset = corrected_dataset(dataset, load_corrections(Path(corrections_path)))
                detector = new_detector(model_kind, **parameters)
                train_run(dataset, run_dir, detector, should_stop=lambda: (run_dir / CANCEL_FILE).exists())
    except TrainingCancelled:
        pass
    except Exception as error:  # the status file carries the message to the page
        if read_status(run_dir).get("state") not in FINISHED_STATES:
            write_status(run_dir, state="failed", message=str(error) or type(error).__name__)
    finally:
        with _lock:
            _threads.pop(f"train-{run_dir.name}", None)


def cancel(run_dir: Path) -> None:
    atomic_write_text(Path(run_dir) / CANCEL_FILE, "cancel requested\n")


def is_alive(run_id: str) -> bool:
    with _lock:
        thread = _threads.get(f"train-{run_id}") or _threads.get(run_id)
    return thread is not None and thread.is_alive()


def join(run_id: str, timeout: float | None = None) -> None:
    """Wait for a job of this server to end (for command-line use and tests; pages poll instead)."""
    with _lock:
        thread = _threads.get(f"train-{run_id}") or _threads.get(run_id)
    if thread is not None:
        thread.join(timeout)


def delete_run(runs_root: Path, run_id: str) -> None:
    """Remove a run that is not training; refuses names that are not a plain run folder."""
    root = Path(runs_root).resolve()
    target = (root / run_id).resolve()
    if target.parent != root or not target.is_dir() or is_alive(run_id):
        raise ValueError(f"{run_id} is not a run that can be deleted.")
    shutil.rmtree(target)


COMPARISONS_FOLDER = "comparisons"
COMPARISON_FILE = "compare.json"


def start_comparison(runs_root: Path, data_kind: str, data_location: str, data_label: str, seeds: int,
                     epochs: int) -> Path:
    """``python -m core compare`` as a background job; the report lands in ``comparisons/<id>/compare.json``."""
    def report(dataset, progress):
        from core.evaluation.compare import compare_detectors

        return compare_detectors(dataset, seeds, {"epochs": epochs}, progress=progress)

    job_dir = Path(runs_root) / COMPARISONS_FOLDER / new_run_id("compare")
    write_status(job_dir, state="queued", message="Waiting to start", seeds=seeds, epochs=epochs, data=data_label)
    return _start_report(job_dir, data_kind, data_location, report, COMPARISON_FILE, "Comparison finished")


CHECKS_FOLDER = "detector-checks"
CHECK_FILE = "check.json"


def start_detector_check(runs_root: Path, data_kind: str, data_location: str, data_label: str,
                         names: tuple[str, ...] | None = None) -> Path:
    """``python -m core advise`` as a background job (every detector, or ``names``); the report lands in
    ``detector-checks/<id>/check.json``."""
    def report(dataset, progress):
        from core.detectors import CANDIDATE_NAMES
        from core.evaluation.detector_check import detector_check

        return detector_check(dataset, names or CANDIDATE_NAMES, progress=progress)

    job_dir = Path(runs_root) / CHECKS_FOLDER / new_run_id("check")
    write_status(job_dir, state="queued", message="Waiting to start", data=data_label, data_kind=data_kind,
                 data_location=data_location)
    return _start_report(job_dir, data_kind, data_location, report, CHECK_FILE, "Detector check finished")


def _start_report(job_dir: Path, data_kind: str, data_location: str, make_report, file_name: str,
                  finished: str) -> Path:
    thread = threading.Thread(target=_write_report, name=f"report-{job_dir.name}", daemon=True,
                              args=(job_dir, data_kind, data_location, make_report, file_name, finished))
    with _lock:
        _threads[job_dir.name] = thread
    thread.start()
    return job_dir


def _write_report(job_dir, data_kind, data_location, make_report, file_name, finished) -> None:
    """Runs one background report (a comparison, a detector check): one at a time with trainings (they train
    too), its progress and failure in ``status.json``, the report written whole or not at all."""
    from core.files import atomic_write_json

    try:
        with _training_lock, open_dataset_for(data_kind, data_location) as dataset:
            report = make_report(dataset, lambda message: write_status(job_dir, state="running", message=message))
        atomic_write_json(job_dir / file_name, report)
        write_status(job_dir, state="complete", message=finished)
    except Exception as error:  # the status file carries the message to the page
        write_status(job_dir, state="failed", message=str(error) or type(error).__name__)
    finally:
        with _lock:
            _threads.pop(job_dir.name, None)


def open_dataset_for(data_kind: str, data_location: str):
    from core.data.datasets import open_dataset

    return open_dataset("demo" if data_kind == "demo" else data_location)


def comparisons(runs_root: Path) -> list[tuple[Path, dict]]:
    """Comparison jobs, newest first, with their status (finished or still running in this server)."""
    return _reports(Path(runs_root) / COMPARISONS_FOLDER, COMPARISON_FILE)


def detector_checks(runs_root: Path) -> list[tuple[Path, dict]]:
    """Detector checks, newest first, with their status (finished, or failed or still running in this server)."""
    return _reports(Path(runs_root) / CHECKS_FOLDER, CHECK_FILE, keep_failed=True)


def _reports(folder: Path, file_name: str, keep_failed: bool = False) -> list[tuple[Path, dict]]:
    if not folder.is_dir():
        return []
    jobs = []
    for job_dir in sorted(folder.iterdir(), reverse=True):
        status = read_status(job_dir)
        finished = status.get("state") == "complete" and (job_dir / file_name).is_file()
        if finished or is_alive(job_dir.name) or (keep_failed and status.get("state") == "failed"):
            jobs.append((job_dir, status))
    return jobs
