"""What the server exposes and keeps: bound to this machine, folders inside the data roots, old uploads go."""

import os
import time
import tomllib
from pathlib import Path

import pytest

from core.errors import InputError
from dashboard import resources

ROOT = Path(__file__).resolve().parents[2]


def test_the_server_listens_on_this_machine_only_and_hides_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showErrorDetails"] == "none"
    assert config["runner"]["magicEnabled"] is False
    assert config["runner"]["postScriptGC"] is False   # a full collection after every run delayed the next click
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["fileWatcherType"] == "none"   # its walk over every module delayed each first visit


def test_folders_outside_the_data_roots_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(resources.DATA_ROOTS_VARIABLE, str(tmp_path / "data"))
    (tmp_path / "data" / "set").mkdir(parents=True)
    assert resources.allowed_data_folder(str(tmp_path / "data" / "set")) == (tmp_path / "data" / "set").resolve()
    for outside in ("/etc", str(tmp_path / "data" / ".." / "elsewhere"), str(tmp_path)):
        with pytest.raises(InputError, match="outside the folders this server may read"):
            resources.allowed_data_folder(outside)
    (tmp_path / "data" / "link").symlink_to("/etc")
    with pytest.raises(InputError):
        resources.allowed_data_folder(str(tmp_path / "data" / "link"))


def test_uploaded_zips_older_than_a_day_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "UPLOAD_ROOT", tmp_path)
    old, fresh = tmp_path / "old.zip", tmp_path / "fresh.zip"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    now = time.time()
    os.utime(old, (now - resources.UPLOAD_LIFETIME_SECONDS - 60,) * 2)
    resources.remove_old_uploads(now)
    assert not old.exists() and fresh.exists()


def test_a_page_run_leaves_the_keras_state_of_every_thread_alone():
    """Streamlit ends every script run with ``keras.backend.clear_session()``: a full garbage collection, TensorFlow's
    kernel cache emptied, and Keras's global state reset for every thread (a training in the background included).
    The app turns that off; its networks are built once and kept."""
    from keras.src.backend.common import global_state
    from streamlit.testing.v1 import AppTest

    global_state.set_global_attribute("residual_lab_probe", "kept")
    try:
        app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=180).run()
        assert not app.exception, app.exception
        assert global_state.get_global_attribute("residual_lab_probe") == "kept"
    finally:
        global_state.set_global_attribute("residual_lab_probe", None)


def test_the_network_warm_up_waits_until_no_page_has_run_for_a_while(monkeypatch):
    """Building the ImageNet network in the background holds Python's lock for a second or two: it waits for the pages
    to be quiet, so a quick click is answered at once. A clock of the test's own: no real waiting."""
    import types

    clock = {"now": 100.0}

    def sleep(seconds):
        clock["now"] += seconds
        if clock["now"] >= 105.0 and runs["running"]:   # the page that was running when the wait began ends at 105
            runs["running"], runs["last_ended"] = 0, clock["now"]

    runs = {"running": 0, "last_ended": 0.0}
    monkeypatch.setattr(resources, "time", types.SimpleNamespace(monotonic=lambda: clock["now"], sleep=sleep))
    monkeypatch.setattr(resources, "_PAGE_RUNS", runs)

    with resources.page_run():
        assert runs["running"] == 1
        clock["now"] = 101.0
    assert runs == {"running": 0, "last_ended": 101.0}
    resources._wait_until_the_pages_are_quiet()
    quiet = resources.QUIET_SECONDS_BEFORE_WARMING
    assert 101.0 + quiet <= clock["now"] < 101.0 + quiet + 0.5

    runs["running"] = 1   # a page is running: the wait lasts until it has ended and the quiet time has passed
    resources._wait_until_the_pages_are_quiet()
    assert runs["running"] == 0 and runs["last_ended"] + quiet <= clock["now"] < runs["last_ended"] + quiet + 0.5
