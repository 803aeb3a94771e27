"""The dashboard's server: ``streamlit run dashboard/server.py`` (what ``make run`` does).

The same pages as ``streamlit run dashboard/app.py``, served as a Streamlit ``App`` whose start-up prepares the
detection engine (:mod:`dashboard.startup`): what holds Python's lock longest is loaded before the server listens,
and the rest of the import starts in the background unless a visitor came first.
"""

import sys
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/server.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

from dashboard.startup import (load_what_holds_pythons_lock_longest,  # noqa: E402
                               start_loading_the_engine_unless_visited)

load_what_holds_pythons_lock_longest()


@asynccontextmanager
async def _load_the_engine_early(_app):
    start_loading_the_engine_unless_visited()
    yield


app = st.App(str(Path(__file__).with_name("app.py")), lifespan=_load_the_engine_early)
