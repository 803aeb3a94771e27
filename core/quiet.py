"""Import TensorFlow without the native start-up chatter it writes straight to file descriptor 2.

TensorFlow's C++ logging (CUDA probing on a CPU-only machine, absl's pre-init notice) ignores
``TF_CPP_MIN_LOG_LEVEL`` at import time, and a command-line tool promises one clear line on
stderr, so the descriptor is pointed at /dev/null for the length of the import only.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 pointed at /dev/null meanwhile (TensorFlow's C++ code writes there directly)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    with native_stderr_silenced():
        import keras  # noqa: F401  (imported here, silenced, for the callers that use it next)
        import tensorflow

        tensorflow.config.list_physical_devices()  # device probing logs too; do it now, silenced
        # Python-side warnings such as "triggered tf.function retracing" (a last, smaller batch) are hints for
        # TensorFlow developers, not for someone reading a command's one-line messages
        tensorflow.get_logger().setLevel("ERROR")
