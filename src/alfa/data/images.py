"""Image decoding and preprocessing: mode conversion, square resize, centre crop, readers.

Every image, whatever its file format or PIL mode, goes through :meth:`ImageSpec.to_array`, so a
folder that mixes modes (``1``, ``L``, ``P``, ``RGBA``, ``CMYK``, 16-bit grey ...) comes out with
one consistent channel count. Readers turn one stored *item* (a file path, a zip member, an
encoded byte string, a row of a decoded array) into a PIL image; they are plain picklable
objects so that :class:`torch.utils.data.DataLoader` worker processes can use them.

A stored image (a file, a zip member) over :data:`alfa.limits.MAX_ITEM_BYTES` is refused before
it is read, and a zip member is decompressed in a stream within :data:`alfa.limits.MAX_RATIO`
times its compressed size (:func:`alfa.limits.read_member`). An encoded image larger than
:data:`MAX_IMAGE_PIXELS` is refused from its header, before it is decoded: a small file can
claim a huge size (a decompression bomb) and would otherwise take gigabytes of memory. PIL's
own bomb check ends in the same one-line :class:`~alfa.errors.DataError`: its
``DecompressionBombError`` (above twice ``PIL.Image.MAX_IMAGE_PIXELS``) always, its
``DecompressionBombWarning`` (above ``PIL.Image.MAX_IMAGE_PIXELS``, which by default is above
:data:`MAX_IMAGE_PIXELS`) where warnings of that category are errors, as the ``alfa`` command
makes them.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from alfa.errors import DataError
from alfa.limits import MAX_IMAGE_SIDE, MAX_ITEM_BYTES, read_bytes, read_member

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ArrayReader",
    "BytesReader",
    "FileReader",
    "ImageReader",
    "ImageSpec",
    "ImageTooLarge",
    "ZipMember",
    "decode_image",
]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

MAX_IMAGE_PIXELS = 2**26
"""The largest image (width x height, 67 million pixels, e.g. 8192 x 8192) that is decoded.

