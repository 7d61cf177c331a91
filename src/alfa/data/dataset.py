"""Image classification datasets: class names plus, per class, the images.

Two storage kinds share one API (:class:`ImageClassDataset`):

* :class:`TensorImageDataset` keeps every image decoded and resized in one ``uint8 [M, C, H, W]``
  tensor with an ``int64 [M]`` class-index tensor (small data sets: Omniglot, array caches).
* :class:`LazyImageDataset` keeps one list of *items* per class (file paths, zip members, encoded
  bytes, array rows) and decodes them with an :class:`~alfa.data.images.ImageReader` on demand
  (large data sets). :meth:`LazyImageDataset.to_memory` turns it into the first kind.

``get(class_index, image_indices)`` always returns ``uint8 [k, C, H, W]``; turning that into
normalised floats is the episode sampler's job.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from alfa.data.images import ImageReader, ImageSpec
from alfa.errors import DataError

__all__ = ["ClassSubset", "ImageClassDataset", "LazyImageDataset", "TensorImageDataset"]

IndexLike = Sequence[int] | Tensor | np.ndarray


def _as_index(indices: IndexLike) -> Tensor:
    return torch.as_tensor(
        np.asarray(indices) if not isinstance(indices, Tensor) else indices, dtype=torch.long
    ).reshape(-1)


class ImageClassDataset(abc.ABC):
    """A labelled image collection grouped by class.

    Attributes:
        class_names: One name per class, in class-index order.
        image_shape: ``(C, H, W)`` of every image returned by :meth:`get`.
        source: Where the data came from (a path), used in error messages.
    """

    class_names: list[str]
    image_shape: tuple[int, int, int]
    source: str

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def channels(self) -> int:
        """Channels per image (1 for Omniglot, 3 otherwise)."""
        return self.image_shape[0]

    @property
    def image_size(self) -> int:
        """Side of the (square) images in pixels."""
        return self.image_shape[1]

    @property
    def num_images(self) -> int:
        """Total number of images over all classes."""
        return sum(self.images_per_class())

    @abc.abstractmethod
    def images_per_class(self) -> list[int]:
        """Number of images of each class, in class-index order."""

    @abc.abstractmethod
    def get(self, class_index: int, image_indices: IndexLike) -> Tensor:
        """Images ``image_indices`` (positions within the class) as ``uint8 [k, C, H, W]``."""

    def gather(self, class_indices: Sequence[int], image_indices: Sequence[IndexLike]) -> Tensor:
        """Concatenate ``get(c, i)`` over pairs; subclasses may do it in one indexing step."""
        parts = [self.get(int(c), idx) for c, idx in zip(class_indices, image_indices, strict=True)]
        return torch.cat(parts) if parts else torch.empty((0, *self.image_shape), dtype=torch.uint8)

    def select_classes(self, names: Sequence[str]) -> ImageClassDataset:
        """A view with only the classes ``names``, in that order.

        Raises:
            DataError: A name is not a class of this data set.
        """
        lookup = {name: i for i, name in enumerate(self.class_names)}
        missing = [n for n in names if n not in lookup]
        if missing:
            shown = ", ".join(repr(n) for n in missing[:5])
            raise DataError(
                f"{len(missing)} listed classes are not in {self.source or 'the data set'}: "
                f"{shown}{' ...' if len(missing) > 5 else ''} (check the class list file)"
            )
        return ClassSubset(self, [lookup[n] for n in names])

    def _check_class(self, class_index: int) -> int:
        if not 0 <= class_index < self.num_classes:
            raise IndexError(f"class index {class_index} out of range 0..{self.num_classes - 1}")
        return class_index

    def __repr__(self) -> str:
        counts = self.images_per_class()
        return (
            f"{type(self).__name__}(source={self.source!r}, classes={self.num_classes}, "
            f"images={sum(counts)}, image_shape={self.image_shape})"
        )


class TensorImageDataset(ImageClassDataset):
    """All images in memory: ``images`` ``uint8 [M, C, H, W]`` and ``labels`` ``int64 [M]``.

    A label of ``-1`` marks a row that belongs to no class (it is never returned).

    ``images`` may be a non-contiguous view (e.g. a permuted ``[M, H, W, C]`` array), which avoids
    copying a large decoded cache.

    Raises:
        DataError: Shapes or dtypes are wrong, a label is out of range or a class is empty.
    """

    def __init__(
        self, class_names: Sequence[str], images: Tensor, labels: Tensor, *, source: str = ""
    ) -> None:
        self.class_names = [str(n) for n in class_names]
        self.source = source
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(
                f"images of {source} must be uint8 [M, C, H, W], got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() != images.shape[0]:
            raise DataError(f"{source}: {images.shape[0]} images but {labels.numel()} labels")
        if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= self.num_classes):
            raise DataError(f"{source}: labels must lie in 0..{self.num_classes - 1} (or -1)")
        self.images = images
        self.labels = labels
        self.image_shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
        counts = torch.bincount(labels + 1, minlength=self.num_classes + 1)
        empty = [self.class_names[i] for i in torch.nonzero(counts[1:] == 0).flatten().tolist()]
        if empty:
            raise DataError(
                f"class {empty[0]!r} of {source} has no images "
                f"({len(empty)} empty classes; remove them or add images)"
            )
        order = torch.argsort(labels, stable=True)
        self._rows = list(torch.split(order, counts.tolist()))[1:]
        self._counts = counts[1:].tolist()

    def images_per_class(self) -> list[int]:
        return list(self._counts)

    def rows(self, class_index: int) -> Tensor:
        """Row indices into :attr:`images` of the class's images."""
        return self._rows[self._check_class(class_index)]

    def get(self, class_index: int, image_indices: IndexLike) -> Tensor:
        return self.images.index_select(0, self.rows(class_index)[_as_index(image_indices)])

    def gather(self, class_indices: Sequence[int], image_indices: Sequence[IndexLike]) -> Tensor:
        pieces = [
            self.rows(int(c))[_as_index(i)]
            for c, i in zip(class_indices, image_indices, strict=True)
        ]
        if not pieces:
            return torch.empty((0, *self.image_shape), dtype=torch.uint8)
        return self.images.index_select(0, torch.cat(pieces))


