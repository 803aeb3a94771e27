"""score as an unlucky operator or a careful attacker runs it: every file gets a row, nothing that is not a regular
file is replaced or read, and a bad threshold file is one sentence. In-process (core.cli.main) where the exit code
and the words are the point; the standard output and error are captured."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO_RUN = ROOT / "assets" / "demo_model"


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"{index:03d}.png"
        Image.fromarray(generator.integers(60, 200, (64, 64), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def score(*arguments) -> int:
    return main(["score", "--run", str(DEMO_RUN), *map(str, arguments)])


@pytest.mark.parametrize("layout", ["flat", "mvtec_test", "mvtec", "casting"])
def test_score_gives_every_image_file_under_a_folder_a_row(tmp_path, layout, capsys):
    """A flat folder of 32 good and 8 cracked parts once gave 18 rows: the layout's split left 22 good images out."""
    root = tmp_path / layout
    if layout == "flat":
        files = write_images(root / "good", 32) + write_images(root / "crack", 8, seed=1)
    elif layout == "mvtec_test":
        files = write_images(root / "test" / "good", 60) + write_images(root / "test" / "crack", 8, seed=1)
        root = root / "test"
    elif layout == "mvtec":
        files = (write_images(root / "train" / "good", 12) + write_images(root / "test" / "good", 6, seed=2)
                 + write_images(root / "test" / "crack", 4, seed=1))
    else:
        files = (write_images(root / "train" / "ok_front", 10) + write_images(root / "train" / "def_front", 3, seed=1)
                 + write_images(root / "test" / "ok_front", 5, seed=2) + write_images(root / "test" / "def_front", 4,
                                                                                       seed=3))
    out = tmp_path / "scores.csv"
    assert score("--data", root, "--out", out) == 0
    rows = pd.read_csv(out, keep_default_na=False)
    assert len(rows) == len(files) and len(set(rows["path"])) == len(files)   # one row per file on disk
    assert f"scored {len(files)} images" in capsys.readouterr().err


def test_out_never_replaces_a_device_or_a_link(tmp_path, capsys):
    image = write_images(tmp_path / "in", 1)[0]
    target = tmp_path / "real.csv"
    target.write_text("kept\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert score("--data", image, "--out", link) == 2
    assert link.is_symlink() and target.read_text() == "kept\n"
    assert "not a regular file" in capsys.readouterr().err
    if os.geteuid() == 0:   # a device node of our own, like /dev/null: as root a rename would replace it
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        assert score("--data", image, "--out", device) == 2
        assert stat.S_ISCHR(os.lstat(device).st_mode)
        assert not list(tmp_path.glob(".null.*.partial"))


def test_out_dash_streams_the_csv_to_standard_output(tmp_path, capsys):
    images = write_images(tmp_path / "in", 3)
    assert score("--data", *images, "--out", "-") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("path,") and len(lines) == 4
    assert "scored 3 images into standard output" in captured.err


@pytest.mark.timeout(120)
def test_a_fifo_in_a_list_is_an_invalid_row_and_never_read(tmp_path, capsys):
    good = write_images(tmp_path / "in", 1)[0]
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    listing = tmp_path / "l.txt"
    listing.write_text(f"{fifo}\nfile://{fifo}\n{good}\n")
    out = tmp_path / "A.csv"
    assert score("--data", f"@{listing}", "--out", out) == 0
    rows = pd.read_csv(out, keep_default_na=False)
    assert len(rows) == 3
    fifo_rows = rows[rows["path"].isin([str(fifo), f"file://{fifo}"])]
    assert len(fifo_rows) == 2 and set(fifo_rows["verdict"]) == {"INVALID"}
    assert all("not a regular file" in reason for reason in fifo_rows["reason"])
    assert not list(tmp_path.glob(".A.csv.*.partial"))


@pytest.mark.timeout(120)
def test_a_fifo_as_the_list_or_as_the_threshold_file_is_refused(tmp_path, capsys):
    good = write_images(tmp_path / "in", 1)[0]
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    assert score("--data", f"@{fifo}", "--out", tmp_path / "a.csv") == 2
    assert "cannot read the list of images" in capsys.readouterr().err
    assert score("--data", good, "--out", tmp_path / "b.csv", "--threshold-file", fifo) == 2
    assert "cannot read the threshold file (not a regular file" in capsys.readouterr().err


def test_a_threshold_file_nested_100000_deep_is_bad_input(tmp_path, capsys):
    good = write_images(tmp_path / "in", 1)[0]
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert score("--data", good, "--out", tmp_path / "a.csv", "--threshold-file", deep) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(deep) in error and "Traceback" not in error


def test_a_threshold_file_is_read_whole_only_when_small(tmp_path):
    from core.errors import InputError
    from core.evaluation.thresholds import read_threshold_file

    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"format": "x", "pad": "x" * (2 << 20)}))
    with pytest.raises(InputError, match="not readable JSON"):
        read_threshold_file(huge)


