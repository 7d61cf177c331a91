"""Where a run came from: the code, the software, the machine and the command.

Each invocation of ``alfa train`` that trains (a new run, and every resume of an unfinished
one) appends one JSON line to
``RUN/provenance.jsonl``: the alfa version, the git commit of the source tree when alfa runs
from a git checkout (with the tracked files under ``src/`` that differ from it), the versions of
torch and Python, the device, the command line and the start time (UTC), and which engine runs
the inner loop. When that invocation stops training (finished, stopped by a signal, diverged,
aborted or failed) its line gains the end time, the status, the iterations it trained and its
wall time (:func:`finish_provenance`); a line without them is an invocation that was killed.
:func:`training_time` adds up a run's invocations. The results scripts use
:func:`source_commit` and :func:`command_line` too.

Importing this module does not import torch (the command line's ``--help`` stays light).
"""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alfa.errors import AlfaError
from alfa.limits import MAX_TEXT_BYTES, check_depth, read_bytes
from alfa.version import package_version

__all__ = [
    "FILE",
    "command_line",
    "finish_provenance",
    "provenance",
    "record_provenance",
    "source_commit",
    "training_time",
]

ROOT = Path(__file__).resolve().parents[3]
"""The source tree (``src/alfa/runs/provenance.py`` -> the folder holding ``src``)."""

FILE = "provenance.jsonl"
"""The file of a run directory that holds one provenance record per invocation."""


def source_commit() -> dict[str, Any]:
    """``{"commit": HEAD, "modified_src": [tracked files under src/ that differ from it]}``
    (both None when alfa does not run from a git checkout, e.g. installed from a wheel)."""
    if not (ROOT / ".git").exists() or not (ROOT / "src" / "alfa").is_dir():
        return {"commit": None, "modified_src": None}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "modified_src": None}
    return {"commit": commit, "modified_src": sorted(x[3:] for x in dirty if x.strip())}


def command_line(program: str, argv: Sequence[str]) -> str:
    """``program`` and its arguments as one shell command (quoted where the shell needs it)."""
    return " ".join([program, *(shlex.quote(a) for a in argv)])


def _this_command(argv: Sequence[str]) -> str:
    """The command that runs this process: ``alfa ...`` for the command line (its console
    script or ``python -m alfa``), else ``python SCRIPT ...``."""
    if not argv:
        return "python"
    first = Path(argv[0])
    if first.name == "alfa" or (first.name == "__main__.py" and first.parent.name == "alfa"):
        return command_line("alfa", argv[1:])
    return command_line(f"python {argv[0]}", argv[1:])


def provenance(
    device: Any, *, engine: str | None = None, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """The provenance record of this process (see the module docstring)."""
    import torch

    where = str(device)
    if getattr(device, "type", None) == "cuda" and torch.cuda.is_available():
        where += f" ({torch.cuda.get_device_name(device)})"
    record: dict[str, Any] = {
        "started": _now(),
        "command": _this_command(list(sys.argv if argv is None else argv)),
        "alfa_version": package_version(),
        **source_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": where,
    }
    if engine is not None:
        record["engine"] = engine
    return record


def record_provenance(run_dir: Path, record: dict[str, Any]) -> Path:
    """Append ``record`` as one JSON line to ``run_dir/provenance.jsonl`` (the file is
    rewritten whole, atomically, so it never holds half a line)."""
    from alfa.runs.checkpoint import atomic_write_bytes

    path = Path(run_dir) / FILE
    before = path.read_bytes() if path.is_file() else b""
    if before and not before.endswith(b"\n"):
        before += b"\n"
    atomic_write_bytes(path, before + (json.dumps(record) + "\n").encode("utf-8"))
    return path


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lines(path: Path) -> list[bytes]:
    """The lines of a provenance file (none when there is no file), read within
    :data:`alfa.limits.MAX_TEXT_BYTES`."""
    if not path.is_file():
        return []
    return read_bytes(path, cap=MAX_TEXT_BYTES, what="provenance file").splitlines()


def _record(line: bytes) -> dict[str, Any] | None:
    """A line's record, or None for a line that is not one (torn by a kill, or damaged)."""
    try:
        check_depth(line, "a provenance line")
        record = json.loads(line.decode("utf-8"))
    except (AlfaError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def finish_provenance(
    run_dir: Path, *, status: str, first: int, last: int | None, seconds: float
) -> None:
    """Add how this invocation ended to its line, the last of ``run_dir/provenance.jsonl``:
    ``ended`` (UTC), ``status`` ("finished", "stopped", "diverged", "aborted" by a second
    signal, or "failed"), ``iterations`` (``[first, last]``: it trained iterations ``first + 1``
    to ``last``; ``last`` None when not known) and ``train_seconds`` (its wall time from the
    line's writing). A last line that already ended, or that does not parse, is left as it
    is, and the other lines are kept byte for byte.

    Raises:
        AlfaError: the file cannot be read, or is larger than :data:`alfa.limits.MAX_TEXT_BYTES`.
    """
    from alfa.runs.checkpoint import atomic_write_bytes

    path = Path(run_dir) / FILE
    lines = _lines(path)
    record = _record(lines[-1]) if lines else None
    if record is None or "ended" in record:
        return
    record.update(
        ended=_now(), status=status, iterations=[first, last], train_seconds=round(seconds, 1)
    )
    lines[-1] = json.dumps(record).encode("utf-8")
    atomic_write_bytes(path, b"\n".join(lines) + b"\n")


def training_time(run_dir: Path) -> dict[str, Any]:
    """How long a run trained, from its ``provenance.jsonl``: ``parts`` (the invocations that
    trained it, at least 1), ``seconds`` (the sum of those that recorded their wall time) and
    ``unmeasured`` (those that did not: killed, or from before the record had it).

    Raises:
        AlfaError: the file cannot be read, or is larger than :data:`alfa.limits.MAX_TEXT_BYTES`.
    """
    parts, seconds, unmeasured = 0, 0.0, 0
    for line in _lines(Path(run_dir) / FILE):
        record = _record(line)
        if record is None or "started" not in record:
            continue
        parts += 1
        value = record.get("train_seconds")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds += float(value)
        else:
            unmeasured += 1
    if parts == 0:  # a run from before provenance files: one invocation, not measured
        return {"parts": 1, "seconds": 0.0, "unmeasured": 1}
    return {"parts": parts, "seconds": round(seconds, 1), "unmeasured": unmeasured}
