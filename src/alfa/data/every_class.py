"""Every class of a dataset as one set of classes: meta-training on all of them
(``data.train_classes: all``) instead of the training split.

Omniglot is read whole (every alphabet and character of the given roots); a class-per-folder
collection is its root, or the union of its ``train``/``val``/``test`` folders; the formats with
standard splits (miniImageNet, tieredImageNet, CUB) are the union of their three splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from alfa.data.dataset import ImageClassDataset, IndexLike
from alfa.data.folder import SPLIT_FOLDERS
from alfa.data.formats import load_dataset, split_paths
from alfa.errors import DataError

__all__ = ["MergedClasses", "load_every_class"]


class MergedClasses(ImageClassDataset):
    """The classes of several datasets side by side (``parts[0]``'s first, and so on)."""

    def __init__(self, parts: Sequence[ImageClassDataset]) -> None:
        if not parts:
            raise DataError("no classes to merge")
        shapes = {part.image_shape for part in parts}
        if len(shapes) > 1:
            raise DataError(f"cannot merge splits of different image shapes {sorted(shapes)}")
        self.parts = list(parts)
        self.index = [(p, c) for p, part in enumerate(parts) for c in range(part.num_classes)]
        self.class_names = [name for part in parts for name in part.class_names]
        seen: dict[str, str] = {}
        for part in parts:
            for name in part.class_names:
                if name in seen:
                    raise DataError(
                        f"class '{name}' is in both {seen[name]} and {part.source}; a class "
                        "may be in one split only to train on every class"
                    )
                seen[name] = part.source
        self.image_shape = parts[0].image_shape
        self.source = ", ".join(dict.fromkeys(part.source for part in parts))

    def images_per_class(self) -> list[int]:
        return [n for part in self.parts for n in part.images_per_class()]

    def get(self, class_index: int, image_indices: IndexLike) -> Tensor:
        part, local = self.index[self._check_class(class_index)]
        return self.parts[part].get(local, image_indices)


def load_every_class(root: str, fmt: str, *, image_size: int, **options: Any) -> ImageClassDataset:
    """Every class of the dataset at ``root`` (in format ``fmt``), whatever its splits.

    Args:
        options: loader options (e.g. Omniglot's ``rotations``).

    Raises:
        DataError: the dataset cannot be read, or a class name appears in two splits.
    """
    if fmt == "omniglot":
        return load_dataset(root, fmt, split="all", image_size=image_size, **options)
    if fmt == "folder":
        folder = split_paths(root)[0]
        splits: list[str | None] = [s for s in SPLIT_FOLDERS if (folder / s).is_dir()]
        splits = splits or [None]
    else:
        splits = ["train", "val", "test"]
    parts = [load_dataset(root, fmt, split=s, image_size=image_size, **options) for s in splits]
    return parts[0] if len(parts) == 1 else MergedClasses(parts)
