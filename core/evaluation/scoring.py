"""Images to scores.csv rows: decode, frame-check, score and judge, giving every input a row.

The command line, the dashboard, the evaluation and the Dask jobs all score through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.data.datasets import Dataset, Sample, ScoreItem, dataset_items
from core.data.images import decode_many
from core.decision import Decision
from core.errors import InputError

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
