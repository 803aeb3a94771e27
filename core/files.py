"""Atomic file writes: a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

# an output the user pointed at a read-only or full file system: theirs to fix, not a failure of ours
STORAGE_ERRORS = {errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device",
                  errno.EDQUOT: "disk quota exceeded"}


@contextlib.contextmanager
def locked(path: str | os.PathLike):
    """Hold an exclusive lock on ``path``'s lock file (``.NAME.lock`` beside it) for the block: a read-modify-write
    of ``path`` by another thread or process waits instead of overwriting this one's change."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / f".{path.name}.lock"
    key = str(lock_path.resolve())
    with _THREAD_LOCKS_GUARD:   # flock is per open file: threads of one process also need a lock of their own
        thread_lock = _THREAD_LOCKS.setdefault(key, threading.RLock())
    with thread_lock:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)   # closing releases the lock


_THREAD_LOCKS: dict = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class NotARegularFile(OSError):
    """The target of a write is a device, a pipe, a socket, a folder or a symbolic link: never replaced."""


def refuse_unless_regular(path: Path) -> None:
    """Raise :class:`NotARegularFile` when ``path`` exists and is anything but a regular file. A rename over
    ``/dev/null`` as root would replace the device with a file; over a symbolic link, the link."""
    if path.is_symlink() or (os.path.lexists(path) and not path.is_file()):
        raise NotARegularFile(f"{path}: not a regular file (a device, pipe, folder or link is never replaced)")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb"):
    """A handle on a temporary file beside ``path`` that replaces ``path`` only when the block ends well; only a
    regular file is ever replaced (:class:`NotARegularFile` otherwise)."""
    path = Path(path)
    refuse_unless_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; a saved file should read like any other
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".partial"):
    """A temporary path beside ``path`` for a writer that wants a file name, not a handle (Keras'
    ``save`` and ``save_weights``, which go by the ``suffix``); it replaces ``path`` only when the block
    ends well."""
    path = Path(path)
    refuse_unless_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(descriptor)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; a saved file should read like any other
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_copy(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    atomic_write_bytes(destination, Path(source).read_bytes())


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays reach JSON from metrics and manifests
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