class _Interrupt(BaseException):
    """What a SIGTERM becomes in `score` (raised where the process is, see core.cli)."""


def test_an_interrupt_anywhere_in_reading_a_file_stops_the_read_and_leaves_no_descriptor(tmp_path):
    """A SIGTERM that lands while an image is read must stop the command: once it landed just after the file was
    handed to a file object, the descriptor was closed twice, "Bad file descriptor" replaced the termination, the
    image became an INVALID row and `score` scored the rest of a 20,000-image list with exit 0."""
    import inspect
    import sys

    from core.data.images import read_regular_file

    path = tmp_path / "part.png"
    path.write_bytes(b"\x89PNG" + bytes(range(256)) * 64)
    code = read_regular_file.__code__
    source, first_line = inspect.getsourcelines(read_regular_file)
    cleanup_from = first_line + next(index for index, line in enumerate(source) if line.strip() == "finally:")
    open_before = len(os.listdir("/proc/self/fd"))
    interrupted_at = set()
    for line_event in range(1, 40):
        seen = 0

        def interrupt_at_the_chosen_line(frame, event, argument):
            nonlocal seen
            if frame.f_code is not code:
                return None
            if event == "line":
                seen += 1
                if seen == line_event:
                    interrupted_at.add(frame.f_lineno)
                    raise _Interrupt()
            return interrupt_at_the_chosen_line

        sys.settrace(interrupt_at_the_chosen_line)
        try:
            data = read_regular_file(path)
        except _Interrupt:
            pass
        else:
            assert data == path.read_bytes()
            break
        finally:
            sys.settrace(None)
        # (an interrupt inside the cleanup itself may leave the descriptor to the process's exit)
        if max(interrupted_at) < cleanup_from:
            assert len(os.listdir("/proc/self/fd")) <= open_before, f"left open (line {max(interrupted_at)})"
    assert len(interrupted_at) >= 5   # every line of the function was a place to land


