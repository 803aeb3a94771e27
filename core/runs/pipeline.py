"""The steps the command line and the dashboard share that write into runs: train a run, write scores.csv rows.

Scoring itself (images to judged rows) is :mod:`core.evaluation.scoring`."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.data.datasets import Dataset, ScoreItem
from core.decision import Decision
from core.detectors.base import BaseDetector, TrainingCancelled, TrainingProgress
from core.errors import DatasetError, Terminated
from core.evaluation.scoring import UNREADABLE, stream_judged_rows
from core.runs.bundles import save_bundle
from core.runs.store import owner_fields, scores_csv, write_status

def train_run(dataset: Dataset, run_dir: str | Path, detector: BaseDetector,
              progress: Callable[[TrainingProgress], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              warn: Callable[[str], None] = lambda message: None) -> BaseDetector:
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
    except Terminated:
        write_status(run_dir, state="cancelled", message="Training was stopped: the process was terminated (SIGTERM).")
        raise
    except BaseException as error:
        write_status(run_dir, state="failed", message=str(error) or type(error).__name__,
                     detail=traceback.format_exc(limit=5))
        raise
    write_status(run_dir, state="complete", message="Training finished", history=detector.history_ or history,
                 training_seconds=detector.training_seconds_, pid=None, host=None)
    return detector


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
