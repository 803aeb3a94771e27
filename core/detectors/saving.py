"""Saving and loading a detector's files inside a run folder: Keras models, ``.npy`` arrays and their digests.

Each detector's ``bundle_state`` writes its files with these and ``from_bundle`` reads them back;
:mod:`core.runs.bundles` writes the manifest that vouches for them (their SHA-256) and checks it before
any of these readers opens a file. Keras models load with ``safe_mode=True``, arrays with
``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from core.errors import BundleError
from core.files import atomic_path, atomic_writer

MODEL_FILE = "model.keras"
MAX_ARRAY_BYTES = 2 * 1024 ** 3


# Listing runs (every 2 s on Data & Model) and opening a page re-check each run's manifest; a PaDiM run holds
# 52 MB of arrays (60 ms to hash). Digests are reused while a file keeps its inode, size and modification
# time; loading a bundle for use always hashes afresh.
_DIGESTS: dict[tuple, str] = {}
_DIGESTS_LIMIT = 512
_DIGESTS_LOCK = threading.Lock()


def sha256_of(path: Path, reuse: bool = False) -> str:
    """The file's SHA-256; with ``reuse``, the one computed earlier if the file is unchanged since."""
    if reuse:
        status = os.stat(path)
        key = (str(Path(path).resolve()), status.st_ino, status.st_size, status.st_mtime_ns)
        known = _DIGESTS.get(key)
        if known is not None:
            return known
        digest = sha256_of(path)
        with _DIGESTS_LOCK:   # another thread may clear the cache at any moment: the digest is returned as computed
            if len(_DIGESTS) >= _DIGESTS_LIMIT:
                _DIGESTS.clear()
            _DIGESTS[key] = digest
        return digest
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_keras_model(network, directory: Path, name: str = MODEL_FILE) -> str:
    """Save ``network`` as an inference-only ``.keras`` file in ``directory``, atomically; returns its name."""
    import keras

    with atomic_path(Path(directory) / name, suffix=".keras") as temporary:
        # a fresh, never-compiled twin: the bundle is for inference, and optimizer state would triple it
        twin = keras.Model.from_config(network.get_config())
        twin.set_weights(network.get_weights())
        twin.save(temporary)
    return name


def load_keras_model(directory: Path, manifest: dict, name: str | None = None, input_shape: tuple | None = None):
    """A bundle's Keras model (hash already checked by :func:`read_manifest`), loaded with ``safe_mode``."""
    import keras

    import core.detectors.autoencoder.layers  # noqa: F401  registers NeighborConv2D for deserialisation

    name = name or manifest["model_file"]
    path = vouched_file(directory, manifest, name)
    try:
        network = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad archive
        raise BundleError(f"{directory}: Keras could not load {name} ({type(error).__name__}).") from None
    if input_shape is not None and tuple(network.input_shape[1:]) != tuple(input_shape):
        raise BundleError(f"{directory}: the model's input shape {network.input_shape[1:]} does not match "
                          f"the manifest's input size {input_shape[0]}.")
    return network


def save_array(directory: Path, name: str, array: np.ndarray) -> str:
    """Save one array as ``name`` (``.npy``, no pickles) in ``directory``, atomically; returns the name."""
    with atomic_writer(Path(directory) / name) as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    return name


def vouched_file(directory: Path, manifest: dict, name: str) -> Path:
    """A bundle file whose hash the manifest holds (and :func:`read_manifest` checked); others are refused."""
    if name != manifest["model_file"] and name not in manifest.get("files", {}):
        raise BundleError(f"{directory}: the manifest does not vouch for {name}; refusing to read it.")
    return Path(directory) / name


def load_array(directory: Path, manifest: dict, name: str, dtype=np.float32, ndim: int | None = None) -> np.ndarray:
    """One ``.npy`` array of a bundle (hash already checked), refusing pickles and unexpected types or shapes."""
    path = vouched_file(directory, manifest, name)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, found = readers[version](handle)
        if found != np.dtype(dtype) or (ndim is not None and len(shape) != ndim) or \
                int(np.prod(shape, dtype=np.int64)) * found.itemsize > MAX_ARRAY_BYTES:
            raise BundleError(f"{path}: holds {found} data of shape {shape}, not what this detector saves.")
        return np.load(path, allow_pickle=False)
    except BundleError:
        raise
    except (OSError, ValueError) as error:
        raise BundleError(f"{path}: not a readable array ({error}).") from None
