"""Read a PyTorch state dict saved in the legacy format, without PyTorch and without running its pickle.

A legacy ``torch.save`` file is five things one after another: three small pickles (a magic number,
the format version and the writer's ``sys_info``), the pickled state dict, a pickled list of storage
keys, and then each storage's raw bytes, in that order, each behind an 8-byte element count.

The state dict pickle names a handful of globals (``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the storage types). :class:`_StateDictUnpickler` maps
exactly those to harmless stand-ins of its own and refuses every other global with
:class:`UnsafeWeightsFile` before anything is called, so a tampered file cannot run code; the
tensors are then cut out of the raw storages with numpy.

The stand-ins cannot be changed once made: BUILD (which sets an object's attributes, after any check)
is refused on everything but the state dict's ``_metadata``, and every view is checked again where it
is cut (non-negative strides, offset and extent inside the storage, no more elements than the storage
holds). Whatever goes wrong, the caller sees :class:`UnsafeWeightsFile` or :class:`DamagedWeightsFile`.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
# the storage types a state dict may use, as little-endian numpy dtypes
STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
                  "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
                  "BoolStorage": "?"}
MAX_TENSOR_ELEMENTS = 1 << 31


class UnsafeWeightsFile(ValueError):
    """The file asks the unpickler for something a state dict never needs; nothing of it was run."""


class DamagedWeightsFile(ValueError):
    """The file is not a complete legacy PyTorch state dict (truncated, wrong format, inconsistent sizes)."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype
    size: int


@dataclass(frozen=True)
class _TensorView:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


class _StateDict(dict):
    """Stands in for ``collections.OrderedDict`` (dicts keep their order); takes the ``_metadata`` BUILD."""

    def __setstate__(self, state) -> None:
        pass


def _rebuild_tensor(storage, offset, shape, strides, *unused) -> _TensorView:
    if not isinstance(storage, _Storage):
        raise DamagedWeightsFile("a tensor does not point at a storage.")
    if not (isinstance(shape, tuple) and isinstance(strides, tuple) and type(offset) is int and offset >= 0
            and all(type(v) is int and v >= 0 for v in (*shape, *strides)) and len(shape) == len(strides) <= 8):
        raise DamagedWeightsFile("a tensor has a malformed shape, stride or offset.")
    if math.prod(shape) > storage.size:
        raise DamagedWeightsFile("a tensor claims more elements than its storage holds.")
    return _TensorView(storage, offset, tuple(shape), tuple(strides))


def _load_build(unpickler) -> None:
    """BUILD only for the state dict (its ``_metadata``): on a stand-in it could rewrite a checked view."""
    state = unpickler.stack.pop()
    target = unpickler.stack[-1]
    if type(target) is not _StateDict:
        raise UnsafeWeightsFile("the weights file tries to change an object after it was made (BUILD), which a "
                                "state dict never needs; refused.")
    target.__setstate__(state)


class _StateDictUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, whose opcodes can be refused one by one (the state dict pickle is small: the
    tensors' bytes follow it raw)."""

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return _StateDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeWeightsFile(f"the weights file asks for {module}.{name}, which a state dict never needs; "
                                "refused without running it.")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, element count, view metadata)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise DamagedWeightsFile("a storage reference is malformed.")
        if pid[5] is not None:
            raise DamagedWeightsFile("storage views are not supported in a state dict file.")
        if not 0 <= pid[4] <= min(MAX_TENSOR_ELEMENTS, self.file_size // pid[1].dtype.itemsize):
            raise DamagedWeightsFile("a storage declares more elements than the file could hold.")
        return _Storage(pid[2], pid[1].dtype, pid[4])


class _PlainValuesUnpickler(pickle.Unpickler):
    """For the header pickles and the key list: numbers, strings, lists, dicts only."""

    def find_class(self, module: str, name: str):
        raise UnsafeWeightsFile(f"the weights file asks for {module}.{name} where only plain values belong; "
                                "refused without running it.")


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format PyTorch state dict, as float/int numpy arrays by name.

    Raises :class:`UnsafeWeightsFile` when the pickle names any global but the few a state dict
    needs, and :class:`DamagedWeightsFile` when the file is not a complete, consistent one.
    """
    data = Path(path).read_bytes()
    try:
        return _read(data)
    except (UnsafeWeightsFile, DamagedWeightsFile):
        raise
    except Exception as error:   # MemoryError, OverflowError, anything numpy says of a view: the module's own error
        raise DamagedWeightsFile(f"the file could not be read as a state dict ({type(error).__name__}).") from None


def _read(data: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(data)
    try:
        magic = _PlainValuesUnpickler(stream).load()
        if magic != LEGACY_MAGIC_NUMBER:
            raise DamagedWeightsFile("this is not a legacy PyTorch file (wrong magic number; a zip-format "
                                     "torch.save file is not supported).")
        if _PlainValuesUnpickler(stream).load() != LEGACY_PROTOCOL_VERSION:
            raise DamagedWeightsFile("the file's PyTorch format version is not 1001.")
        system = _PlainValuesUnpickler(stream).load()
        if not (isinstance(system, dict) and system.get("little_endian") is True):
            raise DamagedWeightsFile("the file was written on a big-endian machine, which is not supported.")
        unpickler = _StateDictUnpickler(stream)
        unpickler.file_size = len(data)
        state = unpickler.load()
        keys = _PlainValuesUnpickler(stream).load()
    except (UnsafeWeightsFile, DamagedWeightsFile):
        raise
    except Exception as error:  # a truncated or mangled pickle raises many types
        raise DamagedWeightsFile(f"the file could not be read as a state dict ({type(error).__name__}).") from None
    if not isinstance(state, dict) or not all(isinstance(v, _TensorView) for v in state.values()):
        raise DamagedWeightsFile("the file does not hold a state dict of tensors.")
    storages = {view.storage.key: view.storage for view in state.values()}
    if not (isinstance(keys, list) and set(keys) == set(storages)):
        raise DamagedWeightsFile("the file's storage list does not match its tensors.")
    position, raw = stream.tell(), {}
    for key in keys:
        storage = storages[key]
        if position + 8 > len(data):
            raise DamagedWeightsFile("the file is truncated.")
        (count,) = struct.unpack_from("<q", data, position)
        length = count * storage.dtype.itemsize
        if count != storage.size or position + 8 + length > len(data):
            raise DamagedWeightsFile("a storage's size disagrees with the file (truncated or tampered).")
        raw[key] = np.frombuffer(data, storage.dtype, count, position + 8)
        position += 8 + length
    return {name: _cut(view, raw[view.storage.key]) for name, view in state.items()}


def _cut(view: _TensorView, storage: np.ndarray) -> np.ndarray:
    # checked again here, on the view as it is now, with Python's integers (no overflow)
    if type(view) is not _TensorView or any(stride < 0 for stride in view.strides) or view.offset < 0 or \
            any(extent < 0 for extent in view.shape) or math.prod(view.shape) > len(storage):
        raise DamagedWeightsFile("a tensor has a malformed shape, stride or offset.")
    last = view.offset + sum((extent - 1) * stride for extent, stride in zip(view.shape, view.strides)
                             if extent > 0)
    if math.prod(view.shape) > 0 and (view.offset >= len(storage) or last >= len(storage)):
        raise DamagedWeightsFile("a tensor reaches outside its storage.")
    itemsize = storage.dtype.itemsize
    tensor = np.lib.stride_tricks.as_strided(storage[view.offset:], view.shape,
                                             tuple(stride * itemsize for stride in view.strides), writeable=False)
    return np.array(tensor)  # a native-endian copy, independent of the file's bytes