class LazyImageDataset(ImageClassDataset):
    """Per class a list of stored items, decoded with ``reader`` and ``spec`` when requested.

    Args:
        class_names: One name per class.
        items: Per class, the stored items (paths, zip members, indices ...).
        reader: Decodes one item into a PIL image.
        spec: Conversion to ``uint8 [C, size, size]``.
        source: Where the data came from, for messages.

    Raises:
        DataError: The numbers of names and item lists differ or a class has no items.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        items: Sequence[Sequence[Any]],
        reader: ImageReader,
        spec: ImageSpec,
        *,
        source: str = "",
    ) -> None:
        self.class_names = [str(n) for n in class_names]
        self.source = source
        if len(items) != len(self.class_names):
            raise DataError(
                f"{source}: {len(self.class_names)} class names but {len(items)} item lists"
            )
        for name, its in zip(self.class_names, items, strict=True):
            if len(its) == 0:
                raise DataError(
                    f"class {name!r} of {source} has no images (add images or remove the class)"
                )
        self.items = [list(its) if not isinstance(its, np.ndarray) else its for its in items]
        self.reader = reader
        self.spec = spec
        self.image_shape = spec.shape

    def images_per_class(self) -> list[int]:
        return [len(its) for its in self.items]

    def item(self, class_index: int, image_index: int) -> Any:
        """The stored item behind one image."""
        return self.items[self._check_class(class_index)][int(image_index)]

    def open_raw(self, class_index: int, image_index: int) -> Image.Image:
        """The decoded image before mode conversion and resizing."""
        return self.reader.open(self.item(class_index, image_index))

    def describe(self, class_index: int, image_index: int) -> str:
        """Where one image is stored (for messages)."""
        return self.reader.describe(self.item(class_index, image_index))

    def iter_items(self) -> Iterator[tuple[int, int]]:
        """All ``(class_index, image_index)`` pairs in class order."""
        for c, its in enumerate(self.items):
            for i in range(len(its)):
                yield c, i

    def _decode(self, class_index: int, image_index: int) -> np.ndarray:
        return self.spec.to_array(self.open_raw(class_index, image_index))

    def get(self, class_index: int, image_indices: IndexLike) -> Tensor:
        idx = _as_index(image_indices).tolist()
        arrays = [self._decode(class_index, i) for i in idx]
        if not arrays:
            return torch.empty((0, *self.image_shape), dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays))

    def to_memory(self, num_threads: int | None = None) -> TensorImageDataset:
        """Decode every image into a :class:`TensorImageDataset` (uses a thread pool)."""
        pairs = list(self.iter_items())
        out = np.empty((len(pairs), *self.image_shape), dtype=np.uint8)

        def work(k: int) -> None:
            out[k] = self._decode(*pairs[k])

        threads = num_threads or min(8, os.cpu_count() or 1)
        if threads <= 1 or len(pairs) < 64:
            for k in range(len(pairs)):
                work(k)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(len(pairs)), chunksize=64))
        labels = torch.tensor([c for c, _ in pairs], dtype=torch.long)
        return TensorImageDataset(
            self.class_names, torch.from_numpy(out), labels, source=self.source
        )


class ClassSubset(ImageClassDataset):
    """A view on some classes of another data set (``base``), in the given order."""

    def __init__(self, base: ImageClassDataset, class_indices: Sequence[int]) -> None:
        self.base = base
        self.class_indices = [base._check_class(int(c)) for c in class_indices]
        self.class_names = [base.class_names[c] for c in self.class_indices]
        self.image_shape = base.image_shape
        self.source = base.source

    def images_per_class(self) -> list[int]:
        counts = self.base.images_per_class()
        return [counts[c] for c in self.class_indices]

    def get(self, class_index: int, image_indices: IndexLike) -> Tensor:
        return self.base.get(self.class_indices[self._check_class(class_index)], image_indices)

    def gather(self, class_indices: Sequence[int], image_indices: Sequence[IndexLike]) -> Tensor:
        mapped = [self.class_indices[self._check_class(int(c))] for c in class_indices]
        return self.base.gather(mapped, image_indices)
