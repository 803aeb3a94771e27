"""The dashboard's server: ``streamlit run dashboard/server.py`` (what ``make run`` does).

The same pages as ``streamlit run dashboard/app.py``, served as a Streamlit ``App`` whose start-up begins importing
the detection engine in the background (:mod:`dashboard.startup`): by the time a browser has loaded the page, most of
TensorFlow's import is done, instead of starting then.
"""

import sys
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/server.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

from dashboard.startup import start_loading_the_engine  # noqa: E402


@asynccontextmanager
async def _load_the_engine_early(_app):
    start_loading_the_engine()
    yield


app = st.App(str(Path(__file__).with_name("app.py")), lifespan=_load_the_engine_early)
