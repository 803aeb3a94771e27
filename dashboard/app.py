"""Residual Lab dashboard entry point (router). The full pages arrive with the dashboard issue."""

import streamlit as st

st.set_page_config(page_title="Residual Lab", layout="wide")


def welcome() -> None:
    st.title("Residual Lab")
    st.write(
        "Image anomaly detection for quality inspection with a Neighbor Convolution AutoEncoder (NCAE). "
        "The engine is ready from the command line: `python -m core demo-data`, `train`, `score` and "
        "`evaluate` (see the README). The interactive pages (residual gallery, statistics, live threshold "
        "tuning, drag-and-drop inspection) are being built."
    )


st.navigation([st.Page(welcome, title="Welcome", default=True)]).run()
