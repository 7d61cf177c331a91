"""Pickled dataset caches (Python 2 or 3) read so that they can neither run code nor exhaust
memory.

A dataset cache holds only NumPy arrays, dtypes and scalars inside plain containers (dicts,
lists, tuples, sets, strings, bytes, numbers), so any other global a pickle names
(``os.system``, a class of some module ...) is refused before it is imported or called, and the
file is reported by name. Loading a crafted cache cannot run code.

The allowed constructors are also bounded: ``bytes(n)``, ``bytearray(n)``, ``numpy.ndarray
(shape)`` and an array's state can make a few bytes of pickle allocate terabytes. Every
allocation whose size comes from a number in the file is charged to a budget of
:data:`BUDGET_FACTOR` times the file's size (at least 1 MiB), and a pickle that asks for more
is refused by name before the memory is taken; a pickle cannot allocate more than its size
could justify. Containers nested deeper than :data:`alfa.limits.MAX_DEPTH` are refused too.
"""

from __future__ import annotations

import codecs
import collections
import operator
import os
import pickle
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from alfa.errors import DataError
from alfa.limits import MAX_DEPTH, format_bytes

__all__ = ["BUDGET_FACTOR", "load_pickle"]

BUDGET_FACTOR = 8
"""How many times its own size a pickle may allocate through sizes it states (an object array
costs 8 bytes a pointer, each element at least one byte of pickle)."""


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global that a plain-data cache never needs (nothing was run)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"refused global {name!r}")
        self.name = name


class _OverBudget(pickle.UnpicklingError):
    """A pickle asked for more memory than its size could justify (nothing was allocated)."""


class _TooDeep(pickle.UnpicklingError):
    """A pickle's containers nest deeper than MAX_DEPTH."""


@cache
def _numpy_functions() -> dict[str, Any]:
    """NumPy's pickle helpers, taken from how this NumPy pickles its own arrays and scalars."""
    return {
        "multiarray._reconstruct": np.ndarray.__reduce__(np.zeros(1))[0],
        "multiarray.scalar": np.float64(0).__reduce__()[0],
        "numeric._frombuffer": np.zeros(1).__reduce_ex__(5)[0],
    }


class _Budget:
    """What one pickle may still allocate through the sizes it states."""

    def __init__(self, path: Path, total: int) -> None:
        self.path, self.left = path, total

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise _OverBudget(
                f"it asks for {format_bytes(nbytes)} ({what}), more than its size could hold"
            )
        self.left -= nbytes

    def array_bytes(self, shape: Any, dtype: Any) -> int:
        shape = (shape,) if not isinstance(shape, tuple | list) else shape
        try:
            count = 1
            for n in shape:
                count *= operator.index(n)
            itemsize = np.dtype(dtype).itemsize if dtype is not None else 8
        except (TypeError, ValueError) as exc:
            raise pickle.UnpicklingError(f"bad array shape or dtype ({exc})") from None
        if count < 0:
            raise pickle.UnpicklingError(f"negative array shape {tuple(shape)}")
        return count * max(itemsize, 1)


