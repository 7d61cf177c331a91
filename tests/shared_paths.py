"""Where the read-only shared folder is: $ALFA_SHARED, else ../shared beside the checkout, else
/work/shared. Tests read it in place and skip what needs it where it is absent."""

from __future__ import annotations

import os
from pathlib import Path


def find_shared() -> Path:
    candidates = [
        os.environ.get("ALFA_SHARED", ""),
        str(Path(__file__).resolve().parents[2] / "shared"),
    ]
    candidates.append("/work/shared")
    for candidate in candidates:
        if candidate and (Path(candidate) / "data" / "omniglot").is_dir():
            return Path(candidate)
    return Path("/work/shared")


SHARED = find_shared()
REAL_OMNIGLOT = SHARED / "data" / "omniglot"
