"""The review queue's corrections: labels an engineer fixed on the pages, kept beside the runs, never in the data.

An engineer looking at a false reject may say "actually good"; at an escape, "actually defect" (of a
type); at a bad capture, "exclude". Corrections are kept per run and data set in one small JSON file
under the runs folder (the user's data folder is never written to), and:

- every page's labels follow them at once (:func:`apply_to_table`);
- retraining uses them (:func:`corrected_dataset`): test images marked good join the training set,
  excluded images leave every set, and images marked defect are judged as defects of their type;
- the before/after comparison judges both runs on the test images that remain (none of the images
  the new run trained on).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.datasets import Dataset, Sample
from core.files import atomic_write_bytes, atomic_write_json, locked

FORMAT = "residual-lab-corrections/1"
_PLAIN_FILE = re.compile(r"^[0-9a-f]{16}\.(png|jpg|jpeg|bmp|tif|tiff)$")   # a kept upload: never a path
ACTIONS = ("good", "defect", "exclude")
MAX_ENTRIES = 100_000


@dataclass
class Corrections:
    """Corrections for one run on one data set: ``entries`` maps an image's path (as the pages name it) to
    ``{"action": "good" | "defect" | "exclude", "defect_type": str, "marked": ISO time}``."""

    path: Path
    run: str = ""
    data: str = ""
    entries: dict[str, dict] = field(default_factory=dict)

    def mark(self, image: str, action: str, defect_type: str = "", file: str | None = None) -> None:
        """Mark ``image``; ``file`` names the kept copy of an upload (see :meth:`mark_upload`)."""
        if action not in ACTIONS:
            raise ValueError(f"`action` must be one of {', '.join(ACTIONS)}, got {action!r}.")
        if action == "defect" and not defect_type.strip():
            defect_type = "marked_defect"
        entry = {"action": action, "defect_type": defect_type.strip() if action == "defect" else "",
                 "marked": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        if file is not None:
            entry["file"] = file
        self._change(lambda entries: entries.__setitem__(image, entry))

    @property
    def files_folder(self) -> Path:
        """Where copies of marked uploads are kept (an upload exists nowhere else on the server)."""
        return self.path.parent / f"{self.path.stem}-files"

    @staticmethod
    def upload_key(name: str, data: bytes) -> str:
        return f"upload:{hashlib.sha256(data).hexdigest()[:16]}:{name}"

    def mark_upload(self, name: str, data: bytes, action: str, defect_type: str = "") -> str:
        """Mark an uploaded image (Inspect); a copy of its bytes is kept so retraining can use it. Returns its key."""
        from core.data.images import IMAGE_SUFFIXES

        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise ValueError(f"{name}: only PNG, JPEG, BMP or TIFF uploads can be marked.")
        key = self.upload_key(name, data)
        file_name = f"{key.split(':')[1]}{suffix}"
        atomic_write_bytes(self.files_folder / file_name, data)
        self.mark(key, action, defect_type, file=file_name)   # one write of the corrections file
        return key

    def undo(self, image: str) -> None:
        self._change(lambda entries: entries.pop(image, None))

    def _change(self, change) -> None:
        """Apply ``change`` to the entries on disk, under the file's lock, and keep the result: two browser
        sessions marking images of the same run and data each add their mark, neither overwrites the other's."""
        with locked(self.path):
            if self.path.is_file():
                self.entries = load_corrections(self.path, self.run, self.data).entries
            change(self.entries)
            self.save()

    def save(self) -> None:
        atomic_write_json(self.path, {"format": FORMAT, "run": self.run, "data": self.data, "entries": self.entries})

    def of(self, action: str) -> list[str]:
        return [image for image, entry in self.entries.items() if entry["action"] == action]


def corrections_file(runs_root: Path, run_path: str, data_location: str) -> Path:
    """Where the corrections of ``run_path`` on ``data_location`` are kept: under the runs folder, one file per pair."""
    key = hashlib.sha256(f"{Path(run_path).resolve()}\n{data_location}".encode()).hexdigest()[:16]
    return Path(runs_root) / "corrections" / f"{Path(run_path).name}-{key}.json"


def load_corrections(path: Path, run: str = "", data: str = "") -> Corrections:
    """The corrections in ``path`` (none when it does not exist); ``ValueError`` for a file that is not one."""
    path = Path(path)
    if not path.is_file():
        return Corrections(path, run, data)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path.name}: the corrections file is not readable JSON.") from None
    entries = document.get("entries") if isinstance(document, dict) else None
    if document.get("format") != FORMAT or not isinstance(entries, dict) or len(entries) > MAX_ENTRIES or not all(
            isinstance(image, str) and isinstance(entry, dict) and entry.get("action") in ACTIONS and
            isinstance(entry.get("defect_type", ""), str) and
            (entry.get("file") is None or (isinstance(entry["file"], str) and _PLAIN_FILE.match(entry["file"])))
            for image, entry in entries.items()):
        raise ValueError(f"{path.name}: not a corrections file of this program.")
    return Corrections(path, str(document.get("run", run)), str(document.get("data", data)), entries)


def apply_to_table(table: pd.DataFrame, corrections: Corrections) -> pd.DataFrame:
    """The score table with corrected labels (``corrected`` says which rows changed) and excluded rows left out."""
    entries = corrections.entries
    actions = table["path"].map(lambda image: entries[image]["action"] if image in entries else "")
    table = table[actions != "exclude"].copy()
    actions = actions[actions != "exclude"]
    marked = actions != ""
    table["corrected"] = np.where(marked, "marked " + actions, "")
    table.loc[marked, "label"] = actions[marked]
    table.loc[marked, "defect_type"] = [entries[image]["defect_type"] for image in table.loc[marked, "path"]]
    return table


def corrected_dataset(dataset: Dataset, corrections: Corrections) -> Dataset:
    """``dataset`` as the corrections have it: test images marked good become training images, excluded ones
    are left out, images marked defect are defects of their type. The files are not touched."""
    samples: list[Sample] = []
    for sample in dataset.samples:
        entry = corrections.entries.get(sample.display_path(dataset.root))
        if entry is None:
            samples.append(sample)
        elif entry["action"] == "good":
            samples.append(replace(sample, split="train", label="good", defect_type="good", mask_path=None))
            # (a Sample's defect_type of a good image is "good", as the layouts read it)
        elif entry["action"] == "defect":
            samples.append(replace(sample, split="test", label="defect", defect_type=entry["defect_type"]))
        # "exclude": left out
    for key, entry in corrections.entries.items():   # uploads marked on Inspect, from their kept copies
        if entry.get("file") and entry["action"] in ("good", "defect"):
            path = corrections.files_folder / entry["file"]
            if path.is_file():
                samples.append(Sample(path, "train" if entry["action"] == "good" else "test", entry["action"],
                                      "good" if entry["action"] == "good" else entry["defect_type"]))
    moved = len(corrections.of("good"))
    notes = [*dataset.notes, f"{len(corrections.entries)} corrections applied: {moved} marked good (trained on), "
             f"{len(corrections.of('exclude'))} excluded, {len(corrections.of('defect'))} marked defect."]
    return Dataset(dataset.root, dataset.layout, samples, notes=notes)
