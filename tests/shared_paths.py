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


REPO = Path(__file__).resolve().parents[1]
OMNIGLOT_CONFIGS = REPO / "configs" / "omniglot"


def real_omniglot_overrides() -> list[str]:
    """Overrides that point a ``configs/omniglot`` config at the real minimal sets in place
    (the shipped configs read them from ``$ALFA_DATA``) and at its class lists by absolute path,
    skipping the test without them."""
    import pytest

    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    roots = ",".join(str(REAL_OMNIGLOT / f"images_background_small{i}.zip") for i in (1, 2))
    splits = OMNIGLOT_CONFIGS / "splits"
    return [
        f"data.root={roots}",
        f"data.split_file={splits / 'minimal_train.txt'}",
        f"data.val_split_file={splits / 'minimal_test.txt'}",
        f"data.test_split_file={splits / 'minimal_test.txt'}",
    ]
