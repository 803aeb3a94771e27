"""Loading the detection engine (TensorFlow, Keras and the dashboard's modules) as soon as the server starts.

Importing TensorFlow takes several seconds. Under ``dashboard/server.py`` (what ``make run`` serves) the import starts
in a background thread when the server starts, so it runs while the browser loads the page and the first visitor's
page waits only for what is left of it. Under a plain ``streamlit run dashboard/app.py`` (and in ``AppTest``) nothing
starts early and the first page run imports the engine itself, as before. Either way the page shows its title and
what is loading first (``app.py``).

This module imports neither TensorFlow nor Streamlit: the server imports it before either is needed. While the
import runs, the process's file descriptor 2 points at /dev/null (``core.quiet``: TensorFlow's native start-up
chatter), so the server's own log lines of those few seconds are not written either.
"""

from __future__ import annotations

import logging
import sys
import threading

LOADER_THREAD = "engine-loading"
_LOADED = threading.Event()
_LOADER: list[threading.Thread] = []
_LOADER_LOCK = threading.Lock()


def _load() -> None:
    try:
        from core.quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        # what every page imports next (pandas, scikit-learn, plotly, the engine's own modules): half a second more
        import dashboard.resources  # noqa: F401
        import dashboard.workspace  # noqa: F401
        import dashboard.figures  # noqa: F401
    except BaseException:   # noqa: BLE001 - the page imports again in its own thread and shows what went wrong
        return
    _LOADED.set()
    from dashboard.workspace import open_the_demo

    # the server's caches say what they are doing on the page of the run that asked; this thread belongs to no page,
    # which Streamlit logs as a warning on every cached call
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(_NoPageWarningsFromHere())
    open_the_demo()


class _NoPageWarningsFromHere(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != LOADER_THREAD


def start_loading_the_engine() -> None:
    """Start importing the engine in a background thread (once per process)."""
    with _LOADER_LOCK:
        if _LOADER:
            return
        loader = threading.Thread(target=_load, name=LOADER_THREAD, daemon=True)
        _LOADER.append(loader)
        loader.start()


def engine_loaded() -> bool:
    return _LOADED.is_set() or (not _LOADER and "tensorflow" in sys.modules)


def wait_for_the_engine() -> None:
    """Return once the engine is imported: wait for the background import if one started (two threads importing the
    same packages at once can each see the other's modules half made), then import in this thread, which is
    immediate after a background import that succeeded and raises here, where the page shows it, if it failed.
    The demo the loading thread opens next is not waited for here: a page that needs it waits in the cache."""
    if _LOADER:
        loader = _LOADER[0]
        while loader.is_alive() and not _LOADED.wait(0.05):
            pass
    from core.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
