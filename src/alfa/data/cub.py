"""CUB-200-2011 birds: CloserLook split JSON files or the raw ``images/`` folder.

* ``cub_json``: ``base.json`` / ``val.json`` / ``novel.json`` (train / val / test), each with
  ``label_names`` (the 200 sorted class folder names), ``image_names`` (image paths) and
  ``image_labels`` (index into ``label_names``). Paths written on another machine are looked up
  again by their last two components under ``image_root``, ``CUB_200_2011/images/`` or
  ``images/`` next to the JSON files.
* ``cub_raw``: ``CUB_200_2011/images/<NNN.Name>/*.jpg``; classes sorted by folder name get index
  ``i`` and go to train (base) when ``i % 2 == 0``, val when ``i % 4 == 1``, test (novel) when
  ``i % 4 == 3`` (100/50/50 classes), the CloserLook rule.

Images (variable size JPEGs, a few grey ones) are converted to RGB and, as in the CloserLook
evaluation transform, resized to ``round(1.15 * image_size)`` and centre-cropped to
``image_size`` (``crop_scale=1.0`` resizes straight to the size instead).
"""

from __future__ import annotations

import os
from pathlib import Path

from alfa.data._files import (
    ProblemSink,
    as_path,
    list_class_dirs,
    list_images,
    normalise_split,
    report,
    require_dir,
    require_file,
)
from alfa.data.dataset import ImageClassDataset, LazyImageDataset
from alfa.data.images import FileReader, ImageSpec
from alfa.errors import DataError
from alfa.limits import load_json, read_text

__all__ = ["JSON_FILES", "cub_split_of", "find_images_dir", "load_cub_json", "load_cub_raw"]

PathLike = str | os.PathLike[str]
JSON_FILES = {"train": "base.json", "val": "val.json", "test": "novel.json"}
"""CloserLook split file per split name."""


def cub_split_of(class_index: int) -> str:
    """The split (``train``, ``val`` or ``test``) of the class with sorted index ``class_index``."""
    if class_index % 2 == 0:
        return "train"
    return "val" if class_index % 4 == 1 else "test"


def _spec(image_size: int, crop_scale: float, resample: str) -> ImageSpec:
    return ImageSpec(size=image_size, channels=3, resample=resample, crop_scale=crop_scale)


def _locate(name: str, bases: list[Path]) -> str | None:
    direct = Path(name)
    if direct.is_file():
        return str(direct)
    tail = Path(*Path(name.replace("\\", "/")).parts[-2:])
    for base in bases:
        candidate = base / tail
        if candidate.is_file():
            return str(candidate)
    return None


