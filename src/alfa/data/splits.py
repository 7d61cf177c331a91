"""Class split lists: the shipped miniImageNet split and user class-list files."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from alfa.data._files import as_path, normalise_split
from alfa.errors import DataError
from alfa.limits import read_text

__all__ = [
    "ClassList",
    "check_split_classes",
    "class_identity",
    "class_list_lines",
    "class_list_names",
    "mini_imagenet_split",
    "overlapping_classes",
    "read_class_lines",
    "read_class_list",
]

SPLIT_CHECKS = ("warn", "error", "off")

ClassList = str | os.PathLike[str] | Sequence[str]
"""A class list: the path of a file of class names (one a line), or the names themselves (a
list or tuple, e.g. the copy of a run's class list kept in its run directory)."""


@cache
def mini_imagenet_split(split: str) -> tuple[str, ...]:
    """The WordNet ids of a standard miniImageNet split (Ravi & Larochelle; 64/16/20).

    Args:
        split: ``train``, ``val`` or ``test`` (aliases such as ``validation`` accepted).
    """
    name = normalise_split(split)
    ref = resources.files("alfa") / "resources" / "splits" / "mini_imagenet" / f"{name}.txt"
    text = ref.read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def read_class_lines(path: str | Path) -> list[tuple[int, str]]:
    """``(line number, class name)`` of a class list file, one class a line; blank lines and
    ``#`` comments are skipped.

    The file may come from elsewhere (a path in an export's config), so messages name the
    line numbers of what is wrong, never the lines themselves.

    Raises:
        DataError: The file is missing, unreadable, larger than
            :data:`alfa.limits.MAX_TEXT_BYTES`, lists no class or a class twice.
    """
    file = as_path(path)
    if not file.exists():
        raise DataError(f"class list file not found: {file} (check the path)")
    text = read_text(file, what="class list file")  # at most MAX_TEXT_BYTES, even of /dev/zero
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.startswith("#")
    ]
    if not lines:
        raise DataError(f"class list file {file} lists no classes (one class name per line)")
    first: dict[str, int] = {}
    for number, name in lines:
        if name in first:
            raise DataError(
                f"class list file {file} lists the same class on lines {first[name]} and {number}"
            )
        first[name] = number
    return lines


def read_class_list(path: str | Path) -> list[str]:
    """Class names from a text file (see :func:`read_class_lines`).

    Raises:
        DataError: The file is missing, unreadable, too large, lists no class or one twice.
    """
    return [name for _, name in read_class_lines(path)]


def class_list_lines(class_list: ClassList) -> tuple[list[tuple[int, str]], str]:
    """``(line number, class name)`` of a class list, and how to name it in a message: the file
    (see :func:`read_class_lines`), or "the stored class list" for names given directly (their
    positions, from 1, stand for the line numbers).

    Raises:
        DataError: the file is missing, unreadable or too large, or the list is empty or names
            a class twice.
    """
    if isinstance(class_list, str | os.PathLike):
        return read_class_lines(class_list), str(as_path(class_list))
    names = [str(n).strip() for n in class_list if str(n).strip()]
    if not names:
        raise DataError("the stored class list lists no classes")
    first: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if name in first:
            raise DataError(
                f"the stored class list lists the same class at {first[name]} and {number}"
            )
        first[name] = number
    return list(enumerate(names, 1)), "the stored class list"


def class_list_names(class_list: ClassList) -> tuple[list[str], str]:
    """The names of a class list and how to name it in a message (:func:`class_list_lines`)."""
    lines, label = class_list_lines(class_list)
    return [name for _, name in lines], label


def check_split_classes(found: Sequence[str], split: str, source: str, mode: str = "warn") -> None:
    """Compare a miniImageNet split's classes with the standard list.

    A split that holds exactly the classes of *another* standard split (an old cache swapped
    ``val`` and ``test``) is always an error. Any other mismatch warns (``mode='warn'``), raises
    (``'error'``) or is ignored (``'off'``).

    Raises:
        DataError: As described above.
    """
    if mode not in SPLIT_CHECKS:
        raise DataError(f"check_split must be one of {', '.join(SPLIT_CHECKS)}, got {mode!r}")
    name = normalise_split(split)
    got = set(found)
    expected = set(mini_imagenet_split(name))
    if got == expected or mode == "off":
        return
    for other in ("train", "val", "test"):
        if other != name and got == set(mini_imagenet_split(other)):
            raise DataError(
                f"{source}: the {name!r} split holds the standard {other!r} classes (an old "
                f"cache swapped them); rename the files or load split={other!r}"
            )
    extra = sorted(got - expected)
    missing = sorted(expected - got)
    message = (
        f"{source}: split {name!r} has {len(got)} classes, not the standard {len(expected)} "
        f"({len(missing)} missing e.g. {missing[:3]}, {len(extra)} unexpected e.g. {extra[:3]}); "
        "results will not be comparable with published numbers"
    )
    if mode == "error":
        raise DataError(message)
    warnings.warn(message, stacklevel=3)


_ROTATION = re.compile(r"/rot\d{3}$")


def class_identity(name: str) -> str:
    """What a class is across splits: its name, without an Omniglot rotation suffix (a rotated
    character is the same drawings as the upright one)."""
    return _ROTATION.sub("", name)


def overlapping_classes(trained: Sequence[str], others: Sequence[str]) -> list[str]:
    """The classes of ``others`` that are (rotations of) classes in ``trained``."""
    seen = {class_identity(name) for name in trained}
    return [name for name in others if class_identity(name) in seen]
