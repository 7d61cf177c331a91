"""A Meta-Dataset source on disk: one TFRecord file per class plus ``dataset_spec.json``.

Layout (Meta-Dataset's converted records, ``$RECORDS/<source>/``)::

    dataset_spec.json        classes, splits, images per class (alfa.data.metadataset_spec)
    0.tfrecords              every image of class 0: tf.train.Example{image: bytes, label: int64}
    1.tfrecords
    ...

Images are decoded as Meta-Dataset's decoder (``meta_dataset/data/decoder.py``, ``ImageDecoder``)
does: the encoded image to ``uint8`` RGB, a bilinear resize to ``image_size`` x ``image_size`` in
``float32`` with ``align_corners=True`` (TensorFlow 1's ``tf.image.resize_images``: no
antialiasing, no rounding), then ``2 * (x / 255 - 0.5)`` to ``[-1, 1]``
(:func:`resize_and_scale`). The JPEG decoder differs: PIL's libjpeg uses its accurate integer
inverse DCT, TensorFlow's ``decode_jpeg`` by default the fast one, so a decoded JPEG pixel may
differ slightly (a PNG decodes the same). A source is read lazily, one class file at a time, and
each decoded class is cached as ``float32 [n, C, image_size, image_size]`` (4 bytes a value:
9,408 bytes an image at 28 x 28 RGB).

Every problem names the file: a missing class file, a record file that is truncated or not a
TFRecord, an Example without ``image``/``label``, a label that is not the file's class, a record
count that disagrees with ``images_per_class``, an image that does not decode or whose header
claims more than :data:`alfa.data.images.MAX_IMAGE_PIXELS` (refused before decoding, as for
every other format).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from alfa.data.example_proto import ExampleError, decode_example
from alfa.data.images import ImageTooLarge, decode_image
from alfa.data.metadataset_spec import SPEC_FILE, SPLITS, DatasetSpec, load_spec
from alfa.data.tfrecord import iter_records
from alfa.errors import DataError

__all__ = [
    "MetaDatasetSource",
    "check_source",
    "find_sources",
    "is_metadataset_root",
    "resize_and_scale",
]


def resize_and_scale(images: Tensor, size: int) -> Tensor:
    """Decoded images as Meta-Dataset's ``ImageDecoder`` returns them.

    A bilinear resize to ``size`` x ``size`` with ``align_corners=True`` in ``float32`` (output
    pixel ``i`` samples the input at ``i * (in - 1) / (size - 1)``, the corner pixels' centres
    aligned; no antialiasing, no rounding), as TensorFlow 1's ``tf.image.resize_images(...,
    method=BILINEAR, align_corners=True)``; an image already ``size`` x ``size`` is unchanged.
    Then ``2 * (x / 255 - 0.5)``, in that order, to ``[-1, 1]``.

    Args:
        images: ``uint8 [n, C, H, W]`` (any ``H``, ``W``).
        size: Side of the output.

    Returns:
        ``float32 [n, C, size, size]`` in ``[-1, 1]``.
    """
    x = images.to(torch.float32)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=True, antialias=False
        )
    return 2 * (x / 255.0 - 0.5)


def is_metadataset_root(path: str | os.PathLike[str]) -> bool:
    """True for a source folder (with ``dataset_spec.json``) or a folder of sources."""
    p = Path(path)
    if not p.is_dir():
        return False
    return (p / SPEC_FILE).is_file() or any((c / SPEC_FILE).is_file() for c in _subdirs(p))


def _subdirs(p: Path) -> list[Path]:
    try:
        return sorted(c for c in p.iterdir() if c.is_dir())
    except OSError:
        return []


def find_sources(path: str | os.PathLike[str]) -> list[Path]:
    """The source folders under a Meta-Dataset root (the root itself when it is one)."""
    p = Path(path)
    if (p / SPEC_FILE).is_file():
        return [p]
    return [c for c in _subdirs(p) if (c / SPEC_FILE).is_file()]


class MetaDatasetSource:
    """Read the classes of one Meta-Dataset source.

    Args:
        root: The source folder (holding ``dataset_spec.json`` and the class files).
        image_size: Side of the decoded images.
        channels: 3 (Meta-Dataset's decoder) or 1 (grey).
    """

    def __init__(self, root: str | os.PathLike[str], image_size: int = 84, channels: int = 3):
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {channels}")
        self.root = Path(root)
        self.spec: DatasetSpec = load_spec(self.root)
        self.image_size = image_size
        self.channels = channels
        self._cache: dict[int, Tensor] = {}

    def record_file(self, class_id: int) -> Path:
        return self.spec.record_file(self.root, class_id)

    def _decode(self, data: bytes, file: Path, index: int) -> np.ndarray:
        """One record's image, ``uint8 [C, H, W]`` at its own size."""
        try:
            with decode_image(data, f"{file} (record {index})") as image:  # pixel limit first
                image = image.convert("RGB" if self.channels == 3 else "L")
                array = np.asarray(image, dtype=np.uint8)
        except ImageTooLarge:
            raise
        except (DataError, OSError, SyntaxError, ValueError, EOFError) as exc:
            cause = exc.__cause__ if isinstance(exc, DataError) and exc.__cause__ else exc
            raise DataError(
                f"{file}: the image of record {index} does not decode ({cause})"
            ) from exc
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def read_class(self, class_id: int, *, decode: bool = True) -> list[bytes] | Tensor:
        """The images of one class: ``float32 [n, C, S, S]`` in ``[-1, 1]`` with ``S`` the
        ``image_size`` (:func:`resize_and_scale`), or the encoded bytes.

        Raises:
            DataError: Any problem of the class file, naming it.
        """
        if decode and class_id in self._cache:
            return self._cache[class_id]
        file = self.record_file(class_id)
        if not file.is_file():
            raise DataError(f"{file}: record file of class {class_id} is missing")
        encoded: list[bytes] = []
        for index, record in enumerate(iter_records(file)):
            try:
                example = decode_example(record)
            except ExampleError as exc:
                raise DataError(
                    f"{file}: record {index} is not a tf.train.Example ({exc})"
                ) from exc
            image, label = example.get("image"), example.get("label")
            if not image or not isinstance(image[0], bytes):
                raise DataError(f"{file}: record {index} has no 'image' bytes feature")
            if not label or not isinstance(label[0], int):
                raise DataError(f"{file}: record {index} has no int64 'label' feature")
            if label[0] != class_id:
                raise DataError(
                    f"{file}: record {index} has label {label[0]}, the file is class {class_id}"
                )
            encoded.append(image[0])
        expected = self.spec.images_per_class[class_id]
        if len(encoded) != expected:
            raise DataError(
                f"{file}: holds {len(encoded)} records, {SPEC_FILE} says {expected} images"
            )
        if not decode:
            return encoded
        decoded = [self._decode(b, file, i) for i, b in enumerate(encoded)]
        size = self.image_size
        images = torch.empty((len(decoded), self.channels, size, size), dtype=torch.float32)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, array in enumerate(decoded):
            by_shape.setdefault(array.shape, []).append(i)
        for indices in by_shape.values():  # one resize per image size
            group = torch.from_numpy(np.stack([decoded[i] for i in indices]))
            images[indices] = resize_and_scale(group, size)
        self._cache[class_id] = images
        return images

    def images(self, class_id: int) -> Tensor:
        """Decoded ``float32 [n, C, S, S]`` images of a class in ``[-1, 1]`` (cached)."""
        out = self.read_class(class_id)
        assert isinstance(out, Tensor)
        return out


def check_source(
    path: str | os.PathLike[str], min_ways: int = 5
) -> tuple[list[tuple[str, list[int]]], list[str], int]:
    """Scan a source (every record, every image).

    Returns:
        ``(splits, problems, images)``: per split ``("<source>/<SPLIT>", images per class)``,
        one line per problem, and the number of images decoded.
    """
    splits: list[tuple[str, list[int]]] = []
    problems: list[str] = []
    try:
        source = MetaDatasetSource(path, image_size=8)
    except DataError as exc:
        return splits, [str(exc)], 0
    spec = source.spec
    for split in SPLITS:
        ids = spec.splits[split]
        if ids:
            splits.append((f"{spec.name}/{split}", [spec.images_per_class[c] for c in ids]))
        if 0 < len(ids) < min_ways:
            problems.append(
                f"{source.root / SPEC_FILE}: split {split} has {len(ids)} classes, an episode "
                f"needs at least {min_ways}"
            )
    opened = 0
    for class_id in range(spec.num_classes):
        try:
            opened += len(source.images(class_id))
        except DataError as exc:
            problems.append(str(exc))
        source._cache.clear()
    return splits, problems, opened
