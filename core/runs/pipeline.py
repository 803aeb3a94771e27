"""The steps the command line and the dashboard share: train a run, score images, evaluate."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from core.runs.bundles import save_bundle
from core.data.datasets import Dataset, Sample, ScoreItem, dataset_items
from core.evaluation.decision import Decision
from core.detectors.base import Detector, TrainingCancelled, TrainingProgress
from core.errors import DatasetError, InputError
from core.data.images import decode_many
from core.runs.store import owner_fields, scores_csv, write_status

UNREADABLE = "unreadable: "  # how a reason starts when the file itself could not be read
SCORE_BATCH = 256  # images decoded and scored at a time: memory stays flat however many there are

IDENTITY_COLUMNS = ("path", "label", "defect_type")


@dataclass
class ScoredSet:
    """A scores.csv-shaped table of the images that decoded, plus, on request, maps aligned with its rows.

    ``frame_reasons`` (one per row, ``""`` when the frame check passed) and ``unreadable`` (the
    inputs that could not be read, with their reason) let :func:`judged_rows` give every input a row.
    """

    table: pd.DataFrame
    anomaly_maps: np.ndarray | None = None
    residuals: np.ndarray | None = None
    reconstructions: np.ndarray | None = None
    images: np.ndarray | None = None
    kept_samples: list[Sample] = field(default_factory=list)
    frame_reasons: list[str] = field(default_factory=list)
    unreadable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=[*IDENTITY_COLUMNS, "reason"]))
    positions: list[int] = field(default_factory=list)   # input position of each table row

    @property
    def errors(self) -> dict[str, str]:
        """Each unreadable input's name and why it could not be read."""
        return {path: reason.removeprefix(UNREADABLE) for path, reason in
                zip(self.unreadable["path"], self.unreadable["reason"])}


