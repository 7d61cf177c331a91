"""Checkpoints written atomically, verified by checksum, loaded without running code.

File format. A checkpoint is a plain ``torch.save`` archive (a zip file) that plain
``torch.load(path, weights_only=True)`` opens: it holds only tensors and plain data (dicts,
lists, tuples, str, int, float, bool, None), never a pickled object, and alfa loads it with
``weights_only=True``, so a crafted checkpoint cannot run code. :func:`save_checkpoint` refuses
a state that holds anything else (e.g. a NumPy array), naming its key.

Integrity. The SHA-256 of the file travels inside the file, in the zip archive's comment (the
last bytes of a zip, ``alfa-sha256:<64 hex digits>``), which zip readers, ``torch.load``
included, ignore. The digest covers every byte before it. A sidecar ``NAME.sha256`` was
considered and not chosen: two files cannot be replaced in one atomic step (a crash between the
two renames would leave ``best.pt`` paired with the previous checksum and so reported as
damaged), pruning and copying would have to move pairs, and a ``best.pt`` copied on its own would
lose its check. With the digest inside, one rename publishes file and checksum together.

Writing: to a temporary file in the same folder, flushed and fsynced, then renamed over the
target (and the folder fsynced), so a crash leaves either the old file or the new one, never half
of one. Loading checks the digest before unpickling anything, so a truncated or corrupted file is
reported by name instead of half-loaded.

Old checkpoints (``ALFACKPT1`` header + SHA-256 + ``torch.save`` payload, written by earlier
versions) are still read: after their checksum they are loaded with ``weights_only=True`` too,
allowing in addition only NumPy arrays and dtypes (their NumPy random state is one); anything
else is refused with a message saying the checkpoint must be re-created.

Retention: the newest ``keep_last`` periodic ``step-NNNNNNN.pt`` files are kept, plus
``best.pt`` (best by validation), which pruning never touches.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import pickle
import re
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alfa.errors import AlfaError
from alfa.runs.durable import write_all

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "checkpoint_name",
    "latest_good_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "remove_temporaries",
    "save_checkpoint",
]

LEGACY_MAGIC = b"ALFACKPT1\n"
"""The header of the old format (``LEGACY_MAGIC + sha256 + torch.save payload``), read only."""
TRAILER = b"alfa-sha256:"
"""Start of the zip comment that carries a checkpoint's SHA-256 (64 hex digits follow)."""
_TRAILER_SIZE = len(TRAILER) + 64
_ZIP_START = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"  # end of central directory record: 22 bytes, then the comment
_ZIP_END_SIZE = 22
_NAME = re.compile(r"^step-(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\..+\.tmp-\d+-\d+$")
_counter = itertools.count()
_BINARY = getattr(os, "O_BINARY", 0)  # no newline translation (Windows)


class CheckpointError(AlfaError):
    """A checkpoint file is missing, truncated, corrupt, unsafe or cannot be written."""


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse to fsync folders
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, nothing else.

    Raises:
        CheckpointError: naming the file when it cannot be written (the old content stays).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{next(_counter)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o666)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write '{path}': {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def remove_temporaries(folder: Path) -> None:
    """Delete temporary files that a killed writer left in ``folder`` (never a finished file)."""
    for path in _names(folder):
        if _TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)


_PLAIN = (str, int, float, bool, type(None), torch.dtype, torch.device)


def _check_plain(value: Any, where: str) -> None:
    """Raise ``TypeError`` naming the key of the first value ``weights_only`` would refuse."""
    kind = type(value)
    if kind in _PLAIN or kind in (torch.Tensor, torch.nn.Parameter):
        return
    if kind in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _PLAIN:
                raise TypeError(f"checkpoint {where} has a key of type {type(key)}")
            _check_plain(item, f"{where}[{key!r}]")
    elif kind in (list, tuple, torch.Size):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    else:
        raise TypeError(
            f"checkpoint {where} is a {kind.__module__}.{kind.__qualname__}; store only "
            "tensors and plain data (dict, list, tuple, str, int, float, bool, None) so that "
            "the checkpoint loads with torch.load(weights_only=True)"
        )


