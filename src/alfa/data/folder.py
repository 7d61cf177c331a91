"""A user's own images: one folder per class, ``root/<class>/*.{png,jpg,jpeg,bmp}``.

If ``root`` has ``train``/``val``/``test`` sub-folders (``root/train/<class>/...``), the one
named by ``split`` (default ``train``) is used; otherwise ``root`` itself holds the class
folders. Files with other endings are ignored. Images of any mode are converted to
``channels`` (3: RGB, 1: grey).
"""

from __future__ import annotations

import os

from alfa.data._files import (
    ProblemSink,
    as_path,
    list_class_dirs,
    list_images,
    report,
    require_dir,
)
from alfa.data.dataset import ImageClassDataset, LazyImageDataset
from alfa.data.images import FileReader, ImageSpec
from alfa.errors import DataError

__all__ = ["IN_MEMORY_LIMIT", "load_folder"]

SPLIT_FOLDERS = ("train", "val", "test")
"""Sub-folder names that mark a split layout ``root/<split>/<class>/...``."""

IN_MEMORY_LIMIT = 10_000
"""With ``in_memory=None``, folders with at most this many images are decoded up front."""


def load_folder(
    path: str | os.PathLike[str],
    *,
    split: str | None = None,
    image_size: int = 84,
    channels: int = 3,
    resample: str = "bilinear",
    crop_scale: float = 1.0,
    invert: bool = False,
    in_memory: bool | None = None,
    on_problem: ProblemSink = None,
) -> ImageClassDataset:
    """Load a class-per-folder image collection.

    Args:
        path: The root folder.
        split: Which ``path/<split>`` folder to use when ``path`` has split folders
            (``None``: ``train``); ignored when it has none.
        image_size: Output side in pixels.
        channels: 3 (RGB) or 1 (grey).
        resample: PIL resize filter.
        crop_scale: Resize to ``crop_scale * image_size`` then centre-crop (1.0: no crop).
        invert: Store ``255 - x`` (for dark-on-light drawings such as Omniglot).
        in_memory: Decode every image up front; ``None`` does so for at most
            :data:`IN_MEMORY_LIMIT` images.
        on_problem: Collects non-fatal problems instead of raising (used by the data check).

    Raises:
        DataError: Missing folder or split folder, no class folders, empty class folders.
    """
    root = require_dir(as_path(path), "image folder")
    split_dirs = [s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    if split_dirs:
        chosen = split if split is not None else "train"
        if chosen not in split_dirs:
            raise DataError(
                f"{root} has split folders {', '.join(split_dirs)} but no "
                f"{chosen!r}; pass split= one of them"
            )
        root = root / chosen
    names: list[str] = []
    items: list[list[str]] = []
    for class_dir in list_class_dirs(root):
        files = list_images(class_dir)
        if not files:
            report(
                on_problem,
                f"empty class folder {class_dir} (no .png/.jpg/.jpeg/.bmp "
                "images; add some or delete the folder)",
            )
            continue
        names.append(class_dir.name)
        items.append([str(f) for f in files])
    if not names:
        loose = list_images(root)
        hint = " (the images must be inside one sub-folder per class)" if loose else ""
        raise DataError(f"no class folders with images in {root}{hint}")
    spec = ImageSpec(
        size=image_size, channels=channels, resample=resample, crop_scale=crop_scale, invert=invert
    )
    data = LazyImageDataset(names, items, FileReader(), spec, source=str(root))
    total = sum(len(i) for i in items)
    eager = in_memory if in_memory is not None else total <= IN_MEMORY_LIMIT
    return data.to_memory() if eager else data