def train_run(dataset: Dataset, run_dir: str | Path, detector: Detector,
              progress: Callable[[TrainingProgress], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              warn: Callable[[str], None] = lambda message: None) -> Detector:
    """Train on the data set's good training images and save the bundle into ``run_dir``.

    ``status.json`` follows every epoch; it ends as ``complete``, ``cancelled`` or ``failed``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    history = {"loss": [], "val_loss": []}
    write_status(run_dir, state="loading", model_kind=detector.kind, message="Reading the training images",
                 **owner_fields())

    def on_epoch(update: TrainingProgress) -> None:
        history["loss"].append(update.loss)
        history["val_loss"].append(update.val_loss)
        write_status(run_dir, state="training", epoch=update.epoch, epochs=update.epochs, loss=update.loss,
                     val_loss=update.val_loss, elapsed_seconds=update.elapsed_seconds,
                     seconds_left=update.seconds_left, history=history)
        if progress is not None:
            progress(update)

    try:
        decoded = dataset.load(dataset.train_good, int(detector.input_size), detector.channels)
        for message in decoded.errors.values():
            warn(f"skipped {message}")
        if len(decoded.images) == 0:
            raise DatasetError(f"{dataset.root}: none of the good training images could be read.")
        write_status(run_dir, state="training", epoch=0, epochs=int(getattr(detector, "epochs", 0)), history=history,
                     message=f"Training on {len(decoded.images)} good images" if hasattr(detector, "epochs") else
                     f"Fitting on {len(decoded.images)} good images (one pass)")
        detector.fit(decoded.images, progress=on_epoch, should_stop=should_stop, image_sizes=decoded.sizes)
        save_bundle(detector, run_dir, dataset.summary() | {"source": str(dataset.root)})
    except TrainingCancelled:
        write_status(run_dir, state="cancelled", message="Training was cancelled.")
        raise
    except KeyboardInterrupt:
        write_status(run_dir, state="cancelled", message="Training was interrupted (Ctrl-C).")
        raise
    except BaseException as error:
        write_status(run_dir, state="failed", message=str(error) or type(error).__name__,
                     detail=traceback.format_exc(limit=5))
        raise
    write_status(run_dir, state="complete", message="Training finished", history=getattr(detector, "history_", history),
                 training_seconds=detector.training_seconds_, pid=None, host=None)
    return detector


def score_samples(detector, dataset: Dataset, samples: list[Sample], with_maps: bool = False) -> ScoredSet:
    scored = score_items(detector, dataset_items(dataset, samples), with_maps)
    scored.kept_samples = [samples[position] for position in scored.positions]
    return scored


def score_sources(detector, sources: list, names: list[str], with_maps: bool = False) -> ScoredSet:
    """Score loose files or uploaded bytes whose label is unknown."""
    return score_items(detector, [ScoreItem(source, name) for source, name in zip(sources, names)], with_maps)


def score_items(detector, items: list[ScoreItem], with_maps: bool = False) -> ScoredSet:
    """Decode, frame-check and score ``items`` in one go (see :func:`stream_judged_rows` for many)."""
    decoded = decode_many([item.source for item in items], int(detector.input_size),
                          names=[item.name for item in items], channels=detector.channels)
    kept = [items[index] for index in decoded.kept]
    identity = pd.DataFrame({"path": [item.name for item in kept], "label": [item.label for item in kept],
                             "defect_type": [item.defect_type for item in kept]}, columns=list(IDENTITY_COLUMNS))
    result = detector.score(decoded.images, with_maps=with_maps)
    table = pd.concat([identity, result.table.reset_index(drop=True)], axis=1)
    limits = frame_limits_of(detector)
    reasons = limits.reasons(decoded.images, decoded.sizes) if limits is not None else [""] * len(kept)
    failed = [items[index] for index in decoded.errors]
    unreadable = pd.DataFrame({"path": [item.name for item in failed], "label": [item.label for item in failed],
                               "defect_type": [item.defect_type for item in failed],
                               "reason": [UNREADABLE + decoded.errors[index] for index in decoded.errors]},
                              columns=[*IDENTITY_COLUMNS, "reason"])
    return ScoredSet(table, result.anomaly_maps, result.residuals, result.reconstructions,
                     decoded.images if with_maps else None, [], reasons, unreadable, list(decoded.kept))


def frame_limits_of(detector):
    """The frame limits that judge a detector's input: its own, or its autoencoder's."""
    limits = getattr(detector, "frame_limits_", None)
    if limits is None and getattr(detector, "autoencoder", None) is not None:
        limits = getattr(detector.autoencoder, "frame_limits_", None)
    return limits


def judged_rows(scored: ScoredSet, decision: Decision | None) -> pd.DataFrame:
    """Every input as one scores.csv row, in input order, with ``verdict`` (when there is a decision)
    and ``reason``: readable images are judged, frames that fail the check and unreadable files are
    ``INVALID`` with their reason. Nothing is dropped.
    """
    table = scored.table.copy()
    reasons = list(scored.frame_reasons)
    if decision is not None:
        if decision.column not in table.columns:
            raise InputError(f"the decision is on score column {decision.column!r}, which this detector does "
                             f"not compute ({', '.join(c for c in table.columns if c not in IDENTITY_COLUMNS)}).")
        table["verdict"], reasons = decision.judge(table[decision.column], reasons)
    table["reason"] = list(reasons)
    unreadable = scored.unreadable.copy()
    if decision is not None:
        unreadable.insert(len(IDENTITY_COLUMNS), "verdict", "INVALID")
    if len(unreadable):
        readable = set(scored.positions)
        order = [*scored.positions, *(position for position in range(len(scored.positions) + len(unreadable))
                                      if position not in readable)]
        table = pd.concat([table, unreadable], ignore_index=True)
        table.index = order
        table = table.sort_index().reset_index(drop=True)
    columns = [column for column in table.columns if column not in ("verdict", "reason")]
    return table[columns + (["verdict"] if decision is not None else []) + ["reason"]]


def stream_judged_rows(detector, items: list[ScoreItem], decision: Decision | None,
                       batch_size: int = SCORE_BATCH):
    """:func:`judged_rows` for ``batch_size`` items at a time, so memory stays flat in the number of items."""
    for start in range(0, len(items), batch_size):
        yield judged_rows(score_items(detector, items[start:start + batch_size]), decision)


@dataclass
class WrittenRows:
    """What :func:`write_judged_rows` wrote: rows, verdict counts and the unreadable inputs' reasons."""

    rows: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)   # each reason as in the row, starting UNREADABLE


def write_judged_rows(handle, detector, items: list[ScoreItem], decision: Decision | None) -> WrittenRows:
    """Every item as scores.csv rows into the text ``handle`` (the header once), streamed by
    :func:`stream_judged_rows`; the plain ``score`` and each Dask shard write through it."""
    written = WrittenRows()
    for chunk in stream_judged_rows(detector, items, decision):
        handle.write(scores_csv(chunk, header=written.rows == 0))
        written.rows += len(chunk)
        written.unreadable += chunk.loc[chunk["reason"].str.startswith(UNREADABLE), "reason"].tolist()
        if "verdict" in chunk:
            for verdict, count in chunk["verdict"].value_counts().items():
                written.verdicts[verdict] = written.verdicts.get(verdict, 0) + int(count)
    return written
