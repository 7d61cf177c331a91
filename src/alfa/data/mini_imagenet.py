"""miniImageNet in its four published layouts (100 classes x 600 images, 64/16/20 split).

* ``mini_imagenet_csv`` (Ravi & Larochelle): ``images/*.jpg`` plus ``{train,val,test}.csv``
  with header ``filename,label`` (label = WordNet id). Images have arbitrary sizes.
* ``mini_imagenet_folders`` (MAML++/ALFA): ``{train,val,test}/<wnid>/*.jpg``, optionally inside
  ``mini_imagenet_full_size/``.
* ``mini_imagenet_pickle`` (Ren et al.): ``mini-imagenet-cache-{train,val,test}.pkl``, a dict with
  ``image_data`` (``uint8 [N, 84, 84, 3]`` RGB) and ``class_dict`` (``{wnid: [row, ...]}``),
  possibly a Python 2 pickle whose keys load as ``bytes``.
* ``mini_imagenet_l2l`` (learn2learn): the same dict in ``mini-imagenet-cache-{train,validation,
  test}.pkl``.

Every loader checks the split's classes against the standard lists shipped with the package
(``check_split``: ``warn`` (default), ``error`` or ``off``); a split holding another split's
classes (caches with ``val`` and ``test`` swapped) is always an error. Class order is the sorted
WordNet ids. Images are resized to ``image_size`` (default 84) with a bilinear filter.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from alfa.data._containers import array_dataset, decode_keys, load_pickle
from alfa.data._files import (
    ProblemSink,
    dataset_folder,
    list_class_dirs,
    list_images,
    normalise_split,
    report,
    require_dir,
    require_file,
)
from alfa.data.dataset import ImageClassDataset, LazyImageDataset
from alfa.data.images import FileReader, ImageSpec
from alfa.data.splits import check_split_classes
from alfa.errors import DataError

__all__ = [
    "load_mini_imagenet_csv",
    "load_mini_imagenet_folders",
    "load_mini_imagenet_l2l",
    "load_mini_imagenet_pickle",
    "pickle_name",
]

PathLike = str | os.PathLike[str]


def _lazy(
    class_names: list[str],
    items: list[list[str]],
    spec: ImageSpec,
    source: str,
    in_memory: bool | None,
) -> ImageClassDataset:
    data = LazyImageDataset(class_names, items, FileReader(), spec, source=source)
    return data.to_memory() if in_memory else data


def load_mini_imagenet_csv(
    path: PathLike,
    *,
    split: str = "train",
    image_size: int = 84,
    resample: str = "bilinear",
    check_split: str = "warn",
    in_memory: bool | None = None,
    on_problem: ProblemSink = None,
) -> ImageClassDataset:
    """Ravi & Larochelle layout: ``<path>/{split}.csv`` rows ``filename,label`` + ``images/``.

    Raises:
        DataError: Missing CSV or image folder, bad header, listed images missing.
    """
    split = normalise_split(split)
    root = dataset_folder(path, "miniImageNet folder")
    table = require_file(root / f"{split}.csv", f"miniImageNet {split} split file")
    images_dir = root / "images" if (root / "images").is_dir() else root
    per_class: dict[str, list[str]] = {}
    missing: list[str] = []
    try:
        with open(table, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"filename", "label"} <= set(reader.fieldnames):
                raise DataError(
                    f"{table} must have the header 'filename,label', found {reader.fieldnames}"
                )
            for row in reader:
                name, label = (row["filename"] or "").strip(), (row["label"] or "").strip()
                if not name or not label:
                    raise DataError(f"{table} line {reader.line_num}: empty filename or label")
                file = images_dir / name
                if not file.is_file():
                    missing.append(str(file))
                    continue
                per_class.setdefault(label, []).append(str(file))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {table}: {exc}") from exc
    if missing:
        report(
            on_problem,
            f"{len(missing)} images listed in {table} are missing, e.g. "
            f"{missing[0]} (put the JPEGs in {images_dir})",
        )
    if not per_class:
        raise DataError(f"no images of {table} found in {images_dir}")
    names = sorted(per_class)
    check_split_classes(names, split, str(table), check_split)
    spec = ImageSpec(size=image_size, channels=3, resample=resample)
    return _lazy(names, [per_class[n] for n in names], spec, str(table), in_memory)


def load_mini_imagenet_folders(
    path: PathLike,
    *,
    split: str = "train",
    image_size: int = 84,
    resample: str = "bilinear",
    check_split: str = "warn",
    in_memory: bool | None = None,
    on_problem: ProblemSink = None,
) -> ImageClassDataset:
    """MAML++ layout: ``<path>/{train,val,test}/<wnid>/*.jpg``.

    Raises:
        DataError: Missing split folder, no class folders, empty class folders.
    """
    split = normalise_split(split)
    root = dataset_folder(path, "miniImageNet folder")
    if not (root / split).is_dir() and (root / "mini_imagenet_full_size").is_dir():
        root = root / "mini_imagenet_full_size"
    folder = require_dir(root / split, f"miniImageNet {split} split folder")
    names: list[str] = []
    items: list[list[str]] = []
    for class_dir in list_class_dirs(folder):
        files = list_images(class_dir)
        if not files:
            report(on_problem, f"empty class folder {class_dir} (add its images or delete it)")
            continue
        names.append(class_dir.name)
        items.append([str(f) for f in files])
    if not names:
        raise DataError(f"no class folders with images in {folder} (expected <wnid>/*.jpg)")
    check_split_classes(names, split, str(folder), check_split)
    spec = ImageSpec(size=image_size, channels=3, resample=resample)
    return _lazy(names, items, spec, str(folder), in_memory)


def pickle_name(split: str, *, l2l: bool) -> str:
    """File name of a split's cache: ``mini-imagenet-cache-{train,val,test}.pkl`` (Ren et al.)
    or ``mini-imagenet-cache-{train,validation,test}.pkl`` (learn2learn)."""
    split = normalise_split(split)
    if l2l and split == "val":
        split = "validation"
    return f"mini-imagenet-cache-{split}.pkl"


def _load_cache(
    file: Path,
    split: str,
    image_size: int,
    resample: str,
    check_split: str,
    in_memory: bool | None,
) -> ImageClassDataset:
    data = decode_keys(load_pickle(require_file(file, f"miniImageNet {split} cache")))
    if not isinstance(data, dict) or not {"image_data", "class_dict"} <= set(data):
        keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"{file} is not a miniImageNet cache: expected a dict with image_data and "
            f"class_dict, found {keys}"
        )
    images = data["image_data"]
    class_dict = decode_keys(data["class_dict"])
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3:
        shape = getattr(images, "shape", type(images).__name__)
        raise DataError(f"{file}: image_data must be uint8 [N, H, W, 3], got {shape}")
    if not isinstance(class_dict, dict) or not class_dict:
        raise DataError(f"{file}: class_dict must be a non-empty dict {{wnid: [row indices]}}")
    if images.dtype.kind not in "uifb":
        raise DataError(f"{file}: image_data must hold numbers (uint8 pixels), not {images.dtype}")
    if images.dtype != np.uint8:
        images = np.clip(images, 0, 255).astype(np.uint8)
    odd = [k for k in class_dict if not isinstance(k, str)]
    if odd:
        raise DataError(
            f"{file}: class_dict keys must be class names (text), found {odd[0]!r} "
            f"({type(odd[0]).__name__})"
        )
    names = sorted(class_dict)
    labels = np.full(images.shape[0], -1, dtype=np.int64)
    for index, name in enumerate(names):
        rows = _rows(class_dict[name], name, file)
        if rows.size == 0:
            raise DataError(f"{file}: class {name!r} has no rows in class_dict")
        if rows.min() < 0 or rows.max() >= images.shape[0]:
            raise DataError(f"{file}: class {name!r} lists rows outside 0..{images.shape[0] - 1}")
        labels[rows] = index
    check_split_classes(names, split, str(file), check_split)
    spec = ImageSpec(size=image_size, channels=3, resample=resample)
    return array_dataset(images, labels, names, spec, source=str(file), in_memory=in_memory)


def _rows(value: object, name: str, file: Path) -> np.ndarray:
    """The row indices a class_dict entry lists, as int64 (whole numbers only)."""
    try:
        rows = np.asarray(value)
    except (ValueError, TypeError):
        rows = np.asarray([], dtype=object)
    if rows.size == 0 and rows.dtype.kind != "O":
        return np.zeros(0, dtype=np.int64)
    if rows.dtype.kind not in "iu":
        raise DataError(
            f"{file}: class_dict[{name!r}] must be a list of row indices (whole numbers)"
        )
    return rows.astype(np.int64).reshape(-1)


def load_mini_imagenet_pickle(
    path: PathLike,
    *,
    split: str = "train",
    image_size: int = 84,
    resample: str = "bilinear",
    check_split: str = "warn",
    in_memory: bool | None = None,
) -> ImageClassDataset:
    """Ren et al. cache ``<path>/mini-imagenet-cache-{split}.pkl`` (held in memory).

    Raises:
        DataError: Missing or corrupt file, wrong keys or shapes, row indices out of range.
    """
    split = normalise_split(split)
    file = dataset_folder(path, "miniImageNet folder") / pickle_name(split, l2l=False)
    return _load_cache(file, split, image_size, resample, check_split, in_memory)


def load_mini_imagenet_l2l(
    path: PathLike,
    *,
    split: str = "train",
    image_size: int = 84,
    resample: str = "bilinear",
    check_split: str = "warn",
    in_memory: bool | None = None,
) -> ImageClassDataset:
    """learn2learn cache ``<path>/mini-imagenet-cache-{train,validation,test}.pkl``.

    Raises:
        DataError: Missing or corrupt file, wrong keys or shapes, row indices out of range.
    """
    split = normalise_split(split)
    file = dataset_folder(path, "miniImageNet folder") / pickle_name(split, l2l=True)
    return _load_cache(file, split, image_size, resample, check_split, in_memory)
