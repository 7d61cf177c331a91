"""Readers for the array caches of published few-shot code: pickles (Python 2 or 3) and npz.

Pickles are read with a restricted unpickler: a dataset cache holds only NumPy arrays, dtypes
and scalars inside plain containers (dicts, lists, tuples, sets, strings, bytes, numbers), so any
other global a pickle names (``os.system``, a class of some module ...) is refused before it is
imported or called, and the file is reported by name. Loading a crafted cache cannot run code.
"""

from __future__ import annotations

import codecs
import collections
import pickle
import struct
import zipfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alfa.data.dataset import ImageClassDataset, LazyImageDataset, TensorImageDataset
from alfa.data.images import ArrayReader, ImageSpec
from alfa.errors import DataError

__all__ = ["array_dataset", "decode_keys", "group_rows", "load_pickle", "npz_array"]


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global that a plain-data cache never needs (nothing was run)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"refused global {name!r}")
        self.name = name


@cache
def _allowed_globals() -> dict[str, Any]:
    """``module.name`` -> object, for the globals a NumPy or plain-data pickle may name.

    NumPy's functions are taken from how this NumPy pickles its own arrays and scalars, and
    listed under both the NumPy 1 (``numpy.core``) and NumPy 2 (``numpy._core``) module names.
    """
    numpy_functions = {
        "multiarray._reconstruct": np.ndarray.__reduce__(np.zeros(1))[0],
        "multiarray.scalar": np.float64(0).__reduce__()[0],
        "numeric._frombuffer": np.zeros(1).__reduce_ex__(5)[0],
    }
    allowed: dict[str, Any] = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for name, function in numpy_functions.items():
        allowed[f"numpy.core.{name}"] = allowed[f"numpy._core.{name}"] = function
    plain = (set, frozenset, complex, bytes, bytearray, list, tuple, dict, str, int, float, bool)
    allowed |= {f"builtins.{kind.__name__}": kind for kind in plain}
    allowed["collections.OrderedDict"] = collections.OrderedDict
    allowed["_codecs.encode"] = codecs.encode  # how protocol 2 stores bytes
    return allowed


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that finds only :func:`_allowed_globals` and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins"}.get(module, module)  # Python 2 pickles
        found = _allowed_globals().get(f"{module}.{name}")
        if found is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return found


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` allowing only NumPy arrays and plain data; Python 2 pickles load too.

    Tries ``encoding='bytes'``, then ``'latin1'`` (Python 2 strings). Every global the pickle
    names must be a NumPy array, dtype or scalar constructor or a plain container type (see the
    module docstring); anything else is refused without being imported or called.

    Raises:
        DataError: The file is missing, is not a readable pickle, or names another global.
    """
    errors: list[str] = []
    for encoding in ("bytes", "latin1"):
        try:
            with open(path, "rb") as fh:
                return _PlainUnpickler(fh, encoding=encoding).load()
        except FileNotFoundError as exc:
            raise DataError(f"file not found: {path} (check the dataset path)") from exc
        except _RefusedGlobal as exc:
            raise DataError(
                f"refusing to load {path}: it names {exc.name!r}, which a dataset cache of "
                "NumPy arrays and plain data never needs (loading it could run code; nothing "
                "was run); get the file again from a source you trust"
            ) from None
        except (
            pickle.UnpicklingError,
            EOFError,
            UnicodeDecodeError,
            ValueError,
            TypeError,
            AttributeError,
            ImportError,
            IndexError,
        ) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    raise DataError(
        f"cannot unpickle {path} ({errors[-1]}); the file is corrupt or incomplete, "
        "download it again"
    )


def decode_keys(obj: Any) -> Any:
    """Turn ``bytes`` keys (and bytes/``np.bytes_`` strings in lists) of a dict into ``str``."""
    if isinstance(obj, dict):
        return {_text(k): v for k, v in obj.items()}
    return obj


def _text(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("latin1")
    return value


def text_list(values: Sequence[Any]) -> list[str]:
    """Class names as ``str`` whatever the pickle encoding produced."""
    return [str(_text(v)) for v in values]


def npz_array(path: Path, key: str) -> np.ndarray:
    """Array ``key`` of an ``.npz``: memory-mapped when stored uncompressed, else read fully.

    Raises:
        DataError: The file is missing, not an npz archive or has no array ``key``.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(f"{key}.npy")
            except KeyError:
                names = [n.removesuffix(".npy") for n in zf.namelist()]
                raise DataError(
                    f"{path} has no array {key!r} (it has {names}); is this the right file?"
                ) from None
            if info.compress_type == zipfile.ZIP_STORED:
                mapped = _memmap_member(path, info)
                if mapped is not None:
                    return mapped
    except FileNotFoundError as exc:
        raise DataError(f"file not found: {path} (check the dataset path)") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot read npz archive {path}: {exc} (download it again)") from exc
    try:
        with np.load(path) as data:
            return np.asarray(data[key])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read array {key!r} from {path}: {exc}") from exc


def _memmap_member(path: Path, info: zipfile.ZipInfo) -> np.ndarray | None:
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
        except ValueError:
            return None
        if dtype.hasobject:
            return None
        offset = fh.tell()
    return np.memmap(
        path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C"
    )


def group_rows(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Row indices of each class ``0..num_classes-1`` (rows labelled ``-1`` are skipped)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels + 1, minlength=num_classes + 1)
    return np.split(order, np.cumsum(counts)[:-1])[1:]


def array_dataset(
    array: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    spec: ImageSpec,
    *,
    source: str,
    bgr: bool = False,
    in_memory: bool | None = None,
) -> ImageClassDataset:
    """A dataset over a decoded ``uint8 [N, H, W, C]`` array with per-row class ``labels``.

    When the stored images already have the requested size and channel order the array itself
    becomes the image tensor (a permuted view, no copy). Otherwise rows are converted on demand
    (``in_memory`` False or None) or all at once (``in_memory=True``).
    """
    if array.ndim not in (3, 4) or array.shape[0] != len(labels):
        raise DataError(
            f"{source}: expected images [N, H, W, C] matching {len(labels)} labels, "
            f"got shape {tuple(array.shape)}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < -1 or labels.max() >= len(class_names)):
        raise DataError(f"{source}: labels outside 0..{len(class_names) - 1}")
    height, width = array.shape[1], array.shape[2]
    chans = array.shape[3] if array.ndim == 4 else 1
    direct = (
        height == width == spec.size
        and chans == spec.channels
        and not bgr
        and not spec.invert
        and array.dtype == np.uint8
        and not isinstance(array, np.memmap)
        and array.flags.writeable
    )
    if direct and in_memory is not False:
        view = torch.from_numpy(array if array.ndim == 4 else array[..., None]).permute(0, 3, 1, 2)
        return TensorImageDataset(class_names, view, torch.from_numpy(labels), source=source)
    lazy = LazyImageDataset(
        class_names,
        group_rows(labels, len(class_names)),
        ArrayReader(array, source, bgr=bgr),
        spec,
        source=source,
    )
    return lazy.to_memory() if in_memory else lazy