def _seal(archive: bytes) -> bytes:
    """``archive`` (a ``torch.save`` zip) with its SHA-256 put into the zip comment."""
    end = len(archive) - _ZIP_END_SIZE
    if end < 0 or archive[end : end + 4] != _ZIP_END or archive[-2:] != b"\0\0":
        raise CheckpointError(  # pragma: no cover - torch.save always ends with a bare record
            "torch.save wrote an archive without a plain zip end record; cannot add a checksum"
        )
    body = archive[:-2] + struct.pack("<H", _TRAILER_SIZE)
    return body + TRAILER + hashlib.sha256(body).hexdigest().encode()


def _verify(raw: bytes, path: Path) -> None:
    """Check the SHA-256 in the zip comment of a checkpoint file against its other bytes."""
    if not raw.startswith(_ZIP_START):
        raise CheckpointError(f"checkpoint '{path}' is not an alfa checkpoint (or is truncated)")
    end = len(raw) - _TRAILER_SIZE - _ZIP_END_SIZE
    sealed = (
        end >= 0
        and raw[end : end + 4] == _ZIP_END
        and raw[-_TRAILER_SIZE - 2 : -_TRAILER_SIZE] == struct.pack("<H", _TRAILER_SIZE)
        and raw[-_TRAILER_SIZE:].startswith(TRAILER)
    )
    if not sealed:
        bare = raw[-_ZIP_END_SIZE : -_ZIP_END_SIZE + 4] == _ZIP_END and raw[-2:] == b"\0\0"
        if bare:
            raise CheckpointError(
                f"checkpoint '{path}' is not an alfa checkpoint: a torch file without alfa's "
                "checksum (written or re-saved by another program)"
            )
        raise CheckpointError(
            f"checkpoint '{path}' is damaged (truncated or corrupted: its checksum is missing)"
        )
    digest = hashlib.sha256(raw[:-_TRAILER_SIZE]).hexdigest().encode()
    if raw[-64:] != digest:
        raise CheckpointError(
            f"checkpoint '{path}' is damaged (checksum mismatch: truncated or corrupted)"
        )


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Serialise ``state`` with a checksum and write it atomically.

    Raises:
        TypeError: ``state`` holds something other than tensors and plain data (a bug).
        CheckpointError: the file cannot be written (naming it; the old file stays).
    """
    _check_plain(state, "state")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, _seal(buffer.getvalue()))


@cache
def _numpy_globals() -> list[Any]:
    """What an old checkpoint's NumPy random state needs beyond ``weights_only``'s defaults:
    arrays and dtypes (data, not code; no other NumPy function is allowed)."""
    reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]
    dtypes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}
    return [
        reconstruct,
        (reconstruct, "numpy.core.multiarray._reconstruct"),  # written under NumPy 1
        np.ndarray,
        np.dtype,
        *sorted(dtypes, key=lambda t: t.__name__),
    ]


def _refused(data: bytes, *, legacy: bool) -> str:
    """The globals that ``weights_only`` refuses in ``data``, found without running them."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception:  # only for the message: the load itself has already refused the file
        names = []
    if legacy:
        allowed = {_global_name(entry) for entry in _numpy_globals()}
        names = [name for name in names if name not in allowed]
    if not names:
        return "objects other than tensors and plain data"
    return ", ".join(f"'{name}'" for name in sorted(names))


