"""One array of an ``.npz`` archive, read without trusting the sizes the archive states.

An ``.npz`` is a zip of ``.npy`` files, each a small header (shape, dtype, order) followed by
the array's bytes. The header can claim any shape: before anything is allocated, the bytes it
implies are checked against the member's size in the zip and, for a stored member, against the
file's real size; a compressed member must also pass :func:`alfa.limits.open_member` (its
expansion ratio) and fit :func:`alfa.limits.available_memory`. A stored member is
memory-mapped; a compressed one is decompressed in a stream into an array of the checked size.
"""

from __future__ import annotations

import lzma
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from alfa.errors import DataError
from alfa.limits import check_allocation, format_bytes, open_member

__all__ = ["npz_array"]

_STREAM_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)


def _header(fh: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of the ``.npy`` header at ``fh``'s position."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, EOFError, OSError, SyntaxError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{where} is not a valid .npy array ({first})") from None
    if dtype.hasobject:
        raise DataError(f"{where} holds Python objects, not an image array; refused")
    return shape, fortran, dtype


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    count = 1
    for n in shape:
        count *= int(n)
    return count * dtype.itemsize


def _check(where: str, shape: tuple[int, ...], dtype: np.dtype, claimed: int, held: int) -> None:
    if claimed != held:
        raise DataError(
            f"{where}: its header claims an array {tuple(shape)} of {dtype} "
            f"({format_bytes(claimed)}) but {format_bytes(held)} of data follow; the file is "
            "truncated or damaged (download it again)"
        )


def _stored(path: Path, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """A memory map of a stored (uncompressed) member, its size checked against the file."""
    with open(path, "rb") as fh:
        real = os.fstat(fh.fileno()).st_size
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise DataError(f"{where}: damaged zip entry (download it again)")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        shape, fortran, dtype = _header(fh, where)
        offset = fh.tell()
    claimed = _nbytes(shape, dtype)
    _check(where, shape, dtype, claimed, info.file_size - (offset - start))
    if offset + claimed > real:
        raise DataError(
            f"{where}: the array needs {format_bytes(offset + claimed)} of the file, which holds "
            f"{format_bytes(real)}; the file is truncated (download it again)"
        )
    if claimed == 0:
        return np.empty(shape, dtype=dtype)
    return np.memmap(
        path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C"
    )


def _compressed(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """A compressed member decompressed in a stream, after its header's size is checked."""
    _, stream = open_member(archive, info, where, error=DataError)
    try:
        with stream:
            shape, fortran, dtype = _header(stream, where)
            claimed = _nbytes(shape, dtype)
            _check(where, shape, dtype, claimed, info.file_size - stream.tell())
            check_allocation(claimed, where)
            out = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
            view = memoryview(out.reshape(-1, order="A").view(np.uint8))
            done = 0
            while done < claimed:
                n = stream.readinto(view[done : done + 2**24])
                if not n:
                    break
                done += n
    except _STREAM_ERRORS as exc:
        raise DataError(f"{where} cannot be read: {exc} (download it again)") from None
    if done != claimed:
        raise DataError(f"{where} is truncated (download it again)")
    return out


def npz_array(path: Path, key: str) -> np.ndarray:
    """Array ``key`` of an ``.npz``: memory-mapped when stored uncompressed, else read fully.

    Raises:
        DataError: The file is missing, not an npz archive, has no array ``key``, or states a
            size that its bytes do not hold or that memory cannot.
    """
    where = f"{path}[{key!r}]"
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(f"{key}.npy")
            except KeyError:
                names = [n.removesuffix(".npy") for n in zf.namelist()]
                raise DataError(
                    f"{path} has no array {key!r} (it has {names}); is this the right file?"
                ) from None
            if info.compress_type == zipfile.ZIP_STORED:
                return _stored(Path(path), info, where)
            return _compressed(zf, info, where)
    except FileNotFoundError as exc:
        raise DataError(f"file not found: {path} (check the dataset path)") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot read npz archive {path}: {exc} (download it again)") from exc
