"""Data sets: the three accepted folder layouts, read from a folder or safely from a .zip.

Accepted layouts (see docs/contracts.md):

- MVTec AD: ``train/good/``, ``test/good/``, ``test/<defect_type>/``, optional
  ``ground_truth/<defect_type>/<stem>_mask.png``.
- Kaggle casting: ``train/ok_front/``, ``train/def_front/``, ``test/ok_front/``, ``test/def_front/``.
- Flat: ``good/`` plus one folder per defect type; a fixed, seeded share of the good images is
  kept for training and the rest join the defects as the test set.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from core.errors import DatasetError
from core.data.images import DecodedBatch, decode_many, list_image_files

LAYOUTS_HELP = ("Accepted layouts: MVTec AD (train/good, test/good, test/<defect_type>), Kaggle casting "
                "(train|test/ok_front, train|test/def_front) or flat (good/ plus one folder per defect type).")
FLAT_TRAIN_SHARE = 0.7

ZIP_MAX_MEMBERS = 20_000
ZIP_MAX_TOTAL_BYTES = 2 * 1024**3
ZIP_MAX_RATIO = 200


@dataclass(frozen=True)
class Sample:
    """One image of a data set. ``label`` is ``good``, ``defect`` or ``""`` when unknown."""

    path: Path
    split: str
    label: str
    defect_type: str
    mask_path: Path | None = None

    def display_path(self, root: Path) -> str:
        try:
            return self.path.relative_to(root).as_posix()
        except ValueError:
            return self.path.name


@dataclass(frozen=True, slots=True)   # slots: a list of millions of them stays small
class ScoreItem:
    """One image to score: a path or bytes, the name it is reported under, and its label if known."""

    source: object
    name: str
    label: str = ""
    defect_type: str = ""


@dataclass
class Dataset:
    root: Path
    layout: str
    samples: list[Sample]
    _temporary: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)   # what a person should know about how the set was read

    @property
    def train_good(self) -> list[Sample]:
        return [sample for sample in self.samples if sample.split == "train" and sample.label == "good"]

    @property
    def test(self) -> list[Sample]:
        return [sample for sample in self.samples if sample.split == "test"]

    @property
    def has_masks(self) -> bool:
        return any(sample.mask_path is not None for sample in self.test)

    def summary(self) -> dict:
        """Counts a person would check first: images per split, class and defect type."""
        return {
            "layout": self.layout,
            "train_good": len(self.train_good),
            "test_good": sum(1 for sample in self.test if sample.label == "good"),
            "test_defect": sum(1 for sample in self.test if sample.label == "defect"),
            "defect_types": dict(sorted(Counter(s.defect_type for s in self.test if s.label == "defect").items())),
            "masks": sum(1 for sample in self.test if sample.mask_path is not None),
        }

    def load(self, samples: list[Sample], size: int, channels: int = 1) -> DecodedBatch:
        return decode_many([sample.path for sample in samples], size,
                           names=[sample.display_path(self.root) for sample in samples], channels=channels)

    def load_masks(self, samples: list[Sample], size: int) -> np.ndarray:
        """Binary masks at ``size``; all zero for good images and defects without a mask file."""
        masks = np.zeros((len(samples), size, size), dtype=np.float32)
        paths = [(index, sample.mask_path) for index, sample in enumerate(samples) if sample.mask_path is not None]
        decoded = decode_many([path for _, path in paths], size)
        for row, position in enumerate(decoded.kept):
            masks[paths[position][0]] = decoded.images[row] > 0.5
        return masks

    def close(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def dataset_items(dataset: "Dataset", samples: list[Sample]) -> list[ScoreItem]:
    """Samples as score items named by their path inside the data set, defect type only on defects."""
    return [ScoreItem(sample.path, sample.display_path(dataset.root), sample.label,
                      sample.defect_type if sample.label == "defect" else "") for sample in samples]


def open_dataset(source: str | Path) -> Dataset:
    """Open ``"demo"``, a folder or a .zip in one of the accepted layouts."""
    if str(source) == "demo":
        from core.data.synthetic import cached_demo_set

        return _read_layout(cached_demo_set(demo_cache_root()), name="built-in demo set")
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder.")
    if not path.is_file() and not path.is_dir():
        raise DatasetError(f"{path}: not a folder or a .zip file (a device, pipe or socket).")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise DatasetError(f"{path}: not a folder or a .zip file.")
        temporary = tempfile.TemporaryDirectory(prefix="residual-lab-zip-")
        try:
            extract_zip_safely(path, Path(temporary.name))
            dataset = _read_layout(_descend_single_folder(Path(temporary.name)), name=str(path))
        except BaseException:
            temporary.cleanup()
            raise
        dataset._temporary = temporary
        return dataset
    return _read_layout(_descend_single_folder(path), name=str(path))


def demo_cache_root() -> Path:
    """Where the generated demo set is kept between runs (``RESIDUAL_LAB_CACHE`` overrides it)."""
    configured = os.environ.get("RESIDUAL_LAB_CACHE")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "residual-lab-cache"


def extract_zip_safely(archive: str | Path, destination: Path) -> None:
    """Extract into ``destination`` only: no traversal, no links, bounded count, size and ratio."""
    name = Path(archive).name
    current = ""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if len(members) > ZIP_MAX_MEMBERS:
                raise DatasetError(f"{name}: more than {ZIP_MAX_MEMBERS:,} entries.")
            declared_total = 0
            for member in members:
                _check_member(name, member)
                declared_total += member.file_size
            if declared_total > ZIP_MAX_TOTAL_BYTES:
                raise DatasetError(f"{name}: unpacks to more than {ZIP_MAX_TOTAL_BYTES // 1024**3} GiB.")
            written = 0
            root = destination.resolve()
            for member in members:
                current = member.filename
                target = (root / member.filename).resolve()
                if target == root and member.is_dir():  # "./", the archive's own top folder
                    continue
                if root not in target.parents:
                    raise DatasetError(f"{name}: entry {member.filename!r} points outside the archive.")
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                # declared sizes can lie; count what actually comes out
                limit = min(member.file_size, ZIP_MAX_TOTAL_BYTES - written)
                with bundle.open(member) as source, open(target, "wb") as sink:
                    copied = _copy_bounded(source, sink, limit)
                if copied > member.file_size:
                    raise DatasetError(f"{name}: entry {member.filename!r} is larger than it declares.")
                written += copied
    except zipfile.BadZipFile as error:
        raise DatasetError(f"{name}: not a readable zip file ({error}).") from None
    except (OSError, RuntimeError, NotImplementedError) as error:
        # name the entry, never the server's scratch path (an OSError's text carries the full path)
        where = f" at entry {current!r}" if current else ""
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise DatasetError(f"{name}: cannot unpack the zip{where} ({reason}).") from None


def _check_member(name: str, member: zipfile.ZipInfo) -> None:
    filename = member.filename
    pure = PurePosixPath(filename.replace("\\", "/"))
    if filename.startswith(("/", "\\")) or (pure.parts and ":" in pure.parts[0]):
        raise DatasetError(f"{name}: entry {filename!r} has an absolute path.")
    if ".." in pure.parts:
        raise DatasetError(f"{name}: entry {filename!r} points outside the archive.")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise DatasetError(f"{name}: entry {filename!r} is a symbolic link, which is not allowed.")
    if member.flag_bits & 0x1:
        raise DatasetError(f"{name}: entry {filename!r} is encrypted.")
    if member.compress_size and member.file_size / member.compress_size > ZIP_MAX_RATIO:
        raise DatasetError(f"{name}: entry {filename!r} is compressed more than {ZIP_MAX_RATIO}:1, "
                           "which looks like a zip bomb.")


def _copy_bounded(source, sink, limit: int) -> int:
    copied = 0
    while True:
        chunk = source.read(1024 * 1024)
        if not chunk:
            return copied
        copied += len(chunk)
        if copied > limit:
            return copied
        sink.write(chunk)


def _descend_single_folder(root: Path) -> Path:
    """A zip of ``part_a/train/...`` should work like ``train/...``: step into a lone top folder."""
    while True:
        entries = [entry for entry in root.iterdir() if not entry.name.startswith((".", "__MACOSX"))]
        folders = [entry for entry in entries if entry.is_dir()]
        if len(entries) == 1 and len(folders) == 1 and not _looks_like_layout(root):
            root = folders[0]
        else:
            return root


def _looks_like_layout(root: Path) -> bool:
    return (root / "train").is_dir() or (root / "test").is_dir() or (root / "good").is_dir()


def _read_layout(root: Path, name: str | None = None) -> Dataset:
    label = name or str(root)
    if (root / "train" / "good").is_dir():
        dataset = Dataset(root, "mvtec", _mvtec_samples(root))
    elif any((root / split / folder).is_dir() for split in ("train", "test") for folder in ("ok_front", "def_front")):
        dataset = Dataset(root, "casting", _casting_samples(root))
        moved = len(list_image_files(root / "train" / "def_front")) if (root / "train" / "def_front").is_dir() else 0
        if moved:
            dataset.notes.append(f"train/def_front: its {moved} defect images are judged with the test images "
                                 "(a detector trains on good parts only), so the test set holds more defects "
                                 "than test/def_front alone.")
    elif (root / "good").is_dir():
        dataset = Dataset(root, "flat", _flat_samples(root))
    else:
        raise DatasetError(f"{label}: no recognised data set layout. {LAYOUTS_HELP}")
    if not dataset.train_good:
        raise DatasetError(f"{label}: the {dataset.layout} layout was found but it has no good images to train on.")
    return dataset


def _mvtec_samples(root: Path) -> list[Sample]:
    samples = [Sample(path, "train", "good", "good") for path in list_image_files(root / "train" / "good")]
    test_root = root / "test"
    if test_root.is_dir():
        for folder in sorted(entry for entry in test_root.iterdir() if entry.is_dir()):
            is_good = folder.name == "good"
            for path in list_image_files(folder):
                mask = root / "ground_truth" / folder.name / f"{path.stem}_mask.png"
                samples.append(Sample(path, "test", "good" if is_good else "defect", folder.name,
                                      None if is_good or not mask.is_file() else mask))
    return samples


def _casting_samples(root: Path) -> list[Sample]:
    samples = []
    for split in ("train", "test"):
        for folder, label, defect_type in (("ok_front", "good", "good"), ("def_front", "defect", "def_front")):
            directory = root / split / folder
            if directory.is_dir():
                # the casting set has defects in train/ too; a detector trains on good parts only,
                # so those defects are evaluated with the test set
                sample_split = split if label == "good" else "test"
                samples += [Sample(path, sample_split, label, defect_type) for path in list_image_files(directory)]
    return samples


def _flat_samples(root: Path) -> list[Sample]:
    good = list_image_files(root / "good")
    order = np.random.default_rng(0).permutation(len(good))
    train_count = int(round(len(good) * FLAT_TRAIN_SHARE))
    train_indices = set(order[:train_count].tolist())
    samples = [Sample(path, "train" if index in train_indices else "test", "good", "good")
               for index, path in enumerate(good)]
    for folder in sorted(entry for entry in root.iterdir() if entry.is_dir() and entry.name != "good"):
        samples += [Sample(path, "test", "defect", folder.name) for path in list_image_files(folder)]
    return samples

