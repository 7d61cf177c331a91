"""Helpers for the array caches of published few-shot code: pickles (Python 2 or 3) and npz.

Pickles are read by :func:`alfa.data.pickle_cache.load_pickle` (a restricted, bounded
unpickler) and npz arrays by :func:`alfa.data.npz.npz_array` (sizes checked before anything is
allocated); both are re-exported here. The helpers below turn what they hold into datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from alfa.data.dataset import ImageClassDataset, LazyImageDataset, TensorImageDataset
from alfa.data.images import ArrayReader, ImageSpec
from alfa.data.npz import npz_array
from alfa.data.pickle_cache import load_pickle
from alfa.errors import DataError

__all__ = ["array_dataset", "decode_keys", "group_rows", "load_pickle", "npz_array"]


def decode_keys(obj: Any) -> Any:
    """Turn ``bytes`` keys (and bytes/``np.bytes_`` strings in lists) of a dict into ``str``."""
    if isinstance(obj, dict):
        return {_text(k): v for k, v in obj.items()}
    return obj


def _text(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("latin1")
    return value


def text_list(values: Sequence[Any]) -> list[str]:
    """Class names as ``str`` whatever the pickle encoding produced."""
    return [str(_text(v)) for v in values]


def group_rows(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Row indices of each class ``0..num_classes-1`` (rows labelled ``-1`` are skipped)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels + 1, minlength=num_classes + 1)
    return np.split(order, np.cumsum(counts)[:-1])[1:]


def array_dataset(
    array: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    spec: ImageSpec,
    *,
    source: str,
    bgr: bool = False,
    in_memory: bool | None = None,
) -> ImageClassDataset:
    """A dataset over a decoded ``uint8 [N, H, W, C]`` array with per-row class ``labels``.

    When the stored images already have the requested size and channel order the array itself
    becomes the image tensor (a permuted view, no copy). Otherwise rows are converted on demand
    (``in_memory`` False or None) or all at once (``in_memory=True``).
    """
    if array.ndim not in (3, 4) or array.shape[0] != len(labels):
        raise DataError(
            f"{source}: expected images [N, H, W, C] matching {len(labels)} labels, "
            f"got shape {tuple(array.shape)}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < -1 or labels.max() >= len(class_names)):
        raise DataError(f"{source}: labels outside 0..{len(class_names) - 1}")
    height, width = array.shape[1], array.shape[2]
    chans = array.shape[3] if array.ndim == 4 else 1
    direct = (
        height == width == spec.size
        and chans == spec.channels
        and not bgr
        and not spec.invert
        and array.dtype == np.uint8
        and not isinstance(array, np.memmap)
        and array.flags.writeable
    )
    if direct and in_memory is not False:
        view = torch.from_numpy(array if array.ndim == 4 else array[..., None]).permute(0, 3, 1, 2)
        return TensorImageDataset(class_names, view, torch.from_numpy(labels), source=source)
    lazy = LazyImageDataset(
        class_names,
        group_rows(labels, len(class_names)),
        ArrayReader(array, source, bgr=bgr),
        spec,
        source=source,
    )
    return lazy.to_memory() if in_memory else lazy