def _globals(budget: _Budget) -> dict[str, Any]:
    """``module.name`` -> object, for the globals a NumPy or plain-data pickle may name; the
    ones that take a size from the file are charged to ``budget``."""

    class Array(np.ndarray):
        """``numpy.ndarray`` as a pickle sees it: its size and its state are charged."""

        def __new__(cls, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> Any:
            budget.charge(budget.array_bytes(shape, dtype), "numpy.ndarray")
            return np.ndarray.__new__(np.ndarray, shape, dtype, *args, **kwargs)

        def __setstate__(self, state: Any) -> None:
            if isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype):
                shape, dtype, data = state[1], state[2], state[4]
                if dtype.hasobject or not isinstance(data, bytes | bytearray):
                    budget.charge(budget.array_bytes(shape, dtype), "an array's contents")
            super().__setstate__(state)

    reconstruct = _numpy_functions()["multiarray._reconstruct"]

    def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
        budget.charge(budget.array_bytes(shape, None), "numpy.ndarray")
        return reconstruct(Array, shape, dtype)

    def sized(kind: type) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            if args and not isinstance(args[0], str | bytes | bytearray):
                try:
                    size = operator.index(args[0])
                except TypeError:
                    size = None
                if size is not None:
                    budget.charge(size, f"{kind.__name__}({size})")
            return kind(*args, **kwargs)

        return build

    def encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> Any:
        if codecs.lookup(encoding).name not in ("iso8859-1", "latin-1", "utf-8"):
            raise pickle.UnpicklingError(f"refused codec {encoding!r}")
        return codecs.encode(obj, encoding, errors)

    allowed: dict[str, Any] = {"numpy.ndarray": Array, "numpy.dtype": np.dtype}
    functions = dict(_numpy_functions(), **{"multiarray._reconstruct": _reconstruct})
    for name, function in functions.items():
        allowed[f"numpy.core.{name}"] = allowed[f"numpy._core.{name}"] = function
    plain = (set, frozenset, complex, list, tuple, dict, str, int, float, bool)
    allowed |= {f"builtins.{kind.__name__}": kind for kind in plain}
    allowed |= {"builtins.bytes": sized(bytes), "builtins.bytearray": sized(bytearray)}
    allowed["collections.OrderedDict"] = collections.OrderedDict
    allowed["_codecs.encode"] = encode  # how protocol 2 stores bytes
    return allowed


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that finds only :func:`_globals` and refuses every other global."""

    def __init__(self, *args: Any, allowed: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins"}.get(module, module)  # Python 2 pickles
        found = self._allowed.get(f"{module}.{name}")
        if found is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return found


def _plain(obj: Any, depth: int = 0) -> Any:
    """``obj`` with every charged array as a plain ``numpy.ndarray`` (a view, no copy).

    Raises:
        _TooDeep: containers nest deeper than MAX_DEPTH.
    """
    if depth > MAX_DEPTH:
        raise _TooDeep(f"its containers nest more than {MAX_DEPTH} levels deep")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            flat = obj.reshape(-1)
            for i, item in enumerate(flat):
                if isinstance(item, list | dict | tuple | set | np.ndarray):
                    flat[i] = _plain(item, depth + 1)
        return obj.view(np.ndarray) if type(obj) is not np.ndarray else obj
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            if isinstance(item, list | dict | tuple | set | frozenset | np.ndarray):
                obj[i] = _plain(item, depth + 1)
        return obj
    if isinstance(obj, dict):
        for key, item in obj.items():
            if isinstance(item, list | dict | tuple | set | frozenset | np.ndarray):
                obj[key] = _plain(item, depth + 1)
        return obj
    if isinstance(obj, tuple):
        return type(obj)(_plain(item, depth + 1) for item in obj) if obj else obj
    if isinstance(obj, set | frozenset):
        for item in obj:
            _plain(item, depth + 1)
    return obj


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` allowing only NumPy arrays and plain data; Python 2 pickles load too.

    Tries ``encoding='bytes'``, then ``'latin1'`` (Python 2 strings). Every global the pickle
    names must be a NumPy array, dtype or scalar constructor or a plain container type (see the
    module docstring); anything else is refused without being imported or called, and every
    size the pickle states is charged to its budget before it is allocated.

    Raises:
        DataError: The file is missing, is not a readable pickle, names another global, asks
            for more memory than its size justifies, or nests too deep.
    """
    errors: list[str] = []
    for encoding in ("bytes", "latin1"):
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                budget = _Budget(Path(path), BUDGET_FACTOR * size + 2**20)
                loaded = _PlainUnpickler(fh, encoding=encoding, allowed=_globals(budget)).load()
            return _plain(loaded)
        except FileNotFoundError as exc:
            raise DataError(f"file not found: {path} (check the dataset path)") from exc
        except _RefusedGlobal as exc:
            raise DataError(
                f"refusing to load {path}: it names {exc.name!r}, which a dataset cache of "
                "NumPy arrays and plain data never needs (loading it could run code; nothing "
                "was run); get the file again from a source you trust"
            ) from None
        except (_OverBudget, _TooDeep) as exc:
            raise DataError(
                f"refusing to load {path}: {exc}; the file is corrupt or crafted "
                "(get it again from a source you trust)"
            ) from None
        except (MemoryError, OverflowError, RecursionError):
            raise DataError(
                f"refusing to load {path}: it states a size larger than the memory available "
                "(a corrupt or crafted pickle); get the file again from a source you trust"
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
            KeyError,
            LookupError,
        ) as exc:
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    raise DataError(
        f"cannot unpickle {path} ({errors[-1]}); the file is corrupt or incomplete, "
        "download it again"
    )
