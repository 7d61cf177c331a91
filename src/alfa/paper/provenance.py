"""Where a results file came from: the commit of the code and the command that wrote it."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["command_line", "source_commit"]

ROOT = Path(__file__).resolve().parents[3]


def source_commit() -> dict[str, Any]:
    """``{"commit": HEAD, "modified_src": [tracked files under src/ that differ from it]}``
    (both None outside a git checkout)."""
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
