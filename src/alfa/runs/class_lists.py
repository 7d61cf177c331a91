"""The class lists a run depends on, kept inside the run so that it travels.

A config may name a class-list file for each split (``data.split_file``,
``data.val_split_file``, ``data.test_split_file``), often relative to the folder ``alfa train``
ran in (``configs/omniglot/splits/minimal_test.txt``). A new run copies each of them into
``RUN/class_lists/<split>.txt`` (``train``, ``val``, ``test``), and a run that is reopened (to
resume, evaluate, plot or export it) reads its classes from these copies: the run can be moved
to another folder and used from any working directory, and a later edit of the original file
does not change what the run means. ``config.yaml`` keeps the paths as they were written.

An export (:mod:`alfa.runs.export`) carries the same lists in its metadata. A run written before
runs kept their lists has no copies; its class lists are read from the paths of its config, as
before (relative to the working directory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from alfa.config import Config
from alfa.data.splits import read_class_list
from alfa.errors import AlfaError, DataError
from alfa.runs.checkpoint import atomic_write_bytes
from alfa.tasks.episodic import CLASS_LIST_KEYS

__all__ = [
    "FOLDER",
    "config_class_lists",
    "read_run_class_lists",
    "still_valid",
    "store_class_lists",
]

FOLDER = "class_lists"
"""The folder of a run directory that holds the copies, one ``<split>.txt`` per class list."""


def _given(config: Config, only: set[str] | None = None) -> dict[str, str]:
    """The class-list file of each split that ``config`` names (image datasets only)."""
    if config.data.name == "sinusoid":
        return {}
    data = config.data
    return {
        split: getattr(data, key)
        for split, key in CLASS_LIST_KEYS.items()
        if getattr(data, key) and (only is None or split in only)
    }


def config_class_lists(
    config: Config, *, strict: bool = True, only: set[str] | None = None
) -> dict[str, list[str]]:
    """The class names of every class-list file ``config`` names, read now (``$VAR`` expanded,
    relative paths from the working directory).

    Args:
        strict: raise for a file that cannot be read; otherwise leave its split out.
        only: read only these splits (default: all).

    Raises:
        DataError: a file is missing, unreadable or empty (naming its key), with ``strict``.
    """
    lists = {}
    for split, path in _given(config, only).items():
        try:
            lists[split] = read_class_list(path)
        except DataError as exc:
            if strict:
                raise DataError(f"data.{CLASS_LIST_KEYS[split]}: {exc}") from exc
    return lists


def store_class_lists(config: Config, run_dir: Path, *, only_missing: bool = False) -> None:
    """Copy the class lists of ``config`` into ``run_dir/class_lists/`` (atomically).

    Args:
        only_missing: keep the copies already there (a resumed run), and skip a file that
            cannot be read (the run then reads it from its config's path, as before).

    Raises:
        DataError: a named file cannot be read (without ``only_missing``).
        AlfaError: the copy cannot be written.
    """
    folder = Path(run_dir) / FOLDER
    stored = set(read_run_class_lists(run_dir)) if only_missing else set()
    lists = {
        split: names
        for split, names in config_class_lists(config, strict=not only_missing).items()
        if split not in stored
    }
    if not only_missing:  # a new run: no copy of an earlier attempt in this folder may stay
        for split in CLASS_LIST_KEYS:
            if split not in lists:
                (folder / f"{split}.txt").unlink(missing_ok=True)
    if not lists:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlfaError(f"cannot create '{folder}': {exc.strerror or exc}") from exc
    for split, names in lists.items():
        text = "".join(f"{name}\n" for name in names)
        atomic_write_bytes(folder / f"{split}.txt", text.encode("utf-8"))


def read_run_class_lists(run_dir: Path) -> dict[str, list[str]]:
    """The class lists kept in a run directory, by split (empty for a run without copies).

    Raises:
        DataError: a copy is unreadable or empty (naming it).
    """
    folder = Path(run_dir) / FOLDER
    return {
        split: read_class_list(folder / f"{split}.txt")
        for split in CLASS_LIST_KEYS
        if (folder / f"{split}.txt").is_file()
    }


def still_valid(
    stored: Config, config: Config, lists: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    """The kept ``lists`` that still describe ``config``'s splits: a split whose class-list key
    (or, for the test split, the test dataset) was overridden, e.g. ``alfa eval RUN
    data.test_split_file=F``, is read from the new value instead."""
    keep = {}
    for split, names in lists.items():
        key = CLASS_LIST_KEYS[split]
        same = getattr(stored.data, key) == getattr(config.data, key)
        if split == "test":
            same = same and stored.data.test_name == config.data.test_name
        if same:
            keep[split] = list(names)
    return keep
