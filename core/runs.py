"""Runs on disk: ``runs/<id>/`` holds a model bundle, its training status and score tables.

``status.json`` is rewritten atomically as training goes (state, epoch, losses, time left), so a
page switch or a reload can pick the progress up again. A run is *usable* only when its state is
``complete`` and its bundle passes every check; an interrupted run never is.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from core.bundles import read_manifest
from core.errors import BundleError
from core.files import atomic_write_json, atomic_write_text

STATUS_FILE = "status.json"
SCORES_FOLDER = "scores"
FINISHED_STATES = ("complete", "failed", "cancelled")


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    path: Path
    status: dict
    manifest: dict | None

    @property
    def usable(self) -> bool:
        return self.status.get("state") == "complete" and self.manifest is not None


def new_run_id(model_kind: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{model_kind}-{secrets.token_hex(2)}"


def write_status(run_dir: str | Path, **fields) -> dict:
    path = Path(run_dir) / STATUS_FILE
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


def scores_csv(table) -> str:
    """A scores.csv-shaped table as CSV text, in the one number format every writer uses."""
    return table.to_csv(index=False, float_format="%.8g")


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
    try:
        manifest = read_manifest(path) if status.get("state") == "complete" else None
    except BundleError:
        manifest = None
    return RunInfo(path.name, path, status, manifest)


def list_runs(root: str | Path = "runs", usable_only: bool = True) -> list[RunInfo]:
    """Runs newest first; by default only the ones that finished and whose bundle checks out."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [inspect_run(entry) for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")]
    runs = [run for run in runs if run.usable or not usable_only]
    return sorted(runs, key=lambda run: run.run_id, reverse=True)
