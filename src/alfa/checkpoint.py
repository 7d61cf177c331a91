"""Checkpoints written atomically, verified by checksum, kept with a retention policy.

A file is ``MAGIC + sha256(payload) + payload`` where the payload is a ``torch.save`` archive. It
is written to a temporary file in the same folder, flushed and fsynced, then renamed over the
target (and the folder fsynced), so a crash leaves either the old file or the new one, never half
of one. Loading checks the digest, so a truncated or corrupted file is reported by name instead
of half-loaded. Retention: the newest ``keep_last`` periodic ``step-NNNNNNN.pt`` files are kept,
plus ``best.pt`` (best by validation), which pruning never touches.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from alfa.errors import AlfaError

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

MAGIC = b"ALFACKPT1\n"
_NAME = re.compile(r"^step-(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\..+\.tmp-\d+-\d+$")
_counter = itertools.count()


class CheckpointError(AlfaError):
    """A checkpoint file is missing, truncated, corrupt or cannot be written."""


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
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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
    if not Path(folder).is_dir():
        return
    for path in Path(folder).iterdir():
        if _TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Serialise ``state`` with a checksum and write it atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).digest() + payload)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint, raising :class:`CheckpointError` naming the file if it is damaged."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc.strerror or exc}") from exc
    head = len(MAGIC) + 32
    if not raw.startswith(MAGIC):
        raise CheckpointError(f"checkpoint '{path}' is not an alfa checkpoint (or is truncated)")
    if len(raw) <= head:
        raise CheckpointError(f"checkpoint '{path}' is truncated ({len(raw)} bytes)")
    digest, payload = raw[len(MAGIC) : head], raw[head:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"checkpoint '{path}' is damaged (checksum mismatch: truncated or corrupted)"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
    except Exception as exc:  # pragma: no cover - the digest already vouches for the bytes
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded: {exc}") from exc
    if not isinstance(state, dict) or "learner" not in state or "iteration" not in state:
        raise CheckpointError(f"checkpoint '{path}' does not hold a training state")
    return state


def list_checkpoints(folder: Path) -> list[Path]:
    """Periodic checkpoints ``step-NNNNNNN.pt`` in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


_TOP = re.compile(r"^top-(\d+)\.pt$")


def top_name(iteration: int) -> str:
    """The file name of a top-k-by-validation checkpoint taken after ``iteration``."""
    return f"top-{iteration:07d}.pt"


def list_top(folder: Path) -> dict[int, Path]:
    """Top-k checkpoints ``top-NNNNNNN.pt`` in ``folder`` by iteration."""
    if not folder.is_dir():
        return {}
    return {int(m.group(1)): p for p in folder.iterdir() if (m := _TOP.match(p.name))}


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
