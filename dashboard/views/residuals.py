"""Residuals: original, reconstruction, residual and heat map for every image, page by page.

With a memory bank selected there is no reconstruction; the page shows its patch-distance map. The NCAE on
features reconstructs feature maps, not the image: the page shows its feature residual upsampled to the image.
"""

import numpy as np
import streamlit as st

from dashboard import workspace
from dashboard.detail import detail_for_row, open_dialog
from dashboard.images import anomaly_picture, heat_picture, residual_picture
from dashboard.maps import map_page, picture_scales
from dashboard.words import as_code, as_text

PAGE_SIZE = 8

st.title("Residuals")
space = workspace.current()
if space is None:
    st.stop()
key = space.map_key()
st.caption(f"Detector: **{space.choice.label}** (change it on the Data & Model page).")

filters = st.columns([1, 2, 1, 1, 1])
labels = filters[0].multiselect("Label", sorted(space.table["label"].replace("", "unknown").unique()), key="res_labels")
types = filters[1].multiselect("Defect type", sorted(t for t in space.table["defect_type"].unique() if t),
                               key="res_types")
sort_by = filters[2].selectbox("Sort by", workspace.score_columns(space.table), index=workspace.score_columns(space.table)
                               .index(workspace.current_column(space)), key="res_sort")
descending = filters[3].toggle("Highest first", value=True, key="res_desc")
per_image = filters[4].toggle("Own scale", value=False, key="res_scale",
                              help="Off: the run's own scale, the same for every image and page, so a good part "
                                   "looks calm. On: each picture stretched to its own maximum.")

view = space.table
if labels:
    view = view[view["label"].replace("", "unknown").isin(labels)]
if types:
    view = view[view["defect_type"].isin(types)]
view = view.sort_values(sort_by, ascending=not descending)
pages = max(1, int(np.ceil(len(view) / PAGE_SIZE)))
page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="res_page")
shown = view.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
if space.has_reconstructions:
    explained = "Residual: red = brighter than the model expects, blue = darker. Heat map: the smoothed |residual|."
elif space.has_feature_residuals:
    explained = ("Feature residual: not a difference of pixels but of the image's ImageNet features (EfficientNet-Lite0) "
                 "and the autoencoder's reconstruction of them, one value per feature position (the RMS over the "
                 "channels), upsampled to the image. " + (
                     "Shown is how far it exceeds what held-out good images show at the same distance from the "
                     "border, in units of their spread there: red = more than good images show, black = no more. "
                     "Heat map: the same, smoothed." if space.feature_residual_is_calibrated else
                     "Red = features on average above what the model expects, blue = below. Heat map: the smoothed "
                     "|feature residual|."))
else:
    explained = "Heat map: each patch's distance to its nearest good patch in the memory bank."
st.caption(f"{len(view)} images match. {explained}")
if shown.empty:
    st.info("No image matches these filters.")
    st.stop()

maps = map_page(key, tuple(shown["source"]), tuple(shown["mask"]))
scales = picture_scales(space)
st.caption(f"Colour scales: {'each picture its own' if per_image else scales.source}. "
           "Ground-truth outlines in cyan, drawn just outside the marked region.")
if space.has_reconstructions:
    titles = ("Image", "Original", "Reconstruction", "Residual", "Heat map")
elif space.has_feature_residuals:
    titles = ("Image", "Original", "Feature residual", "Heat map")
else:
    titles = ("Image", "Original", "Anomaly map", "Heat map")
widths = [2] + [1] * (len(titles) - 1)


def map_scale(index: int) -> float:
    return (float(maps.anomaly_maps[index].max()) if per_image else scales.anomaly) or 1.0


def heat(index: int):
    return heat_picture(maps.images[index], maps.anomaly_maps[index], map_scale(index), maps.masks[index],
                        "" if per_image else scales.top_label)


for column, title in zip(st.columns(widths), titles):
    column.markdown(f"**{title}**")
for index, row in enumerate(shown.itertuples()):
    cells = st.columns(widths)
    verdict = "defect" if row.label == "defect" else row.label or "unlabelled"
    cells[0].markdown(f"{as_code(row.path)}  \n{verdict}{' · ' + as_text(row.defect_type) if row.defect_type else ''}  \n"
                      f"{sort_by} = {getattr(row, sort_by):.5g}")
    cells[1].image(maps.images[index], clamp=True, width="stretch")
    residual_scale = None if maps.residuals is None else \
        float(np.abs(maps.residuals[index]).max()) if per_image else scales.residual
    if space.has_reconstructions:
        cells[2].image(np.clip(maps.reconstructions[index], 0, 1), clamp=True, width="stretch")
        cells[3].image(residual_picture(maps.residuals[index], residual_scale or 1.0), clamp=True, width="stretch")
    elif space.has_feature_residuals:
        cells[2].image(residual_picture(maps.residuals[index], residual_scale or 1.0), clamp=True, width="stretch")
    else:
        scale = map_scale(index)
        cells[2].image(anomaly_picture(maps.anomaly_maps[index], scale), clamp=True, width="stretch")
    cells[-1].image(heat(index), clamp=True, width="stretch")
    if cells[0].button("Details", key=f"large-{row.path}", icon=":material/open_in_full:"):
        open_dialog(detail_for_row(space, row.Index), workspace.primary_column(space))
