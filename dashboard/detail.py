"""One detail view for an image, wherever it is clicked: pictures with their scales, every score, verdict, label.

Pages open it from a gallery row, a misclassified thumbnail, a scatter point or an Inspect row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import workspace
from dashboard.session import REVIEW_CHANGED
from dashboard.images import anomaly_picture, heat_picture, residual_picture
from dashboard.maps import map_page, picture_scales
from dashboard.words import as_code, as_text


@dataclass
class Detail:
    """Everything the view shows about one image."""

    title: str
    label: str
    verdict: str
    reason: str
    pictures: list[tuple[str, np.ndarray]]
    scores: dict[str, float]
    corrections: object = None   # the review queue (core.runs.corrections.Corrections)
    upload: bytes | None = None  # an uploaded image's bytes (Inspect): marking keeps a copy of them


def detail_from_arrays(space, title: str, label: str, verdict: str, reason: str, scores: dict,
                       image: np.ndarray, anomaly_map: np.ndarray, reconstruction: np.ndarray | None = None,
                       residual: np.ndarray | None = None, mask: np.ndarray | None = None) -> Detail:
    scales = picture_scales(space)
    pictures = [("original", np.clip(image, 0, 1))]
    if reconstruction is not None and residual is not None:
        pictures += [("reconstruction", np.clip(reconstruction, 0, 1)),
                     ("residual (red: brighter than expected, blue: darker)",
                      residual_picture(residual, scales.residual or 1.0))]
    elif residual is not None:   # a residual over feature maps (the NCAE on features): no image was reconstructed
        colours = ("red: more than good images show at that distance from the border, black: no more"
                   if space.feature_residual_is_calibrated else "red: features above what the model expects, blue: below")
        pictures += [(f"feature residual, upsampled ({colours})", residual_picture(residual, scales.residual or 1.0))]
    else:
        pictures.append(("anomaly map", anomaly_picture(anomaly_map, scales.anomaly)))
    pictures.append((f"heat map (top of the scale: {scales.top_words}; cyan: ground-truth outline)",
                     heat_picture(image, anomaly_map, scales.anomaly, mask, scales.top_label)))
    return Detail(title, label, verdict, reason, pictures, scores)


def detail_for_row(space, index) -> Detail:
    """The detail of one row of the workspace's score table, judged with the current decision."""
    row = space.table.loc[index]
    page = map_page(space.map_key(), (row["source"],), (row["mask"],))
    decision = workspace.current_decision(space)
    verdicts, reasons = decision.judge([row[decision.column]])
    label = row["label"] or "unlabelled"
    if row["label"] == "defect" and row["defect_type"]:
        label = f"defect · {row['defect_type']}"
    scores = {column: float(row[column]) for column in workspace.score_columns(space.table)}
    detail = detail_from_arrays(space, row["path"], label, str(verdicts[0]), str(reasons[0]), scores,
                                page.images[0], page.anomaly_maps[0],
                                None if page.reconstructions is None else page.reconstructions[0],
                                None if page.residuals is None else page.residuals[0], page.masks[0])
    detail.corrections = space.corrections
    return detail


def render(detail: Detail, primary: str) -> None:
    """Draw a detail in the current container."""
    reason = f" — {as_text(detail.reason)}" if detail.reason else ""
    st.markdown(f"**{as_text(detail.title)}**  \nlabel: {as_text(detail.label)} · verdict: **{detail.verdict}**{reason}")
    for column, (caption, picture) in zip(st.columns(len(detail.pictures)), detail.pictures):
        column.image(picture, caption=caption, clamp=True, width="stretch")
    scores = pd.DataFrame({"score": list(detail.scores), "value": list(detail.scores.values())})
    scores["decides"] = np.where(scores["score"] == primary, "primary score", "")
    st.dataframe(scores, hide_index=True, width="stretch",
                 column_config={"value": st.column_config.NumberColumn(format="%.5g")})
    if detail.corrections is not None:
        review_controls(detail.corrections, detail.title, detail.upload)


def review_controls(corrections, image: str, upload: bytes | None = None) -> None:
    """Mark this image for the review queue: actually good, actually defect (of a type), or excluded.

    The marks are made in the buttons' callbacks, so they hold whatever reruns next; a dialog reruns on its
    own, so it then asks for a whole-page rerun, which every page's numbers follow (and which closes it).
    """
    if st.session_state.pop(REVIEW_CHANGED, False):
        st.rerun()
    key = corrections.upload_key(image, upload) if upload is not None else image
    entry = corrections.entries.get(key)
    st.markdown("**Review** — " + (f"marked *{entry['action']}*" + (f" ({as_text(entry['defect_type'])})" if
                                   entry.get("defect_type") else "") if entry else "not marked") +
                ". Marks are kept beside the run, never in your data folder; every page follows them, and "
                "*Retrain with corrections* on the Review page uses them.")
    good, defect, kind, exclude, undo = st.columns([1, 1, 1, 1, 1])
    type_key = f"review-type-{key}"
    kind.text_input("Defect type", value=entry.get("defect_type", "") if entry else "", key=type_key,
                    placeholder="e.g. crack", label_visibility="collapsed")

    def mark(action: str) -> None:
        defect_type = st.session_state.get(type_key, "") if action == "defect" else ""
        if upload is not None:
            corrections.mark_upload(image, upload, action, defect_type)
        else:
            corrections.mark(image, action, defect_type)
        st.session_state[REVIEW_CHANGED] = True

    def unmark() -> None:
        corrections.undo(key)
        st.session_state[REVIEW_CHANGED] = True

    good.button("Actually good", key=f"review-good-{key}", icon=":material/check:", on_click=mark, args=("good",))
    defect.button("Actually defect", key=f"review-defect-{key}", icon=":material/report:", on_click=mark,
                  args=("defect",))
    exclude.button("Exclude", key=f"review-exclude-{key}", icon=":material/block:", on_click=mark,
                   args=("exclude",),
                   help="Leave this image out of every measurement and of retraining (a bad capture, not a part).")
    if entry:
        undo.button("Undo", key=f"review-undo-{key}", icon=":material/undo:", on_click=unmark)


def open_dialog(detail: Detail, primary: str) -> None:
    """Show a detail in a large dialog over the page."""

    @st.dialog(as_text(detail.title), width="large")
    def dialog() -> None:
        render(detail, primary)

    dialog()


def thumbnail_grid(space, rows: pd.DataFrame, pictures, headline, key: str, primary: str, per_row: int = 4) -> None:
    """Thumbnails with a short headline and the file's path on separate lines, each with a Details button.

    Four to a row, so that a path such as ``test/scratch/011.png`` fits on one line at 1280 px
    instead of breaking mid-word.
    """
    slots = st.columns(per_row)
    for position, (row, picture) in enumerate(zip(rows.itertuples(), pictures)):
        slot = slots[position % per_row]
        slot.image(picture, width="stretch")
        slot.caption(f"{headline(row)}  \n{as_code(row.path)}")
        if slot.button("Details", key=f"{key}-{row.path}", icon=":material/open_in_full:"):
            open_dialog(detail_for_row(space, row.Index), primary)
