"""Small filesystem helpers shared by the loaders: image listing, path checks, problem reporting."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from alfa.errors import DataError

__all__ = [
    "DATA_VARIABLE",
    "IMAGE_EXTENSIONS",
    "ProblemSink",
    "as_path",
    "expand_variables",
    "is_image_name",
    "list_class_dirs",
    "list_images",
    "normalise_split",
    "report",
    "require_dir",
    "require_file",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
"""File name endings (case-insensitive) treated as images by every folder-based loader."""

ProblemSink = Callable[[str], None] | None
"""Where a loader sends a non-fatal data problem: ``None`` raises :class:`DataError` at once,
a callable collects the message (used by :mod:`alfa.data.check` to find every problem)."""

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "base": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "novel": "test",
    "testing": "test",
}


def report(sink: ProblemSink, message: str) -> None:
    """Raise ``DataError(message)`` when ``sink`` is ``None``, otherwise hand the message to it."""
    if sink is None:
        raise DataError(message)
    sink(message)


DATA_VARIABLE = "ALFA_DATA"
"""The environment variable the shipped configs take their data folder from
(``root: ${ALFA_DATA}/omniglot/...``)."""

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_variables(text: str) -> str:
    """``text`` with every ``$NAME`` or ``${NAME}`` replaced by that environment variable.

    Raises:
        DataError: a variable is not set (or empty), naming it and the path.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        found = os.environ.get(name, "")
        if not found:
            hint = "the folder that holds the datasets" if name == DATA_VARIABLE else "a folder"
            raise DataError(
                f"the data path '{text}' uses ${name}, which is not set: set the environment "
                f"variable {name} to {hint} (e.g. export {name}=/path/to/data; see the README, "
                "'Getting the data')"
            )
        return found

    return _VARIABLE.sub(value, text)


NAME_MAX = 255
"""The longest file name (one component of a path) in bytes that file systems allow."""


def as_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`Path`, with environment variables (``$ALFA_DATA``) and ``~``
    expanded.

    Raises:
        DataError: ``path`` uses an environment variable that is not set, or holds a name
            longer than :data:`NAME_MAX` bytes or a NUL character.
    """
    text = os.fspath(path)
    if isinstance(path, str) and "$" in text:  # a Path names a file as it is
        text = expand_variables(text)
    out = Path(os.path.expanduser(text))
    for part in out.parts:  # the file system refuses these with ENAMETOOLONG
        if len(os.fsencode(part)) > NAME_MAX:
            raise DataError(
                f"the data path '{text[:60]}...' has a name of {len(os.fsencode(part))} bytes "
                f"('{part[:20]}...'); file names may have at most {NAME_MAX} bytes"
            )
    if "\0" in text:
        raise DataError(f"the data path {text[:60]!r} holds a NUL character")
    return out


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise a :class:`DataError` naming it."""
    if not path.exists():
        raise DataError(f"{what} not found: {path} (check the dataset path)")
    if not path.is_dir():
        raise DataError(f"{what} is not a folder: {path} (pass the folder that contains it)")
    return path


def dataset_folder(path: str | os.PathLike[str], what: str) -> Path:
    """The folder of a dataset given as that folder or as one of its files."""
    root = as_path(path)
    return root.parent if root.is_file() else require_dir(root, what)


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a :class:`DataError` naming it."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path} (check the dataset path and split name)")
    return path


def is_image_name(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` and is not a hidden file."""
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (no recursion)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot read folder {folder}: {exc.strerror or exc}") from exc
    return [Path(e.path) for e in entries if is_image_name(e.name) and e.is_file()]


def list_class_dirs(root: Path, pattern: str | None = None) -> list[Path]:
    """Sub-folders of ``root`` (sorted, hidden ones skipped), optionally matching a regex."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot read folder {root}: {exc.strerror or exc}") from exc
    regex = re.compile(pattern) if pattern else None
    return [
        Path(e.path)
        for e in entries
        if e.is_dir() and not e.name.startswith(".") and (regex is None or regex.match(e.name))
    ]


def normalise_split(split: str, allowed: Sequence[str] = ("train", "val", "test")) -> str:
    """Map split aliases (``validation``, ``base``, ``novel`` ...) to ``train``/``val``/``test``."""
    name = _SPLIT_ALIASES.get(str(split).lower())
    if name is None or name not in allowed:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(allowed)}")
    return name
