"""Residuals: original, reconstruction, residual and heat map for every image, page by page."""

import numpy as np
import streamlit as st

from dashboard import state
from dashboard.images import overlay, signed_colours
from dashboard.maps import global_residual_scale, residual_page

PAGE_SIZE = 8

st.title("Residuals")
space = state.workspace()
if space is None:
    st.stop()
model = state.model_choice()
sha = space.manifest["model_sha256"]

filters = st.columns([1, 2, 1, 1, 1])
labels = filters[0].multiselect("Label", sorted(space.table["label"].replace("", "unknown").unique()), key="res_labels")
types = filters[1].multiselect("Defect type", sorted(t for t in space.table["defect_type"].unique() if t),
                               key="res_types")
sort_by = filters[2].selectbox("Sort by", state.score_columns(space.table), index=state.score_columns(space.table)
                               .index(state.current_column(space)), key="res_sort")
descending = filters[3].toggle("Highest first", value=True, key="res_desc")
per_image = filters[4].toggle("Per-image colour scale", value=False, key="res_scale",
                              help="Off: one scale for the whole set, so a good part looks calm.")

view = space.table
if labels:
    view = view[view["label"].replace("", "unknown").isin(labels)]
if types:
    view = view[view["defect_type"].isin(types)]
view = view.sort_values(sort_by, ascending=not descending)
pages = max(1, int(np.ceil(len(view) / PAGE_SIZE)))
page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="res_page")
shown = view.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
st.caption(f"{len(view)} images match. Residual: red = brighter than the model expects, blue = darker.")
if shown.empty:
    st.info("No image matches these filters.")
    st.stop()

images, reconstructions, residuals, masks = residual_page(model.path, sha, tuple(shown["source"]), tuple(shown["mask"]))
set_scale = global_residual_scale(model.path, sha, tuple(space.table["source"]))

header = st.columns([2, 1, 1, 1, 1])
for column, title in zip(header, ("Image", "Original", "Reconstruction", "Residual", "Heat map")):
    column.markdown(f"**{title}**")
for index, row in enumerate(shown.itertuples()):
    scale = float(np.abs(residuals[index]).max()) if per_image else set_scale
    cells = st.columns([2, 1, 1, 1, 1])
    verdict = "defect" if row.label == "defect" else row.label or "unlabelled"
    cells[0].markdown(f"`{row.path}`  \n{verdict}{' · ' + row.defect_type if row.defect_type else ''}  \n"
                      f"{sort_by} = {getattr(row, sort_by):.5g}")
    cells[1].image(images[index], clamp=True, width="stretch")
    cells[2].image(np.clip(reconstructions[index], 0, 1), clamp=True, width="stretch")
    cells[3].image(signed_colours(residuals[index], scale), clamp=True, width="stretch")
    heat = overlay(images[index], np.abs(residuals[index]), scale, masks[index])
    cells[4].image(heat, clamp=True, width="stretch")
    if cells[0].button("View large", key=f"large-{row.path}"):
        st.session_state["large_view"] = index

if "large_view" in st.session_state and st.session_state["large_view"] < len(shown):
    index = st.session_state.pop("large_view")

    @st.dialog(f"{shown.iloc[index]['path']}", width="large")
    def large() -> None:
        scale = float(np.abs(residuals[index]).max()) if per_image else set_scale
        left, right = st.columns(2)
        left.image(images[index], caption="original", clamp=True, width="stretch")
        right.image(overlay(images[index], np.abs(residuals[index]), scale, masks[index]),
                    caption="heat map (cyan: ground-truth outline)", clamp=True, width="stretch")

    large()
