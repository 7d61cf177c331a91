"""TFRecord files read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length            (little endian)
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

CRC-32C is the Castagnoli polynomial (reflected ``0x82F63B78``); the stored value is "masked":
``((crc >> 15) | (crc << 17)) + 0xA282EAD8`` modulo 2**32. Meta-Dataset stores one such file per
class (:mod:`alfa.data.metadataset`), each record a serialised ``tf.train.Example``
(:mod:`alfa.data.example_proto`).

Every problem (a file that ends inside a record, a length or data checksum that does not match,
a length larger than what is left of the file or than :data:`alfa.limits.MAX_ITEM_BYTES`) is a
:class:`~alfa.errors.DataError` naming the file and the byte offset of the record; a record's
length is checked before anything is read for it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from alfa.errors import DataError
from alfa.limits import MAX_ITEM_BYTES, format_bytes

__all__ = ["crc32c", "iter_records", "masked_crc32c", "read_records", "write_records"]

_POLY = 0x82F63B78
_MASK_DELTA = 0xA282EAD8


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``; ``crc32c(b"123456789") == 0xE3069283``."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C stored in a TFRecord frame."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def write_records(path: str | os.PathLike[str], records: Iterable[bytes]) -> int:
    """Write ``records`` to a new TFRecord file; returns how many were written."""
    count = 0
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length)
            f.write(struct.pack("<I", masked_crc32c(length)))
            f.write(data)
            f.write(struct.pack("<I", masked_crc32c(data)))
            count += 1
    return count


def iter_records(path: str | os.PathLike[str], *, verify: bool = True) -> Iterator[bytes]:
    """The records of a TFRecord file, in order.

    Args:
        path: The file.
        verify: Check the CRC of every record's data too (the length CRC is always checked:
            it is what tells a TFRecord file from any other file).

    Raises:
        DataError: The file cannot be read, ends inside a record, or a checksum fails.
    """
    name = Path(path)
    try:
        f = open(name, "rb")  # noqa: SIM115 - closed below, the generator may stop early
    except OSError as exc:
        raise DataError(f"cannot read record file {name}: {exc.strerror or exc}") from exc
    with f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise DataError(f"record file {name} is truncated at byte {offset} (in a header)")
            length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
            if masked_crc32c(length_bytes) != length_crc:
                raise DataError(
                    f"record file {name} is corrupt or not a TFRecord file: bad length "
                    f"checksum of the record at byte {offset}"
                )
            (length,) = struct.unpack("<Q", length_bytes)
            left = size - offset - 12
            if length + 4 > left:
                raise DataError(
                    f"record file {name} is truncated: the record at byte {offset} needs "
                    f"{length + 4} bytes, {max(left, 0)} remain"
                )
            if length > MAX_ITEM_BYTES:
                raise DataError(
                    f"record file {name}: the record at byte {offset} is {format_bytes(length)}, "
                    f"more than the {format_bytes(MAX_ITEM_BYTES)} alfa reads for one record"
                )
            body = f.read(length + 4)
            if len(body) < length + 4:  # the file shrank while it was read
                raise DataError(f"record file {name} is truncated at byte {offset + 12}")
            data = body[:length]
            if verify and masked_crc32c(data) != struct.unpack("<I", body[length:])[0]:
                raise DataError(
                    f"record file {name} is corrupt: bad data checksum of the record at "
                    f"byte {offset}"
                )
            yield data
            offset += 12 + length + 4


def read_records(path: str | os.PathLike[str], *, verify: bool = True) -> list[bytes]:
    """Every record of a TFRecord file (see :func:`iter_records`)."""
    return list(iter_records(path, verify=verify))