def test_sigterm_removes_the_partial_file(tmp_path):
    """Ctrl-C already cleaned up; a SIGTERM (a service manager stopping the job) left .partial files behind."""
    import signal
    import subprocess
    import sys
    import time

    images = write_images(tmp_path / "in", 400)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(map(str, images * 50)) + "\n")   # 20,000 rows: still running when signalled
    out = tmp_path / "scores.csv"
    process = subprocess.Popen([sys.executable, "-m", "core", "score", "--run", str(DEMO_RUN), "--data",
                                f"@{listing}", "--out", str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".scores.csv.*.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)   # polls for the partial file to exist; no timing is asserted
    assert list(tmp_path.glob(".scores.csv.*.partial")), "scoring never started"
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 143, error
    assert "terminated" in error and "Traceback" not in error
    assert not list(tmp_path.glob(".scores.csv.*.partial")) and not out.exists()


def test_an_output_on_a_read_only_file_system_is_bad_input_naming_the_users_path(tmp_path, capsys, monkeypatch):
    """A read-only output folder gave exit 1 (OSError 30); it is the user's to fix: exit 2, their path."""
    import errno
    import tempfile

    image = write_images(tmp_path / "in", 1)[0]
    out = tmp_path / "ro" / "scores.csv"

    def read_only(*arguments, **keywords):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ro" / ".scores.csv.abc.partial"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert score("--data", image, "--out", out) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'ro'}: read-only file system" in error and ".partial" not in error


def test_the_exported_inspector_is_readable_by_other_users(tmp_path):
    from core.runs.export import export_inspector

    out = export_inspector(DEMO_RUN, tmp_path / "inspector")
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for path in out.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path


def test_a_runs_decision_cannot_be_edited_unseen(tmp_path, capsys):
    """Setting default_decision.threshold to 1e6 once made a crack pass with exit 0."""
    import shutil

    from core.runs.bundles import MANIFEST_DIGEST, read_manifest

    crack = sorted((ROOT / "assets" / "samples").glob("crack_*.png"))[0]
    run = tmp_path / "run"
    shutil.copytree(DEMO_RUN, run)
    sealed = read_manifest(run)[MANIFEST_DIGEST]
    assert main(["score", "--run", str(run), "--data", str(crack), "--out", str(tmp_path / "a.csv")]) == 0
    assert pd.read_csv(tmp_path / "a.csv")["verdict"].item() == "NG"
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["default_decision"]["threshold"] = 1e6
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    capsys.readouterr()
    assert main(["score", "--run", str(run), "--data", str(crack), "--out", str(tmp_path / "b.csv")]) == 2
    error = capsys.readouterr().err
    assert "edited after the run was saved" in error and error.count("\n") == 1
    assert not (tmp_path / "b.csv").exists()
    # a threshold file stays the way to decide otherwise
    manifest["default_decision"]["threshold"] = json.loads((DEMO_RUN / "manifest.json").read_text())[
        "default_decision"]["threshold"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert read_manifest(run)[MANIFEST_DIGEST] == sealed   # the digest is over the content, not the layout


def test_a_run_saved_before_runs_were_sealed_loads_and_says_so(tmp_path, capsys):
    import shutil

    from core.runs.bundles import MANIFEST_DIGEST

    run = tmp_path / "run"
    shutil.copytree(DEMO_RUN, run)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest[MANIFEST_DIGEST]
    (run / "manifest.json").write_text(json.dumps(manifest))
    image = sorted((ROOT / "assets" / "samples").glob("good_*.png"))[0]
    assert main(["score", "--run", str(run), "--data", str(image), "--out", str(tmp_path / "a.csv")]) == 0
    assert "could not be told" in capsys.readouterr().err


def test_a_manifest_nested_100000_deep_is_refused_in_one_sentence(tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(DEMO_RUN, run)
    (run / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    image = sorted((ROOT / "assets" / "samples").glob("good_*.png"))[0]
    assert main(["score", "--run", str(run), "--data", str(image), "--out", str(tmp_path / "a.csv")]) == 2
    assert "not readable JSON" in capsys.readouterr().err


def test_newly_saved_runs_are_sealed(tiny_run):
    from core.runs.bundles import MANIFEST_DIGEST, manifest_digest, read_manifest

    manifest = read_manifest(tiny_run)
    assert manifest[MANIFEST_DIGEST] == manifest_digest(manifest)


# -- remote reads ---------------------------------------------------------------------------------------------

@pytest.fixture()
def remote_settings(monkeypatch):
    """The remote-read settings score puts in the environment, restored after the test."""
    from core.data import remote

    for variable in (remote.SCHEMES_VARIABLE, remote.CONNECT_TIMEOUT_VARIABLE, remote.READ_TIMEOUT_VARIABLE):
        monkeypatch.setenv(variable, "")
    return remote


@pytest.fixture()
def silent_host():
    """A host on 127.0.0.1 that accepts every connection and never answers; it counts how many it held at once."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held, most = [], {"at_once": 0}
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            held.append(connection)
            open_now = sum(1 for item in held if item.fileno() != -1)
            most["at_once"] = max(most["at_once"], open_now)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", most, held
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    listener.close()


@pytest.mark.timeout(120)
def test_a_host_that_never_answers_gives_invalid_rows_read_concurrently(tmp_path, capsys, remote_settings,
                                                                        silent_host):
    url, most, held = silent_host
    good = sorted((ROOT / "assets" / "samples").glob("good_*.png"))[:3]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([*(f"{url}/part{index}.png" for index in range(10)), *map(str, good)]) + "\n")
    out = tmp_path / "scores.csv"
    assert score("--data", f"@{listing}", "--out", out, "--connect-timeout", "2", "--read-timeout", "1") == 0
    rows = pd.read_csv(out, keep_default_na=False)
    assert len(rows) == 13
    silent = rows[rows["path"].str.startswith(url)]
    assert set(silent["verdict"]) == {"INVALID"} and all("no answer within" in reason for reason in silent["reason"])
    assert set(rows[~rows["path"].str.startswith(url)]["verdict"]) <= {"OK", "NG", "REVIEW"}
    assert most["at_once"] >= 2   # the ten were asked at the same time, not one after another


@pytest.mark.timeout(60)
def test_a_host_that_trickles_a_byte_at_a_time_is_cut_off_at_the_deadline(tmp_path, capsys, remote_settings):
    """Each byte arrives well within the read time-out, so only the overall deadline can end the read."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def trickle():
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.2):
                try:
                    connection.sendall(b"\x89")
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    sample = sorted((ROOT / "assets" / "samples").glob("good_*.png"))[0]
    out = tmp_path / "scores.csv"
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.png"
    try:
        assert score("--data", url, sample, "--out", out, "--connect-timeout", "2", "--read-timeout", "1") == 0
    finally:
        stop.set()
        listener.close()
    rows = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert rows.loc[url, "verdict"] == "INVALID" and "no complete answer within 3 s" in rows.loc[url, "reason"]
    assert rows.loc[str(sample), "verdict"] in ("OK", "REVIEW", "NG")


def test_an_image_served_over_http_is_scored(tmp_path, capsys, remote_settings):
    import functools
    import http.server
    import threading

    sample = sorted((ROOT / "assets" / "samples").glob("good_*.png"))[0]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(sample.parent))
    handler.log_message = lambda *arguments: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{sample.name}"
        out = tmp_path / "scores.csv"
        assert score("--data", url, sample, "--out", out) == 0
        rows = pd.read_csv(out, keep_default_na=False)
        assert rows["map_max"].iloc[0] == pytest.approx(rows["map_max"].iloc[1])   # the same picture, the same score
        missing = tmp_path / "missing.csv"
        assert score("--data", url.replace(sample.name, "nothing.png"), sample, "--out", missing) == 0
        assert "the server answered 404" in pd.read_csv(missing, keep_default_na=False)["reason"].iloc[0]
    finally:
        server.shutdown()


def test_only_the_documented_schemes_are_read(tmp_path, capsys, remote_settings):
    sample = sorted((ROOT / "assets" / "samples").glob("good_*.png"))[0]
    out = tmp_path / "scores.csv"
    uris = ["github://owner:repo@/x.png", "memory://x.png", "ftp://127.0.0.1/x.png"]
    assert score("--data", *uris, sample, "--out", out) == 0
    rows = pd.read_csv(out, keep_default_na=False).set_index("path")
    for uri in uris:
        assert rows.loc[uri, "verdict"] == "INVALID" and "is not read (allowed: file, s3, gs, http, https" in \
            rows.loc[uri, "reason"], rows.loc[uri, "reason"]
    assert score("--data", "memory://x.png", sample, "--out", out, "--allow-scheme", "memory") == 0
    assert "is not read" not in pd.read_csv(out, keep_default_na=False)["reason"].iloc[0]
