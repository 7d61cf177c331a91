"""``alfa data check``: scan a dataset and report every problem instead of stopping at the first.

The check loads each split lazily with a problem collector, then opens every image once (a
thread pool; PIL releases the GIL while decoding) to record its size and mode and to catch
corrupt files. Problems reported: missing paths or split files, empty class folders, listed
images that do not exist, unreadable or corrupt images, mixed image modes, classes with fewer
than ``min_images`` images, splits with fewer than 2 classes (no task can be drawn) and
miniImageNet splits whose classes differ from the standard ones.

A support folder for ``alfa adapt`` (``alfa data check --support``) is checked as adapt reads
it (:func:`check_support`): every sub-folder is a class, whatever its name, and one image per
class is a 1-shot support set, not a problem.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from alfa.data.dataset import ImageClassDataset, LazyImageDataset
from alfa.data.formats import FORMAT_SPLITS, LOADERS, detect_format, split_paths
from alfa.data.images import FileReader, ImageSpec
from alfa.errors import DataError

__all__ = [
    "MIN_IMAGES",
    "CheckReport",
    "SplitSummary",
    "check_dataset",
    "check_support",
    "format_report",
    "run_check",
]

MIN_IMAGES = 20
"""Default minimum images per class: 5 shots + 15 queries, the standard 5-shot episode."""


@dataclass
class SplitSummary:
    """Counts for one split (``name`` is ``all`` for formats without splits)."""

    name: str
    num_classes: int
    num_images: int
    min_per_class: int
    mean_per_class: float
    max_per_class: int


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        path: The checked path(s).
        format: The format used (``None`` if it could not be determined).
        detected: Whether the format was detected rather than given.
        splits: Per-split class and image counts.
        image_sizes: ``"WxH"`` -> number of images with that stored size.
        image_modes: PIL mode -> number of images.
        checked_images: How many images were opened.
        problems: Every problem found, one line each.
        notes: What is worth knowing but is not a problem (e.g. uneven shots of a support set).
    """

    path: str
    format: str | None = None
    detected: bool = False
    splits: list[SplitSummary] = field(default_factory=list)
    image_sizes: dict[str, int] = field(default_factory=dict)
    image_modes: dict[str, int] = field(default_factory=dict)
    checked_images: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """``True`` when no problem was found."""
        return not self.problems


def _open_all(data: LazyImageDataset, limit: int | None) -> list[tuple[str, str, str | None]]:
    pairs = [
        (c, i)
        for c, n in enumerate(data.images_per_class())
        for i in range(n)
        if limit is None or i < limit
    ]

    def probe(pair: tuple[int, int]) -> tuple[str, str, str | None]:
        try:
            image = data.open_raw(*pair)
        except DataError as exc:
            return "", "", str(exc)
        return image.mode, f"{image.size[0]}x{image.size[1]}", None

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        return list(pool.map(probe, pairs, chunksize=32))


def _summarise(name: str, data: ImageClassDataset) -> SplitSummary:
    counts = data.images_per_class()
    return SplitSummary(
        name, len(counts), sum(counts), min(counts), sum(counts) / len(counts), max(counts)
    )


def _load_split(
    fmt: str, paths: Sequence[Any], split: str | None, problems: list[str]
) -> ImageClassDataset | None:
    loader = LOADERS[fmt]
    params = inspect.signature(loader).parameters
    kwargs: dict[str, Any] = {"split": split, "in_memory": False}
    label = split or "all"
    if "on_problem" in params:
        kwargs["on_problem"] = lambda message: problems.append(f"[{label}] {message}")
    target = paths if len(paths) > 1 else paths[0]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = loader(target, **kwargs)
        problems.extend(f"[{label}] {w.message}" for w in caught)
        return data
    except DataError as exc:
        problems.append(f"[{label}] {exc}")
        return None


def _splits_of(fmt: str, paths: Sequence[Any]) -> list[str | None]:
    if fmt == "folder":
        found = [s for s in ("train", "val", "test") if (paths[0] / s).is_dir()]
        return list(found) or [None]
    return list(FORMAT_SPLITS[fmt])


