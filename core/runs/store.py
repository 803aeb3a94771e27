"""Runs on disk: ``runs/<id>/`` holds a model bundle, its training status and score tables.

``status.json`` is rewritten atomically as training goes (state, epoch, losses, time left), so a
page switch or a reload can pick the progress up again. It names the process that trains (host and
process id): a run left ``training`` by a process that no longer exists is *interrupted*, never
shown as running forever. A run is *usable* only when its state is ``complete`` and its bundle
passes every check; a run whose manifest fails a check carries the reason in ``problem``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from core.runs.bundles import read_manifest
from core.errors import BundleError
from core.files import atomic_write_json, atomic_write_text, locked

STATUS_FILE = "status.json"
SCORES_FOLDER = "scores"
FINISHED_STATES = ("complete", "failed", "cancelled")
CLAIM_FILE = ".claimed"


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    path: Path
    status: dict
    manifest: dict | None
    problem: str = ""

    @property
    def usable(self) -> bool:
        return self.status.get("state") == "complete" and self.manifest is not None

    @property
    def interrupted(self) -> bool:
        """Left unfinished by a process that is gone (killed, crashed, machine restarted)."""
        state = self.status.get("state")
        return bool(state) and state not in FINISHED_STATES and not owner_alive(self.status)


def owner_fields() -> dict:
    """What ``status.json`` records about the process doing the work."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def owner_alive(status: dict) -> bool:
    """Whether the process named in a status could still be working on it."""
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def claim_run_folder(run_dir: str | Path) -> Path:
    """Make ``run_dir`` this process's alone, atomically; ``FileExistsError`` if it is taken or not empty.

    Two trainings started into one folder at the same moment cannot both pass a "does it exist"
    check: creating the claim file with O_EXCL lets exactly one of them through.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(run_dir / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(owner_fields()) + "\n")
    if any(entry.name != CLAIM_FILE for entry in run_dir.iterdir()):
        raise FileExistsError(f"{run_dir} is not empty")
    return run_dir


RUN_NAME_LIMIT = 60


def run_name(run: "RunInfo") -> str:
    """The name a person gave the run, or its id."""
    name = run.status.get("name")
    return name if isinstance(name, str) and name else run.run_id


def rename_run(run_dir: str | Path, name: str) -> str:
    """Give a run a name (kept in ``status.json``); ``ValueError`` for an empty, overlong or odd one."""
    name = " ".join(str(name).split())
    if not name or len(name) > RUN_NAME_LIMIT or not name.isprintable():
        raise ValueError(f"A run name must be 1 to {RUN_NAME_LIMIT} printable characters.")
    write_status(run_dir, name=name)
    return name


def phase(run: "RunInfo") -> str:
    """What a person should read about a run: running, finished, cancelled, failed, interrupted or damaged."""
    state = run.status.get("state")
    if run.problem:
        return "damaged"
    if state == "complete":
        return "finished"
    if state in ("cancelled", "failed"):
        return state
    return "interrupted" if run.interrupted else "running"


def new_run_id(model_kind: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{model_kind}-{secrets.token_hex(2)}"


def write_status(run_dir: str | Path, **fields) -> dict:
    """Update fields of a run's status, under the status file's lock: a rename from one browser session and the
    training thread's progress never overwrite each other."""
    path = Path(run_dir) / STATUS_FILE
    with locked(path):
        status = read_status(run_dir)
        status.update(fields, updated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        atomic_write_json(path, status)
    return status


def read_status(run_dir: str | Path) -> dict:
    try:
        status = json.loads((Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8"))
        return status if isinstance(status, dict) else {}
    except (OSError, ValueError):
        return {}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


SCORES_TEXT_COLUMNS = ("path", "label", "defect_type", "verdict", "reason")


def read_scores_csv(path: str | Path):
    """A scores.csv as :func:`scores_csv` wrote it: the text columns as text (``""`` when empty), the score
    columns as numbers (``NaN`` for a file that could not be read)."""
    import pandas as pd

    return pd.read_csv(path, dtype=dict.fromkeys(SCORES_TEXT_COLUMNS, str)).fillna(
        dict.fromkeys(SCORES_TEXT_COLUMNS, ""))


def scores_csv(table, header: bool = True) -> str:
    """A scores.csv-shaped table as CSV text, in the one number format every writer uses.

    A text cell that starts like a spreadsheet formula (``=``, ``+``, ``-``, ``@``) gets a leading
    ``'`` so that opening the file in a spreadsheet shows it instead of running it.
    """
    safe = table.copy()
    for column in safe.columns:
        if safe[column].dtype == object:
            safe[column] = [f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value
                            for value in safe[column]]
    return safe.to_csv(index=False, float_format="%.8g", header=header)


def write_score_table(run_dir: str | Path, name: str, table) -> Path:
    """Save a scores.csv-shaped table as ``runs/<id>/scores/<name>.csv``, atomically."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"A score table name must be a plain file name, got {name!r}.")
    path = Path(run_dir) / SCORES_FOLDER / f"{name}.csv"
    atomic_write_text(path, scores_csv(table))
    return path


def read_score_tables(run_dir: str | Path) -> dict[str, Path]:
    folder = Path(run_dir) / SCORES_FOLDER
    return {path.stem: path for path in sorted(folder.glob("*.csv"))} if folder.is_dir() else {}


def inspect_run(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir)
    status = read_status(path)
    manifest, problem = None, ""
    if status.get("state") == "complete":
        try:
            manifest = read_manifest(path, reuse_digests=True)
        except BundleError as error:
            problem = str(error)
    return RunInfo(path.name, path, status, manifest, problem)


def list_runs(root: str | Path = "runs", usable_only: bool = True) -> list[RunInfo]:
    """Runs newest first; by default only the ones that finished and whose bundle checks out."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [inspect_run(entry) for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")]
    runs = [run for run in runs if run.usable or not usable_only]
    return sorted(runs, key=lambda run: run.run_id, reverse=True)