def _global_name(entry: Any) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f"{entry.__module__}.{entry.__qualname__}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _torch_load(data: bytes, path: Path, map_location: Any, *, legacy: bool) -> Any:
    """``torch.load(weights_only=True)`` of verified bytes, refusing anything but plain data."""
    try:
        if legacy:
            with torch.serialization.safe_globals(_numpy_globals()):
                return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        if legacy:
            raise CheckpointError(
                f"checkpoint '{path}' is in an old unsafe format (it holds "
                f"{_refused(data, legacy=True)}, which could run code when loaded) and must be "
                "re-created: train the run again with this version of alfa"
            ) from None
        raise CheckpointError(
            f"checkpoint '{path}' holds {_refused(data, legacy=False)}, not only tensors and "
            "plain data; refused, since loading it could run code"
        ) from None
    except Exception as exc:  # the digest vouches for the bytes, so this is a foreign file
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded: {_first_line(exc)}") from exc


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` after checking its SHA-256.

    Raises:
        CheckpointError: naming the file when it is missing, truncated, corrupted, holds
            anything but tensors and plain data, or is not a training state.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc.strerror or exc}") from exc
    if raw.startswith(LEGACY_MAGIC):
        head = len(LEGACY_MAGIC) + 32
        if len(raw) <= head:
            raise CheckpointError(f"checkpoint '{path}' is truncated ({len(raw)} bytes)")
        digest, payload = raw[len(LEGACY_MAGIC) : head], raw[head:]
        if hashlib.sha256(payload).digest() != digest:
            raise CheckpointError(
                f"checkpoint '{path}' is damaged (checksum mismatch: truncated or corrupted)"
            )
        state = _torch_load(payload, path, map_location, legacy=True)
    else:
        _verify(raw, path)
        state = _torch_load(raw, path, map_location, legacy=False)
    if not isinstance(state, dict) or "learner" not in state or "iteration" not in state:
        raise CheckpointError(f"checkpoint '{path}' does not hold a training state")
    return state


def _names(folder: Path) -> list[Path]:
    """The entries of a checkpoint folder (none when it does not exist).

    Raises:
        CheckpointError: naming the folder when it cannot be listed (e.g. no permission).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise CheckpointError(f"cannot list the folder '{folder}': {exc.strerror or exc}") from exc


def list_checkpoints(folder: Path) -> list[Path]:
    """Periodic checkpoints ``step-NNNNNNN.pt`` in ``folder``, oldest first."""
    found = [(int(m.group(1)), p) for p in _names(folder) if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


_TOP = re.compile(r"^top-(\d+)\.pt$")


def top_name(iteration: int) -> str:
    """The file name of a top-k-by-validation checkpoint taken after ``iteration``."""
    return f"top-{iteration:07d}.pt"


def list_top(folder: Path) -> dict[int, Path]:
    """Top-k checkpoints ``top-NNNNNNN.pt`` in ``folder`` by iteration."""
    return {int(m.group(1)): p for p in _names(folder) if (m := _TOP.match(p.name))}


def prune_top(folder: Path, keep: set[int], *, after: int | None = None) -> None:
    """Delete top-k files whose iteration is not in ``keep`` (or, with ``after``, those newer
    than ``after``: a resumed run writes them again)."""
    for iteration, path in list_top(folder).items():
        if (after is not None and iteration > after) or (after is None and iteration not in keep):
            path.unlink(missing_ok=True)


def checkpoint_name(iteration: int) -> str:
    """The file name of the periodic checkpoint after ``iteration``."""
    return f"step-{iteration:07d}.pt"


def _warn(message: str) -> None:
    print(f"alfa: warning: {message}", file=sys.stderr, flush=True)


def latest_good_checkpoint(
    folder: Path, *, report: Callable[[str], None] = _warn
) -> tuple[Path, dict[str, Any]] | None:
    """The newest periodic checkpoint that loads, or None when there is none at all.

    A damaged newer checkpoint is skipped, and ``report`` (by default a warning on stderr) says
    which file was damaged and which one is used instead.

    Raises:
        CheckpointError: when checkpoints exist but every one of them is damaged; the message
            names the newest damaged file.
    """
    damaged: list[CheckpointError] = []
    for path in reversed(list_checkpoints(folder)):
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            damaged.append(exc)
            continue
        for exc in damaged:
            report(f"{exc}; falling back to the previous good checkpoint '{path}'")
        return path, state
    if not damaged:
        return None
    if len(damaged) == 1:
        raise damaged[0]
    raise CheckpointError(
        f"{damaged[0]}; the {len(damaged) - 1} older checkpoint(s) are damaged too"
    )


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` periodic checkpoints (``best.pt`` is separate)."""
    for path in list_checkpoints(folder)[:-keep_last]:
        path.unlink(missing_ok=True)
