"""Inspect: drop images (or a .zip of images) and get a verdict for each at the current threshold."""

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.datasets import extract_zip_safely
from core.errors import DatasetError
from core.data.images import is_image_name
from core.decision import VERDICTS
from core.evaluation.scoring import judged_rows, score_sources
from core.runs.store import scores_csv
from dashboard import workspace
from dashboard.words import as_code, as_text, with_dashes
from dashboard.detail import detail_from_arrays, open_dialog
from dashboard.images import heat_picture
from dashboard.maps import picture_scales

MAX_FILES = 500
MAX_HEAT_MAPS = 60
MAX_REASONS_LISTED = 20

st.title("Inspect")
space = workspace.current()
if space is None:
    st.stop()
decision = workspace.current_decision(space)
column = decision.column
st.caption(f"Judged with **{decision.describe()}** ({decision.basis}). Images that fail the frame check "
           "(blank, saturated, noise, far from the training images' brightness or size) are INVALID. "
           "Change the decision on the Threshold page.")

# the uploader forgets its files when the user visits another page (Threshold, say); its key is gone then,
# while a user who removed the files leaves it behind, empty
returning = "inspect_uploads" not in st.session_state
uploads = st.file_uploader("Drop part images or a .zip of images", accept_multiple_files=True, key="inspect_uploads",
                           type=["png", "jpg", "jpeg", "bmp", "tif", "tiff", "zip"],
                           help="PNG, JPEG, BMP or TIFF, any size, colour or grayscale. Files stay in this "
                                "browser session only.")


def expand(files) -> tuple[list[bytes], list[str], dict[str, str]]:
    """Uploaded files to (contents, names, problems); a zip contributes the images inside it."""
    contents, names, problems = [], [], {}
    for upload in files:
        data = upload.getvalue()
        if upload.name.lower().endswith(".zip"):
            with tempfile.TemporaryDirectory(prefix="residual-lab-inspect-") as scratch:
                archive = Path(scratch) / "upload.zip"
                archive.write_bytes(data)
                try:
                    extract_zip_safely(archive, Path(scratch) / "files")
                except DatasetError as error:
                    problems[upload.name] = str(error).replace("upload.zip", upload.name)
                    continue
                files = sorted(path for path in (Path(scratch) / "files").rglob("*") if path.is_file())
                members = [path for path in files if is_image_name(path.name)]
                if not files:
                    problems[upload.name] = f"{upload.name}: the zip holds no files."
                for path in files:
                    name = f"{upload.name}/{path.relative_to(Path(scratch) / 'files').as_posix()}"
                    if path in members:
                        contents.append(path.read_bytes())
                        names.append(name)
                    else:   # every file gets a row: one that is not a picture is INVALID, with why
                        problems[name] = f"{name}: not a PNG, JPEG, BMP or TIFF image; not judged."
        else:
            contents.append(data)
            names.append(upload.name)
    if len(contents) > MAX_FILES:
        problems["(more files)"] = f"Only the first {MAX_FILES} images are judged; {len(contents) - MAX_FILES} were left out."
        contents, names = contents[:MAX_FILES], names[:MAX_FILES]
    return contents, names, problems


SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"


class _Sample:
    """A sample image shipped with the app, shaped like an upload (a browser user cannot reach the server's files)."""

    def __init__(self, path: Path):
        self.name, self._path = path.name, path

    def getvalue(self) -> bytes:
        return self._path.read_bytes()


class _Kept:
    """A file of the batch dropped earlier in this browser session, shaped like an upload."""

    def __init__(self, name: str, data: bytes):
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


if st.button("Try the sample images", icon=":material/photo_library:", key="try_samples",
             help="Judge the demo's sample parts shipped with the app: three good ones and one of each defect type."):
    st.session_state["inspect_samples"] = True
    st.session_state.pop("inspect_batch", None)
if uploads:
    st.session_state["inspect_samples"] = False
    st.session_state["inspect_batch"] = [(upload.name, upload.getvalue()) for upload in uploads]
elif not returning:   # the user removed the files from the uploader: the batch goes with them
    st.session_state.pop("inspect_batch", None)
if not uploads and st.session_state.get("inspect_batch"):
    uploads = [_Kept(name, data) for name, data in st.session_state["inspect_batch"]]
    kept_note, forget = st.columns([5, 1])
    kept_note.caption(f"The {len(uploads)} file(s) you dropped earlier in this session, judged again at the current "
                      "decision. Drop files above to replace them.")
    if forget.button("Clear", key="inspect_clear", icon=":material/close:"):
        st.session_state.pop("inspect_batch", None)
        st.rerun()