Few-shot data sets hold images of a few hundred pixels a side and a 60-megapixel photograph
still fits; a bigger header is refused before decoding (a decompression bomb: a file of a few
kilobytes that would expand to gigabytes)."""


@dataclass(frozen=True)
class ImageSpec:
    """How stored images become ``uint8 [C, size, size]`` arrays.

    Args:
        size: Side of the square output image in pixels.
        channels: 1 (grey, PIL mode ``L``) or 3 (``RGB``). Transparent images are composited on
            white first; 16-bit and float grey images are rescaled to 0..255.
        resample: PIL filter name: ``lanczos`` (Omniglot style), ``bilinear``, ``bicubic``,
            ``nearest``, ``box`` or ``hamming``.
        crop_scale: 1.0 resizes straight to ``size`` (aspect ratio not kept, as MAML/ALFA do);
            a value above 1 resizes to ``round(crop_scale * size)`` and centre-crops ``size``
            (the CloserLook evaluation transform uses 1.15).
        invert: Store ``255 - x`` (Omniglot: ink becomes bright, background 0).
    """

    size: int
    channels: int = 3
    resample: str = "bilinear"
    crop_scale: float = 1.0
    invert: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise DataError(f"image_size must be a positive integer, got {self.size!r}")
        if self.size > MAX_IMAGE_SIDE:
            raise DataError(f"image_size must be at most {MAX_IMAGE_SIDE}, got {self.size}")
        if self.channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.resample not in _RESAMPLE:
            raise DataError(
                f"unknown resample filter {self.resample!r}; use one of {', '.join(_RESAMPLE)}"
            )
        if not self.crop_scale >= 1.0:
            raise DataError(f"crop_scale must be >= 1.0, got {self.crop_scale!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(channels, size, size)``."""
        return (self.channels, self.size, self.size)

    def to_array(self, image: Image.Image) -> np.ndarray:
        """Convert, resize (and crop) one PIL image to a ``uint8 [C, size, size]`` array."""
        image = convert_mode(image, self.channels)
        filt = _RESAMPLE[self.resample]
        if self.crop_scale > 1.0:
            big = max(self.size, round(self.size * self.crop_scale))
            if image.size != (big, big):
                image = image.resize((big, big), filt)
            left = (big - self.size) // 2
            image = image.crop((left, left, left + self.size, left + self.size))
        elif image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), filt)
        arr = np.asarray(image, dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if self.invert:
            arr = 255 - arr
        return np.ascontiguousarray(arr)


def convert_mode(image: Image.Image, channels: int) -> Image.Image:
    """Return ``image`` in mode ``L`` (``channels == 1``) or ``RGB`` (``channels == 3``)."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        if mode == "F" and peak <= 1.0:
            arr = arr * 255.0
        elif peak > 255.0:
            arr = arr * (255.0 / 65535.0)
        image = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


class ImageReader(Protocol):
    """Turns one stored item into a decoded PIL image (original mode and size)."""

    def open(self, item: Any) -> Image.Image:
        """Decode ``item``; raise :class:`DataError` naming it when that fails."""
        ...

    def describe(self, item: Any) -> str:
        """A human-readable location of ``item`` for messages (a path, ``file.pkl[12]``)."""
        ...


class ImageTooLarge(DataError):
    """An image whose header claims more than :data:`MAX_IMAGE_PIXELS` (never decoded)."""


def _too_large(where: str, pixels: str) -> DataError:
    return ImageTooLarge(
        f"image {where} is too large to decode ({pixels} pixels, the limit is "
        f"{MAX_IMAGE_PIXELS:,}): a decompression bomb or a damaged header "
        "(replace or delete this file)"
    )


def decode_image(data: bytes | memoryview, where: str) -> Image.Image:
    """Decode one encoded image, refusing one whose header claims over MAX_IMAGE_PIXELS."""
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise _too_large(where, f"{width} x {height} = {width * height:,}")
        image.load()
    except _BOMBS as exc:  # PIL's own check, above its limit (its warning where made an error)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(where, f"{int(found.group(1)):,}" if found else "too many") from None
    except UnidentifiedImageError as exc:
        raise DataError(
            f"corrupt or unreadable image {where}: not a recognised image format "
            "(replace or delete this file)"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise DataError(
            f"corrupt or unreadable image {where}: {exc} (replace or delete this file)"
        ) from exc
    return image


@dataclass(frozen=True)
class ZipMember:
    """An image stored inside a zip archive (read without extracting)."""

    archive: str
    member: str

    def __str__(self) -> str:
        return f"{self.archive}!{self.member}"


_ZIP_CACHE: dict[tuple[int, str], zipfile.ZipFile] = {}


def open_zip(path: str) -> zipfile.ZipFile:
    """A per-process cached read handle on the zip at ``path``."""
    key = (os.getpid(), path)
    handle = _ZIP_CACHE.get(key)
    if handle is None:
        try:
            handle = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot open zip archive {path}: {exc} (re-download it)") from exc
        _ZIP_CACHE[key] = handle
    return handle


class FileReader:
    """Items are image file paths (``str``) or :class:`ZipMember` entries."""

    def open(self, item: str | ZipMember) -> Image.Image:
        if isinstance(item, ZipMember):
            data = read_member(open_zip(item.archive), item.member, f"zip member {item}")
            return decode_image(data, str(item))
        if not os.path.exists(item):
            raise DataError(f"image file not found: {item} (was it moved or deleted?)")
        data = read_bytes(item, cap=MAX_ITEM_BYTES, what="image file")
        return decode_image(data, str(item))

    def describe(self, item: str | ZipMember) -> str:
        return str(item)


class BytesReader:
    """Items are indices into a sequence of encoded images (PNG/JPEG bytes or 1-D uint8 arrays).

    Args:
        blobs: The encoded images; kept as they are, decoded on demand.
        source: Where they came from, for messages (e.g. the pickle's path).
    """

    def __init__(self, blobs: Sequence[Any], source: str) -> None:
        self.blobs = blobs
        self.source = source

    def open(self, item: int) -> Image.Image:
        blob = self.blobs[int(item)]
        if isinstance(blob, np.ndarray) and blob.dtype.kind in "uiSV":
            data = blob.tobytes()
        elif isinstance(blob, bytes | bytearray | memoryview):
            data = bytes(blob)
        else:  # bytes(n) of a number would allocate n bytes
            raise DataError(
                f"{self.describe(item)} is not an encoded image (bytes or a uint8 array) but "
                f"{type(blob).__name__}; the file is damaged (download it again)"
            )
        return decode_image(data, self.describe(item))

    def describe(self, item: int) -> str:
        return f"{self.source}[{int(item)}]"


class ArrayReader:
    """Items are row indices into a decoded ``uint8 [N, H, W, C]`` (or ``[N, H, W]``) array.

    Args:
        array: The images, possibly a read-only memory map.
        source: Where they came from, for messages.
        bgr: The channels are stored blue-green-red (OpenCV order) and are flipped to RGB.
    """

    def __init__(self, array: np.ndarray, source: str, *, bgr: bool = False) -> None:
        self.array = array
        self.source = source
        self.bgr = bgr

    def open(self, item: int) -> Image.Image:
        row = np.asarray(self.array[int(item)])
        if row.dtype != np.uint8:
            row = np.clip(row, 0, 255).astype(np.uint8)
        if row.ndim == 3 and row.shape[-1] == 1:
            row = row[..., 0]
        if self.bgr and row.ndim == 3:
            row = row[..., ::-1]
        return Image.fromarray(np.ascontiguousarray(row))

    def describe(self, item: int) -> str:
        return f"{self.source}[{int(item)}]"
