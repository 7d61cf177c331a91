"""A user's ``torch.utils.data.Dataset`` of ``(image, label)`` pairs as an image class dataset.

The pairs are read once, in index order, and kept in memory as one ``uint8 [M, C, H, W]``
tensor (:class:`~alfa.data.dataset.TensorImageDataset`), the storage the episode sampler draws
from. An image may be a PIL image, or a tensor or NumPy array ``[H, W]`` or ``[C, H, W]`` with
``C`` 1 or 3, either ``uint8`` or floating point in ``[0, 1]`` (what
``torchvision.transforms.ToTensor`` gives). Every image must have the same shape (resize them in
the dataset's transform). A label may be an int, a 0-d tensor or a string; the classes are the
distinct labels in sorted order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from alfa.data.dataset import TensorImageDataset
from alfa.errors import DataError

__all__ = ["from_torch_dataset"]


def _image(value: Any, index: int) -> Tensor:
    """One image as ``uint8 [C, H, W]``."""
    if isinstance(value, Image.Image):
        picture = value if value.mode in ("L", "RGB") else value.convert("RGB")
        array = np.asarray(picture)
        tensor = torch.from_numpy(array.copy())
        return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor):
        raise DataError(
            f"item {index} of the dataset has an image of type {type(value).__name__}; expected "
            "a PIL image, a tensor or a NumPy array"
        )
    if value.dim() == 2:
        value = value.unsqueeze(0)
    if value.dim() != 3 or value.shape[0] not in (1, 3):
        raise DataError(
            f"item {index} of the dataset has an image of shape {tuple(value.shape)}; expected "
            "[H, W] or [C, H, W] with C = 1 or 3"
        )
    if value.dtype == torch.uint8:
        return value
    if not value.is_floating_point():
        raise DataError(
            f"item {index} of the dataset has an image of dtype {value.dtype}; expected uint8 "
            "or floating point in [0, 1]"
        )
    if value.numel() and (float(value.min()) < 0.0 or float(value.max()) > 1.0):
        raise DataError(
            f"item {index} of the dataset has a floating-point image outside [0, 1] (values "
            f"{float(value.min()):.3g}..{float(value.max()):.3g}); give unnormalised images, "
            "alfa normalises them itself"
        )
    return value.mul(255.0).round_().to(torch.uint8)


def _label(value: Any, index: int) -> int | str:
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return value
    raise DataError(
        f"item {index} of the dataset has a label of type {type(value).__name__}; expected an "
        "int or a string"
    )


def from_torch_dataset(dataset: Sequence[Any], *, source: str = "") -> TensorImageDataset:
    """Read every ``(image, label)`` pair of ``dataset`` into memory, grouped by class.

    Args:
        dataset: anything with ``len`` and integer indexing that yields ``(image, label)``
            (a ``torch.utils.data.Dataset``, a list).
        source: a name for messages (default: the dataset's class name).

    Raises:
        DataError: an item that is not a pair, an image or label of an unsupported kind, or
            images of different shapes, naming the item.
    """
    source = source or type(dataset).__name__
    images: list[Tensor] = []
    labels: list[int | str] = []
    for index in range(len(dataset)):
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(
                f"item {index} of {source} is a {type(item).__name__}; expected an "
                "(image, label) pair"
            )
        image = _image(item[0], index)
        if images and image.shape != images[0].shape:
            raise DataError(
                f"item {index} of {source} has an image of shape {tuple(image.shape)}, item 0 "
                f"{tuple(images[0].shape)}; every image needs the same shape (resize them in "
                "the dataset's transform)"
            )
        images.append(image)
        labels.append(_label(item[1], index))
    if not images:
        raise DataError(f"{source} is empty")
    kinds = {type(label) for label in labels}
    if len(kinds) > 1:
        raise DataError(f"{source} mixes int and string labels; use one kind")
    classes = sorted(set(labels))  # type: ignore[type-var]
    lookup = {label: i for i, label in enumerate(classes)}
    targets = torch.tensor([lookup[label] for label in labels], dtype=torch.long)
    names = [str(c) for c in classes]
    return TensorImageDataset(names, torch.stack(images), targets, source=source)
