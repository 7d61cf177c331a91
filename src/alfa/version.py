"""The package's version (``alfa --version``).

From the installed distribution's metadata; when the package is imported from a source tree that
is not installed, from the ``version`` of the ``[project]`` table in the tree's pyproject.toml.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

__all__ = ["DISTRIBUTION", "package_version"]

DISTRIBUTION = "alfa-meta"  # the name in pyproject.toml (the import name is ``alfa``)
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _pyproject_version(path: Path) -> str | None:
    """``[project] version`` of a pyproject.toml, or None when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        section = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        found = section and re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
        return found.group(1) if found else None
    try:
        version = tomllib.loads(text).get("project", {}).get("version")
    except tomllib.TOMLDecodeError:
        return None
    return version if isinstance(version, str) else None


def package_version() -> str:
    """The installed version, else the source tree's, else ``unknown``."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _pyproject_version(PYPROJECT) or "unknown"