def check_dataset(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    format: str | None = None,
    *,
    min_images: int = MIN_IMAGES,
    max_images_per_class: int | None = None,
) -> CheckReport:
    """Scan a dataset (all of its splits) and collect every problem.

    Args:
        path: Dataset folder or file (several for Omniglot, as for ``load_dataset``).
        format: A registry name; ``None`` detects it.
        min_images: Classes with fewer images are reported.
        max_images_per_class: Open at most this many images per class (``None``: all).

    Returns:
        A :class:`CheckReport`; this function does not raise for data problems.
    """
    paths = split_paths(path)
    report = CheckReport(path=", ".join(map(str, paths)))
    missing = [p for p in paths if not p.exists()]
    if missing or not paths:
        report.problems += [f"dataset path not found: {p}" for p in missing] or ["no path given"]
        return report
    if format is not None and format not in LOADERS and format != "metadataset":
        report.problems.append(
            f"unknown dataset format {format!r}; use one of {', '.join(LOADERS)}"
        )
        return report
    try:
        report.format = format or detect_format(paths[0])
    except DataError as exc:
        report.problems.append(str(exc))
        return report
    report.detected = format is None
    if report.format == "metadataset":
        _check_metadataset(paths[0], report)
        return report
    sizes: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    for split in _splits_of(report.format, paths):
        data = _load_split(report.format, paths, split, report.problems)
        if data is None:
            continue
        label = split or "all"
        report.splits.append(_summarise(label, data))
        if len(data.class_names) < 2:
            report.problems.append(
                f"[{label}] has {len(data.class_names)} class(es); a few-shot task draws at least "
                "2 classes (data.ways >= 2), so no task can be drawn from it"
            )
        for name, count in zip(data.class_names, data.images_per_class(), strict=True):
            if count < min_images:
                report.problems.append(
                    f"[{label}] class {name!r} has only {count} images (fewer than {min_images})"
                )
        if isinstance(data, LazyImageDataset):
            for mode, size, error in _open_all(data, max_images_per_class):
                report.checked_images += 1
                if error is not None:
                    report.problems.append(f"[{label}] {error}")
                else:
                    modes[mode] += 1
                    sizes[size] += 1
        else:
            n = data.num_images
            _, h, w = data.image_shape
            modes["L" if data.channels == 1 else "RGB"] += n
            sizes[f"{w}x{h}"] += n
            report.checked_images += n
    if len(modes) > 1:
        listed = ", ".join(f"{m} ({n})" for m, n in modes.most_common())
        report.problems.append(
            f"mixed image modes: {listed}; they are converted to one mode "
            "on load, but check that no file is unexpectedly grey or paletted"
        )
    report.image_sizes = dict(sizes.most_common())
    report.image_modes = dict(modes.most_common())
    return report


def check_support(path: str | os.PathLike[str]) -> CheckReport:
    """Check a support folder as ``alfa adapt`` reads it: one sub-folder per class (any name,
    ``train``/``val``/``test`` included), at least one image in each; every image opened.

    Returns:
        A :class:`CheckReport` of format ``support``; uneven numbers of images per class are a
        note (adapt warns about them), not a problem.
    """
    from alfa.data._files import as_path, list_class_dirs, list_images

    root = as_path(path)
    report = CheckReport(path=str(root), format="support")
    if not root.is_dir():
        report.problems.append(f"support folder not found: {root}")
        return report
    names, files = [], []
    for class_dir in list_class_dirs(root):
        images = list_images(class_dir)
        if not images:
            report.problems.append(f"class folder '{class_dir.name}' holds no images")
            continue
        names.append(class_dir.name)
        files.append(images)
    if not names:
        report.problems.append(f"no class sub-folders with images in {root}")
        return report
    counts = [len(f) for f in files]
    report.splits.append(
        SplitSummary(
            "support", len(counts), sum(counts), min(counts), sum(counts) / len(counts), max(counts)
        )
    )
    if len(set(counts)) > 1:
        shown = ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True))
        report.notes.append(
            f"the classes hold different numbers of images ({shown}); a model is trained with "
            "the same number per class"
        )
    data = LazyImageDataset(
        names,
        [[str(f) for f in group] for group in files],
        FileReader(),
        ImageSpec(size=8, channels=3),
        source=str(root),
    )
    modes: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for mode, size, error in _open_all(data, None):
        report.checked_images += 1
        if error is not None:
            report.problems.append(error)
        else:
            modes[mode] += 1
            sizes[size] += 1
    report.image_sizes = dict(sizes.most_common())
    report.image_modes = dict(modes.most_common())
    return report


