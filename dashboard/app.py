"""Residual Lab dashboard: the router. Each page is one file in dashboard/views/."""

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="Residual Lab", page_icon=":material/search:", layout="wide")

PAGES = Path(__file__).parent / "views"
navigation = st.navigation([
    st.Page(PAGES / "data_model.py", title="Data & Model", icon=":material/folder_open:", default=True),
    st.Page(PAGES / "residuals.py", title="Residuals", icon=":material/image:"),
    st.Page(PAGES / "statistics.py", title="Statistics", icon=":material/scatter_plot:"),
    st.Page(PAGES / "threshold.py", title="Threshold", icon=":material/tune:"),
    st.Page(PAGES / "compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page(PAGES / "inspect.py", title="Inspect", icon=":material/search:"),
    st.Page(PAGES / "review.py", title="Review", icon=":material/rate_review:"),
    st.Page(PAGES / "report.py", title="Report", icon=":material/description:"),
])
with st.sidebar:
    st.caption("Residual Lab — NCAE anomaly detection. Higher score = more anomalous; "
               "a part is rejected when score ≥ threshold.")

from dashboard.startup import a_page_started, engine_loaded, wait_for_the_engine  # noqa: E402 (needs the path above)


def _fetch_the_chart_and_table_code() -> None:
    """An empty chart and table in a container one pixel high, so that the browser fetches and starts Plotly's and
    the data grid's code (several megabytes, loaded at their first use) while the server is still importing
    TensorFlow, instead of after it, when the first page with a chart arrives: on a first visit to Compare its first
    figures showed 1.5 s sooner here. They go with the loading message. (Plotly's smallest figure is 10 px high.)"""
    import pandas as pd
    import plotly.graph_objects as go

    with st.container(height=1, border=False):
        st.plotly_chart(go.Figure(layout={"height": 10, "margin": {"l": 0, "r": 0, "t": 0, "b": 0}}),
                        config={"staticPlot": True, "displayModeBar": False}, key="fetch_chart_code")
        st.dataframe(pd.DataFrame({"": []}), hide_index=True, key="fetch_table_code")


a_page_started()
if not engine_loaded():
    # the first visit to a fresh server waits for TensorFlow's import (several seconds; under dashboard/server.py
    # partly done before the server listened, or all of it when no one came in its first seconds): the title, the
    # pages and what is loading are on the screen first, never a blank page
    loading = st.empty()
    with loading.container():
        st.title("Residual Lab")
        st.info("Starting the detection engine (TensorFlow and the model)… the first visit to a new server takes a "
                "few seconds.", icon=":material/hourglass_top:")
        _fetch_the_chart_and_table_code()
    wait_for_the_engine()
    loading.empty()
from dashboard import resources  # noqa: E402 (after the title is on the screen)

resources.keep_keras_state_between_runs()
resources.keep_backbone_outputs()
with resources.page_run():
    navigation.run()
