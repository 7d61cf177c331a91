"""Format detection and the loader registry: one entry point for every supported layout."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alfa.data._files import (
    IMAGE_EXTENSIONS,
    as_path,
    is_image_name,
    list_class_dirs,
    list_images,
)
from alfa.data.cub import load_cub_json, load_cub_raw
from alfa.data.dataset import ImageClassDataset
from alfa.data.folder import load_folder
from alfa.data.metadataset import is_metadataset_root
from alfa.data.mini_imagenet import (
    load_mini_imagenet_csv,
    load_mini_imagenet_folders,
    load_mini_imagenet_l2l,
    load_mini_imagenet_pickle,
)
from alfa.data.omniglot import load_omniglot
from alfa.data.splits import class_list_lines
from alfa.data.tiered_imagenet import load_tiered_imagenet_npz, load_tiered_imagenet_png
from alfa.errors import DataError

__all__ = ["FORMAT_SPLITS", "LOADERS", "detect_format", "load_dataset", "split_paths"]

LOADERS: dict[str, Callable[..., ImageClassDataset]] = {
    "omniglot": load_omniglot,
    "mini_imagenet_csv": load_mini_imagenet_csv,
    "mini_imagenet_folders": load_mini_imagenet_folders,
    "mini_imagenet_pickle": load_mini_imagenet_pickle,
    "mini_imagenet_l2l": load_mini_imagenet_l2l,
    "tiered_imagenet_png": load_tiered_imagenet_png,
    "tiered_imagenet_npz": load_tiered_imagenet_npz,
    "cub_json": load_cub_json,
    "cub_raw": load_cub_raw,
    "folder": load_folder,
}
"""Format name -> loader ``(path, *, split, image_size, **options) -> ImageClassDataset``."""

FORMAT_SPLITS: dict[str, tuple[str | None, ...]] = {
    name: ("train", "val", "test") for name in LOADERS
} | {"omniglot": (None,), "folder": (None,)}
"""The splits a full check visits (``None``: the whole data set at once)."""

_MINI_PICKLE = re.compile(r"^mini-imagenet-cache-(train|val|test|validation)\.pkl$")
_TIERED = re.compile(r"^(train|val|test)_(images_png\.pkl|images\.npz|labels\.pkl)$")
_CUB_JSON = {"base.json": "train", "val.json": "val", "novel.json": "test"}
_SPLIT_CSV = {"train.csv", "val.csv", "test.csv"}
_WNID = re.compile(r"^n\d{8}$")
_OMNIGLOT_ROOT = re.compile(r"^images_(background|evaluation)")


def _names(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError as exc:
        raise DataError(f"cannot read folder {folder}: {exc.strerror or exc}") from exc


def _detect_file(path: Path) -> str:
    name = path.name
    siblings = _names(path.parent)
    if name.lower().endswith(".zip"):
        return "omniglot"
    if _MINI_PICKLE.match(name):
        l2l = name.endswith("-validation.pkl") or "mini-imagenet-cache-validation.pkl" in siblings
        return "mini_imagenet_l2l" if l2l else "mini_imagenet_pickle"
    match = _TIERED.match(name)
    if match:
        split = match.group(1)
        if name.endswith("png.pkl") or f"{split}_images_png.pkl" in siblings:
            return "tiered_imagenet_png"
        return "tiered_imagenet_npz"
    if name in _CUB_JSON:
        return "cub_json"
    if name in _SPLIT_CSV:
        return "mini_imagenet_csv"
    raise DataError(
        f"cannot tell the dataset format of file {path}; pass the dataset folder "
        f"or format=NAME (one of {', '.join(LOADERS)})"
    )


def _is_wnid_split(folder: Path) -> bool:
    classes = list_class_dirs(folder) if folder.is_dir() else []
    return bool(classes) and all(_WNID.match(c.name) for c in classes)


def _detect_dir(path: Path) -> str:
    names = _names(path)
    if is_metadataset_root(path):
        return "metadataset"  # read by alfa.data.metadataset, not by a loader of LOADERS
    if "mini-imagenet-cache-validation.pkl" in names:
        return "mini_imagenet_l2l"
    if any(_MINI_PICKLE.match(n) for n in names):
        return "mini_imagenet_pickle"
    if any(n.endswith("_images_png.pkl") for n in names if _TIERED.match(n)):
        return "tiered_imagenet_png"
    if any(n.endswith("_images.npz") for n in names if _TIERED.match(n)):
        return "tiered_imagenet_npz"
    if names & set(_CUB_JSON):
        return "cub_json"
    if names & _SPLIT_CSV:
        return "mini_imagenet_csv"
    if "CUB_200_2011" in names or _is_cub_images(path) or _is_cub_images(path / "images"):
        return "cub_raw"
    if any(_is_wnid_split(path / s) for s in ("train", "val", "test")) or _is_wnid_split(
        path / "mini_imagenet_full_size" / "train"
    ):
        return "mini_imagenet_folders"
    if any(_OMNIGLOT_ROOT.match(n) for n in names):
        return "omniglot"
    for alphabet in list_class_dirs(path):
        if list_class_dirs(alphabet, r"character\d+$"):
            return "omniglot"
    for candidate in [path, *(path / s for s in ("train", "val", "test"))]:
        if candidate.is_dir() and any(list_images(c) for c in list_class_dirs(candidate)):
            return "folder"
    loose = [n for n in names if is_image_name(n)]
    hint = "; put the images into one sub-folder per class" if loose else ""
    if not loose and not any(list_images(c) for c in list_class_dirs(path)):
        others = sorted(n for n in names if not n.startswith("."))
        files = [n for n in others if (path / n).is_file()] or others
        found = f"; it holds {len(others)} other entries, e.g. '{files[0]}'" if others else ""
        raise DataError(
            f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)}) and no dataset files alfa "
            f"reads{found}; is it the dataset folder? (formats: {', '.join(LOADERS)})"
        )
    raise DataError(
        f"cannot tell the dataset format of {path}{hint}; pass format=NAME "
        f"(one of {', '.join(LOADERS)})"
    )


def _is_cub_images(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    classes = list_class_dirs(folder)
    return bool(classes) and all(re.match(r"^\d{3}\.", c.name) for c in classes)


def detect_format(path: str | os.PathLike[str]) -> str:
    """The registry name of the dataset layout at ``path`` (a folder or a dataset file).

    Raises:
        DataError: The path does not exist or matches no known layout.
    """
    p = as_path(path)
    if not p.exists():
        raise DataError(f"dataset path not found: {p} (check the path)")
    return _detect_file(p) if p.is_file() else _detect_dir(p)


def split_paths(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """One or several dataset paths; a string with commas that is not itself a path is split."""
    if isinstance(path, str | os.PathLike):
        text = os.fspath(path)
        if "," in text and not as_path(text).exists():
            return [as_path(p.strip()) for p in text.split(",") if p.strip()]
        return [as_path(text)]
    return [as_path(p) for p in path]


def _split_from_file(fmt: str, path: Path) -> str | None:
    if not path.is_file():
        return None
    if fmt.startswith("mini_imagenet_") and fmt != "mini_imagenet_folders":
        match = _MINI_PICKLE.match(path.name)
        return match.group(1) if match else path.stem
    if fmt.startswith("tiered_imagenet"):
        match = _TIERED.match(path.name)
        return match.group(1) if match else None
    if fmt == "cub_json":
        return _CUB_JSON.get(path.name)
    return None


def load_dataset(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    format: str | None = None,
    split: str | None = None,
    image_size: int | None = None,
    **options: Any,
) -> ImageClassDataset:
    """Load one split of an image dataset in any registered format.

    Args:
        path: A dataset folder or file; several (a list, or a comma-separated string) only for
            Omniglot, whose roots are merged.
        format: A name from :data:`LOADERS`; ``None`` detects it.
        split: ``train``/``val``/``test`` (aliases accepted); ``None`` takes the split named by
            a split file passed as ``path``, else ``train`` (Omniglot and folders: everything).
        image_size: Output side in pixels; ``None`` keeps the format's default (Omniglot 28,
            others 84).
        **options: Loader options (see each loader), plus ``class_list`` (a file of class
            names, one a line, or the names as a list) which keeps only those classes in that
            order.

    Raises:
        DataError: Missing path, unknown format or option, or any problem of the data itself.
    """
    paths = split_paths(path)
    if not paths:
        raise DataError("no dataset path given")
    for p in paths:
        if not p.exists():
            raise DataError(f"dataset path not found: {p} (check the path)")
    if format is None:
        found = {detect_format(p) for p in paths}
        if len(found) > 1:
            raise DataError(
                f"the paths {', '.join(map(str, paths))} hold different formats "
                f"({', '.join(sorted(found))}); load them separately"
            )
        format = found.pop()
    if format == "metadataset":
        raise DataError(
            f"{paths[0]} holds Meta-Dataset records: use data.name=metadataset "
            "(python -m alfa.paper.metadataset_run)"
        )
    loader = LOADERS.get(format)
    if loader is None:
        raise DataError(f"unknown dataset format {format!r}; use one of {', '.join(LOADERS)}")
    params = inspect.signature(loader).parameters
    class_list = options.pop("class_list", None) if "class_list" not in params else None
    unknown = sorted(set(options) - set(params))
    if unknown:
        allowed = [n for n in params if n not in ("path", "split", "image_size", "on_problem")]
        raise DataError(
            f"unknown option {unknown[0]!r} for format {format!r}; "
            f"valid options: {', '.join([*allowed, 'class_list'])}"
        )
    if len(paths) > 1 and format != "omniglot":
        raise DataError(
            f"format {format!r} takes one path, got {len(paths)}: {', '.join(map(str, paths))}"
        )
    if split is None:
        split = _split_from_file(format, paths[0])
        if split is None and FORMAT_SPLITS[format] != (None,):
            split = "train"
    kwargs: dict[str, Any] = dict(options, split=split)
    if image_size is not None:
        kwargs["image_size"] = image_size
    data = loader(paths if len(paths) > 1 else paths[0], **kwargs)
    if class_list is not None:
        lines, label = class_list_lines(class_list)
        known = set(data.class_names)
        missing = [number for number, name in lines if name not in known]
        if missing:  # by line: the file may be any file named in an export's config
            raise DataError(
                f"{len(missing)} classes listed in {label} are not in "
                f"{data.source or 'the data set'} (the first on line {missing[0]}); check the "
                "class list file"
            )
        data = data.select_classes([name for _, name in lines])
    return data
