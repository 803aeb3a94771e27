"""Loading the detection engine (TensorFlow, Keras and the dashboard's modules) before the first visitor needs it.

Importing TensorFlow takes several seconds. Under ``dashboard/server.py`` (what ``make run`` serves) the import starts
in a background thread two seconds after the server started, when no page has been asked for by then, so a visitor
who comes later finds the engine loaded or loading; a visitor who comes sooner gets the title at once and the page
imports the engine itself (an import running while the browser loads the page slowed its first paint from 1 s to
2-3 s on two cores). Under a plain ``streamlit run dashboard/app.py`` (and in ``AppTest``) nothing
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
import time

LOADER_THREAD = "engine-loading"
# how long after the server starts it begins importing the engine when no page has been asked for
QUIET_START_SECONDS = 2.0
_LOADED = threading.Event()
_VISITED = threading.Event()
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


def load_what_holds_pythons_lock_longest() -> None:
    """Before the server listens: the two parts of TensorFlow's import that hold Python's lock longest in one piece,
    so that no page request waits on them while the rest of the import runs in the background. ``ml_dtypes``'s
    extension initialises for 0.6 s, and TensorFlow's C++ library (loaded here by path, so the ``tensorflow``
    package itself is not imported yet) runs its static initialisers for 0.3 s; the rest of the import holds the lock
    for at most 0.15 s at a time (the server's own requests waited up to 0.56 s otherwise, and a first visit to a
    fresh server painted its title in 2.3-3.0 s instead of 1). Nothing here is needed for correctness: a library
    that is missing or cannot be loaded is left to the import."""
    import ctypes
    import importlib.util
    from pathlib import Path

    from core.quiet import native_stderr_silenced

    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        pass
    try:
        spec = importlib.util.find_spec("tensorflow")
    except (ImportError, ValueError):
        return
    if spec is None or not spec.origin:
        return
    # its static initialisers log start-up notices straight to file descriptor 2, as the import would
    with native_stderr_silenced():
        for library in ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2"):
            path = Path(spec.origin).parent / library
            if path.is_file():
                try:
                    ctypes.CDLL(str(path))
                except OSError:
                    return


def start_loading_the_engine_unless_visited(after_seconds: float = QUIET_START_SECONDS) -> None:
    """In ``after_seconds``, start importing the engine in a background thread, unless a page has started running by
    then: that page imports the engine itself, after its title (an import running while a browser loads the page
    slows its first paint, on two cores, from 1 s to 2-3 s)."""
    def start_when_quiet() -> None:
        time.sleep(after_seconds)
        with _LOADER_LOCK:
            if _VISITED.is_set() or _LOADER:
                return
            loader = threading.Thread(target=_load, name=LOADER_THREAD, daemon=True)
            _LOADER.append(loader)
            loader.start()

    threading.Thread(target=start_when_quiet, name="engine-loading-timer", daemon=True).start()


def a_page_started() -> None:
    """Called by every page run: from now on the pages import the engine themselves when it is not loaded."""
    if not _VISITED.is_set():
        with _LOADER_LOCK:
            _VISITED.set()


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
