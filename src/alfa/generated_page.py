"""Pages generated from the code (``docs/api.md``, ``docs/config.md``, ``docs/paper-map.md``):
each generator writes its page, or with ``--check`` says whether the committed one is current."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["write_or_check"]


def write_or_check(path: Path, text: str, *, check: bool, command: str, problems: bool) -> int:
    """Write ``text`` to ``path`` (printing the path), or with ``check`` compare it with the
    file; the exit code is 1 when the file is out of date or the generator found ``problems``."""
    path = Path(path)
    if check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            print(f"{path} is out of date; run: {command}", file=sys.stderr)
            return 1
        return 1 if problems else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(path)
    return 1 if problems else 0