def load_cub_json(
    path: PathLike,
    *,
    split: str = "train",
    image_size: int = 84,
    crop_scale: float = 1.15,
    resample: str = "bilinear",
    image_root: PathLike | None = None,
    in_memory: bool | None = None,
    on_problem: ProblemSink = None,
) -> ImageClassDataset:
    """CloserLook split files in ``path`` (``base.json``, ``val.json``, ``novel.json``).

    Args:
        path: The folder holding the JSON files (or one of them).
        split: ``train``/``base``, ``val`` or ``test``/``novel``.
        image_size: Output side in pixels.
        crop_scale: Resize to ``crop_scale * image_size`` then centre-crop (1.0: no crop).
        resample: PIL resize filter.
        image_root: Folder holding ``<NNN.Name>/*.jpg`` when the JSON paths are stale.
        in_memory: Decode every image up front (default: on demand).
        on_problem: Collects non-fatal problems instead of raising (used by the data check).

    Raises:
        DataError: Missing or malformed JSON, images that cannot be found.
    """
    split = normalise_split(split)
    root = as_path(path)
    root = root.parent if root.is_file() else require_dir(root, "CUB split folder")
    file = require_file(root / JSON_FILES[split], f"CUB {split} split file")
    meta = load_json(read_text(file, what="CUB split file"), str(file))
    keys = ("label_names", "image_names", "image_labels")
    if not isinstance(meta, dict) or any(k not in meta for k in keys):
        raise DataError(f"{file} must be a JSON object with keys {', '.join(keys)}")
    label_names, image_names, image_labels = (meta[k] for k in keys)
    for key, value, kinds in (
        ("label_names", label_names, (str,)),
        ("image_names", image_names, (str,)),
        ("image_labels", image_labels, (int,)),
    ):
        if not isinstance(value, list) or not all(isinstance(v, kinds) for v in value):
            kind = "class names (text)" if kinds == (str,) else "class indices (whole numbers)"
            if key == "image_names":
                kind = "image paths (text)"
            raise DataError(f"{file}: {key} must be a list of {kind}")
    if len(image_names) != len(image_labels):
        raise DataError(
            f"{file}: {len(image_names)} image_names but {len(image_labels)} image_labels"
        )
    bases = [as_path(image_root)] if image_root is not None else []
    bases += [root / "CUB_200_2011" / "images", root / "images", root]
    per_label: dict[int, list[str]] = {}
    missing: list[str] = []
    for name, label in zip(image_names, image_labels, strict=True):
        if not isinstance(label, int) or not 0 <= label < len(label_names):
            raise DataError(f"{file}: image label {label!r} is not an index into label_names")
        found = _locate(str(name), bases)
        if found is None:
            missing.append(str(name))
        else:
            per_label.setdefault(label, []).append(found)
    if missing:
        report(
            on_problem,
            f"{len(missing)} images listed in {file} were not found, e.g. "
            f"{missing[0]} (pass image_root=<folder with the class folders>)",
        )
    if not per_label:
        raise DataError(f"none of the images listed in {file} were found")
    order = sorted(per_label)
    names = [str(label_names[i]) for i in order]
    return _finish(
        names,
        [sorted(per_label[i]) for i in order],
        _spec(image_size, crop_scale, resample),
        str(file),
        in_memory,
    )


def find_images_dir(path: Path) -> Path:
    """The folder of class folders: ``path/CUB_200_2011/images``, ``path/images`` or ``path``.

    Raises:
        DataError: None of these holds ``NNN.Name`` class folders.
    """
    require_dir(path, "CUB folder")
    for candidate in (path / "CUB_200_2011" / "images", path / "images", path):
        if candidate.is_dir() and list_class_dirs(candidate, r"\d+\."):
            return candidate
    raise DataError(
        f"no CUB class folders (NNN.Name) under {path}; expected "
        "CUB_200_2011/images/<NNN.Name>/*.jpg"
    )


def load_cub_raw(
    path: PathLike,
    *,
    split: str = "train",
    image_size: int = 84,
    crop_scale: float = 1.15,
    resample: str = "bilinear",
    in_memory: bool | None = None,
    on_problem: ProblemSink = None,
) -> ImageClassDataset:
    """The raw ``CUB_200_2011/images`` folder with the CloserLook class split.

    Raises:
        DataError: No class folders, empty class folders, or a split with no classes.
    """
    split = normalise_split(split)
    images_dir = find_images_dir(as_path(path))
    names: list[str] = []
    items: list[list[str]] = []
    for index, class_dir in enumerate(list_class_dirs(images_dir, r"\d+\.")):
        if cub_split_of(index) != split:
            continue
        files = list_images(class_dir)
        if not files:
            report(on_problem, f"empty class folder {class_dir} (add its images or re-extract)")
            continue
        names.append(class_dir.name)
        items.append([str(f) for f in files])
    if not names:
        raise DataError(f"the {split} split of {images_dir} has no classes with images")
    return _finish(
        names, items, _spec(image_size, crop_scale, resample), str(images_dir), in_memory
    )


def _finish(
    names: list[str],
    items: list[list[str]],
    spec: ImageSpec,
    source: str,
    in_memory: bool | None,
) -> ImageClassDataset:
    data = LazyImageDataset(names, items, FileReader(), spec, source=source)
    return data.to_memory() if in_memory else data