elif not uploads and st.session_state.get("inspect_samples"):
    uploads = [_Sample(path) for path in sorted(SAMPLES.iterdir()) if is_image_name(path.name)]
    st.caption(f"Judging the {len(uploads)} sample images shipped with the app; drop your own above to replace them.")
if not uploads:
    st.info("Drop one or more images above to judge them, or try the sample images.")
    st.stop()

contents, names, problems = expand(uploads)
scored = score_sources(space.detector, contents, names, with_maps=True)
# every file gets a row: judged, INVALID from the frame check, or INVALID because it could not be read
results = judged_rows(scored, decision)
skipped = pd.DataFrame({"path": list(problems), "label": "", "defect_type": "", "verdict": "INVALID",
                        "reason": list(problems.values())})
shown = pd.concat([results, skipped], ignore_index=True) if len(skipped) else results

cards = st.columns(4)
for card, name in zip(cards, VERDICTS):
    card.metric(name, int((shown["verdict"] == name).sum()),
                help="INVALID counts as a reject: the frame check refused the image or it could not be read."
                if name == "INVALID" else None)

display_columns = ["path", "verdict", column, "reason"] + [c for c in workspace.score_columns(shown) if c != column]
visible = shown[[c for c in display_columns if c in shown]]
numbers = {name: "{:.5g}" for name in workspace.score_columns(visible)}
VERDICT_STYLES = {"OK": "color: #3fb68b; font-weight: 600", "REVIEW": "color: #f5a623; font-weight: 600",
                  "NG": "color: #e5534b; font-weight: 600", "INVALID": "color: #e5534b; font-weight: 600"}
# unreadable files have no scores: "—", not "None"
visible = with_dashes(visible, numbers)
styled = visible.style.format({name: form for name, form in numbers.items() if visible[name].dtype != object}) \
    .map(lambda verdict: VERDICT_STYLES.get(verdict, ""), subset=["verdict"])
selection = st.dataframe(styled, width="stretch", hide_index=True,
                         on_select="rerun", selection_mode="single-row", key="inspect_table")
st.caption("Select a row for everything about that image: its pictures with their scales, every score and the verdict.")
# a long reason does not fit its table cell; the refused images' reasons are spelled out in full here
refused = shown[shown["verdict"] == "INVALID"]
if len(refused):
    lines = [f"{as_code(row.path)}: {as_text(row.reason)}"
             for row in refused.head(MAX_REASONS_LISTED).itertuples()]
    st.markdown("**Why INVALID**  \n" + "  \n".join(lines) +
        (f"  \n… and {len(refused) - MAX_REASONS_LISTED} more (see the reason column)."
         if len(refused) > MAX_REASONS_LISTED else ""))
chosen = selection.selection.rows if selection and selection.selection else []
if chosen and chosen[0] in scored.positions:   # unreadable files have no pictures, their reason is in the table
    at = scored.positions.index(chosen[0])
    row = results.iloc[chosen[0]]
    detail = detail_from_arrays(
        space, row["path"], "uploaded", row["verdict"], row["reason"],
        {name: float(row[name]) for name in workspace.score_columns(results)}, scored.images[at],
        scored.anomaly_maps[at], None if scored.reconstructions is None else scored.reconstructions[at],
        None if scored.residuals is None else scored.residuals[at])
    detail.corrections, detail.upload = space.corrections, contents[chosen[0]]
    open_dialog(detail, workspace.primary_column(space))
st.download_button("Download scores.csv", scores_csv(shown), file_name="scores.csv", mime="text/csv")

if len(scored.table):
    st.subheader("Anomaly heat maps")
    scales = picture_scales(space)
    st.caption(f"Detector: {space.choice.label}. Colour scale: {scales.source}; the same for every upload, "
               "alone or in a batch.")
    # maps follow the readable images in input order
    judged = results.iloc[scored.positions]
    shown_maps = min(len(judged), MAX_HEAT_MAPS)
    pictures = [heat_picture(scored.images[i], scored.anomaly_maps[i], scales.anomaly, None, scales.top_label)
                for i in range(shown_maps)]
    captions = [f"{row.verdict} · {as_text(row.path)}" for row in judged.head(shown_maps).itertuples()]
    st.image(pictures, caption=captions, width=240, clamp=True)
