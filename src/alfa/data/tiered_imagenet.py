"""tieredImageNet (Ren et al. 2018): PNG-bytes pickles or decoded npz caches.

* ``tiered_imagenet_png``: ``{split}_images_png.pkl``, a pickled list with one encoded PNG per
  image (1-D ``uint8`` arrays written by OpenCV from BGR pixels, so the PNG itself holds the
  correct colours and PIL decodes it to RGB). Kept encoded in memory; decoded on demand.
* ``tiered_imagenet_npz``: ``{split}_images.npz`` with key ``images``, ``uint8 [N, 84, 84, 3]``
  in **BGR** order (decoded with OpenCV); flipped to RGB when read. Memory-mapped when the
  archive member is stored uncompressed.

Labels come from ``{split}_labels.pkl`` (a Python 2 pickle): ``label_specific`` (class index per
image) with class names ``label_specific_str``, or MetaOptNet's ``labels`` key (class names are
then the label values). ``split`` is ``train``, ``val`` or ``test``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alfa.data._containers import (
    array_dataset,
    decode_keys,
    group_rows,
    load_pickle,
    npz_array,
    text_list,
)
from alfa.data._files import dataset_folder, normalise_split, require_file
from alfa.data.dataset import ImageClassDataset, LazyImageDataset
from alfa.data.images import BytesReader, ImageSpec
from alfa.errors import DataError

__all__ = ["load_labels", "load_tiered_imagenet_npz", "load_tiered_imagenet_png"]

PathLike = str | os.PathLike[str]


def load_labels(file: Path) -> tuple[np.ndarray, list[str]]:
    """Per-image class indices ``0..C-1`` and the ``C`` class names from a labels pickle.

    Raises:
        DataError: Missing file, or neither ``label_specific`` nor ``labels`` present.
    """
    data = decode_keys(load_pickle(require_file(file, "tieredImageNet labels file")))
    if not isinstance(data, dict):
        raise DataError(
            f"{file} must hold a dict with label_specific or labels, found {type(data).__name__}"
        )
    if "label_specific" in data:
        labels = _whole_numbers(data["label_specific"], "label_specific", file)
        if "label_specific_str" in data:
            found = data["label_specific_str"]
            if not isinstance(found, list | tuple | np.ndarray) or not all(
                isinstance(v, str | bytes | np.str_ | np.bytes_) for v in found
            ):
                raise DataError(f"{file}: label_specific_str must be a list of class names")
            names = text_list(list(found))
            if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
                raise DataError(f"{file}: label_specific values lie outside 0..{len(names) - 1}")
            return labels, names
    elif "labels" in data:
        labels = _whole_numbers(data["labels"], "labels", file)
    else:
        raise DataError(
            f"{file} has neither label_specific nor labels (keys: "
            f"{sorted(map(str, data))}); is it a tieredImageNet labels pickle?"
        )
    values, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64).reshape(-1), [str(v) for v in values.tolist()]


def _whole_numbers(value: Any, key: str, file: Path) -> np.ndarray:
    """``value`` as a flat int64 array of labels, or a one-line error naming ``key``."""
    try:
        labels = np.asarray(value)
    except (ValueError, TypeError):  # ragged lists
        labels = np.asarray([], dtype=object)
    if labels.size == 0 and labels.dtype.kind != "O":
        return np.zeros(0, dtype=np.int64)
    if labels.dtype.kind not in "iu" or labels.ndim == 0:
        raise DataError(f"{file}: {key} must be a list of class indices (whole numbers)")
    return labels.astype(np.int64).reshape(-1)


def _drop_unused(labels: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    used = np.bincount(labels, minlength=len(names)) > 0
    if used.all():
        return labels, names
    remap = np.cumsum(used) - 1
    return remap[labels], [n for n, u in zip(names, used, strict=True) if u]


def load_tiered_imagenet_png(
    path: PathLike,
    *,
    split: str = "train",
    image_size: int = 84,
    resample: str = "bilinear",
    in_memory: bool | None = None,
) -> ImageClassDataset:
    """``<path>/{split}_images_png.pkl`` + ``{split}_labels.pkl``; PNGs decoded on demand.

    Raises:
        DataError: Missing or corrupt files, image and label counts that differ.
    """
    split = normalise_split(split)
    root = dataset_folder(path, "tieredImageNet folder")
    file = require_file(root / f"{split}_images_png.pkl", f"tieredImageNet {split} images")
    labels, names = load_labels(root / f"{split}_labels.pkl")
    blobs: Any = load_pickle(file)
    if isinstance(blobs, np.ndarray) and blobs.dtype == object:
        blobs = list(blobs)
    if not isinstance(blobs, Sequence) or isinstance(blobs, bytes | str):
        raise DataError(
            f"{file} must hold a list of encoded PNG images, found {type(blobs).__name__}"
        )
    if len(blobs) != labels.size:
        raise DataError(
            f"{file} holds {len(blobs)} images but {split}_labels.pkl has "
            f"{labels.size} labels; the two files do not belong together"
        )
    labels, names = _drop_unused(labels, names)
    spec = ImageSpec(size=image_size, channels=3, resample=resample)
    data = LazyImageDataset(
        names, group_rows(labels, len(names)), BytesReader(blobs, str(file)), spec, source=str(file)
    )
    return data.to_memory() if in_memory else data


def load_tiered_imagenet_npz(
    path: PathLike,
    *,
    split: str = "train",
    image_size: int = 84,
    resample: str = "bilinear",
    in_memory: bool | None = None,
) -> ImageClassDataset:
    """``<path>/{split}_images.npz`` (BGR ``images``) + ``{split}_labels.pkl``.

    Raises:
        DataError: Missing or corrupt files, image and label counts that differ.
    """
    split = normalise_split(split)
    root = dataset_folder(path, "tieredImageNet folder")
    file = require_file(root / f"{split}_images.npz", f"tieredImageNet {split} images")
    labels, names = load_labels(root / f"{split}_labels.pkl")
    images = npz_array(file, "images")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{file}: images must be uint8 [N, H, W, 3], got {tuple(images.shape)}")
    if images.shape[0] != labels.size:
        raise DataError(
            f"{file} holds {images.shape[0]} images but {split}_labels.pkl has "
            f"{labels.size} labels; the two files do not belong together"
        )
    labels, names = _drop_unused(labels, names)
    spec = ImageSpec(size=image_size, channels=3, resample=resample)
    return array_dataset(
        images, labels, names, spec, source=str(file), bgr=True, in_memory=in_memory
    )