def _check_metadataset(path: Any, report: CheckReport) -> None:
    """Every source under a Meta-Dataset root: splits, and the problems of every record."""
    from alfa.data.metadataset import check_source, find_sources

    for source in find_sources(path):
        splits, problems, opened = check_source(source)
        for label, counts in splits:
            report.splits.append(
                SplitSummary(
                    label,
                    len(counts),
                    sum(counts),
                    min(counts),
                    sum(counts) / len(counts),
                    max(counts),
                )
            )
        report.problems += problems
        report.checked_images += opened


def _counts_line(num_classes: int, num_images: int, lo: int, mean: float, hi: int) -> str:
    return (
        f"{num_classes} classes, {num_images} images; images per class "
        f"min {lo} / mean {mean:.1f} / max {hi}"
    )


def _sizes_line(sizes: dict[str, int], shown: int = 5) -> str:
    items = sorted(sizes.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} ({v})" for k, v in items[:shown])
    if len(items) > shown:
        dims = [tuple(int(x) for x in k.split("x")) for k in sizes]
        widths, heights = [d[0] for d in dims], [d[1] for d in dims]
        text += (
            f" and {len(items) - shown} other sizes (width {min(widths)}-{max(widths)}, "
            f"height {min(heights)}-{max(heights)})"
        )
    return text


PICKLE_FORMATS = (
    "mini_imagenet_pickle",
    "mini_imagenet_l2l",
    "tiered_imagenet_png",
    "tiered_imagenet_npz",
)
"""Formats stored as Python pickles (the tieredImageNet ``.npz`` one keeps its labels in one)."""

PICKLE_NOTE = (
    "note: this format is stored as Python pickles, which can run code when loaded by "
    "pickle itself; alfa reads them with a restricted unpickler that accepts only NumPy arrays, "
    "dtypes and plain containers and refuses anything else before it runs"
)


def format_report(report: CheckReport) -> str:
    """A multi-line human-readable rendering of a :class:`CheckReport`."""
    lines = [f"dataset: {report.path}"]
    how = "detected" if report.detected else "given"
    lines.append(f"format: {report.format} ({how})" if report.format else "format: unknown")
    if report.format in PICKLE_FORMATS:
        lines.append(PICKLE_NOTE)
    for s in report.splits:
        lines.append(
            f"split {s.name}: "
            + _counts_line(
                s.num_classes, s.num_images, s.min_per_class, s.mean_per_class, s.max_per_class
            )
        )
    if len(report.splits) > 1:
        classes = sum(s.num_classes for s in report.splits)
        images = sum(s.num_images for s in report.splits)
        lo = min(s.min_per_class for s in report.splits)
        hi = max(s.max_per_class for s in report.splits)
        lines.append("total: " + _counts_line(classes, images, lo, images / classes, hi))
    if report.image_sizes:
        lines.append("image sizes seen: " + _sizes_line(report.image_sizes))
    if report.image_modes:
        lines.append(
            "image modes seen: " + ", ".join(f"{k} ({v})" for k, v in report.image_modes.items())
        )
    lines.append(f"images opened: {report.checked_images}")
    lines += [f"note: {note}" for note in report.notes]
    if report.problems:
        lines.append(f"problems ({len(report.problems)}):")
        lines += [f"  - {p}" for p in report.problems]
    else:
        lines.append("problems: none")
    return "\n".join(lines)


def run_check(
    path: str,
    format: str | None = None,
    *,
    min_images: int = MIN_IMAGES,
    max_images_per_class: int | None = None,
    support: bool = False,
) -> int:
    """Print the check report of ``path``; return 0 when no problem was found, else 2.

    ``min_images`` and ``max_images_per_class`` are passed to :func:`check_dataset` (limit the
    number of images opened per class to speed up the check of very large data sets); with
    ``support`` the folder is checked as a support set of ``alfa adapt``
    (:func:`check_support`).
    """
    if support:
        report = check_support(path)
    else:
        report = check_dataset(
            path, format or None, min_images=min_images, max_images_per_class=max_images_per_class
        )
    print(format_report(report))
    return 0 if report.ok else 2
