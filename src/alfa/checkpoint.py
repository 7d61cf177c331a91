"""Checkpoints written atomically, verified by checksum, kept with a retention policy.

A file is ``MAGIC + sha256(payload) + payload`` where the payload is a ``torch.save`` archive. It
is written to a temporary file in the same folder, flushed and fsynced, then renamed over the
target, so a crash leaves either the old file or the new one, never half of one. Loading checks
the digest, so a truncated or corrupted file is reported by name instead of half-loaded.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from alfa.errors import AlfaError

__all__ = [
    "CheckpointError",
    "latest_good_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
]

MAGIC = b"ALFACKPT1\n"
_NAME = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(AlfaError):
    """A checkpoint file is missing, truncated or corrupt."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, nothing else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - some filesystems refuse to fsync folders
        pass


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
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc.strerror}") from exc
    head = len(MAGIC) + 32
    if len(raw) < head or not raw.startswith(MAGIC):
        raise CheckpointError(f"checkpoint '{path}' is not an alfa checkpoint or is truncated")
    digest, payload = raw[len(MAGIC) : head], raw[head:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"checkpoint '{path}' is damaged (checksum mismatch)")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
    except Exception as exc:  # pragma: no cover - the digest already vouches for the bytes
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded: {exc}") from exc


def list_checkpoints(folder: Path) -> list[Path]:
    """Periodic checkpoints ``step-NNNNNNN.pt`` in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_name(iteration: int) -> str:
    return f"step-{iteration:07d}.pt"


def latest_good_checkpoint(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; damaged newer ones are reported and skipped."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; falling back to the previous checkpoint", stacklevel=2)
    return None


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` periodic checkpoints (``best.pt`` is separate)."""
    for path in list_checkpoints(folder)[:-keep_last]:
        path.unlink(missing_ok=True)
