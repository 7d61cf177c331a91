"""Builders of crafted files: zip archives written byte by byte (bombs, damaged or encrypted
members, unknown compression methods), ``.npy`` headers that lie, pickles that ask for
terabytes, TFRecord frames with huge lengths, sparse files of 64 GiB that take no disk."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from alfa.data.tfrecord import masked_crc32c

MiB = 2**20
GiB = 2**30


def png(seed: int = 0, side: int = 8) -> bytes:
    """A small valid grey PNG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def zeros_deflated(mebibytes: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mebibytes`` MiB of zeros (about a thousandth of that in size)
    and its CRC-32, built from one compressed block repeated: nothing that size is allocated."""
    block = b"\0" * MiB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = first + again * (mebibytes - 1) + compressor.flush()
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(block, crc)
    return stream, crc


def raw_zip(path: Path, members: list[dict[str, Any]]) -> Path:
    """Write a zip whose members are given as stored bytes: ``name``, ``data`` (the bytes as
    they sit in the archive), ``method`` (0 stored, 8 deflate, anything else), ``crc``,
    ``size`` (the uncompressed size declared) and ``flags`` (bit 0: encrypted)."""
    body, central = bytearray(), bytearray()
    for m in members:
        name = m["name"].encode()
        data = m["data"]
        method = m.get("method", 0)
        crc = m.get("crc", zlib.crc32(data))
        size = m.get("size", len(data))
        flags = m.get("flags", 0)
        offset = len(body)
        fields = (20, flags, method, 0, 0, crc, len(data), size, len(name))
        body += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", *fields, 0) + name + data
        central += (
            struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, offset)
            + name
        )
    end = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0
    )
    path.write_bytes(bytes(body + central + end))
    return path


def npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    """A version 1.0 ``.npy`` header claiming ``shape`` of ``descr``."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    pad = (-(10 + len(text) + 1)) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def npz(path: Path, member: bytes, *, compressed: bool) -> Path:
    """An ``.npz`` holding ``images.npy`` = ``member`` (stored, or deflated)."""
    if compressed:
        data = deflated(member)
        return raw_zip(
            path,
            [
                dict(
                    name="images.npy", data=data, method=8, crc=zlib.crc32(member), size=len(member)
                )
            ],
        )
    return raw_zip(path, [dict(name="images.npy", data=member)])


class Reduce:
    """Pickles as ``function(*args)`` (and ``BUILD`` with ``state``); nothing is called here."""

    def __init__(self, function: Any, args: tuple, state: Any = None) -> None:
        self.value = (function, args) if state is None else (function, args, state)

    def __reduce__(self) -> Any:
        return self.value


def crafted_pickle(path: Path, payload: Any) -> Path:
    path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def tfrecord_frame(length: int, data: bytes = b"abc") -> bytes:
    """A TFRecord frame header claiming ``length`` with a valid length checksum."""
    head = struct.pack("<Q", length)
    return head + struct.pack("<I", masked_crc32c(head)) + data


def metadataset_source(folder: Path, record_file: bytes) -> Path:
    """A one-class Meta-Dataset source whose only record file is ``record_file``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "crafted",
        "classes_per_split": {"TRAIN": 1, "VALID": 0, "TEST": 0},
        "class_names": {"0": "a"},
        "images_per_class": {"0": 1},
        "file_pattern": "{}.tfrecords",
        "__class__": "DatasetSpecification",
    }
    (folder / "dataset_spec.json").write_text(json.dumps(spec))
    (folder / "0.tfrecords").write_bytes(record_file)
    return folder


def sparse(path: Path, size: int = 64 * GiB) -> Path:
    """A file of ``size`` bytes that takes no disk (a hole)."""
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def folder_dataset(root: Path, classes: int = 2, images: int = 3) -> Path:
    """``root/<class>/<n>.png`` with small valid PNGs."""
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(images):
            (root / f"c{c}" / f"{i}.png").write_bytes(png(c * 100 + i))
    return root


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims ``width x height`` pixels (a few dozen bytes)."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR checksum
    return bytes(data)


OMNIGLOT_ALPHABETS = (
    "Balinese",
    "Greek",
    "Japanese_(katakana)",
    "Korean",
    "Latin",
    "Sanskrit",
    "Early_Aramaic",
    "Tagalog",
)
"""The alphabets ``alfa data convert omniglot`` needs (its training and test split)."""


def omniglot_members(alphabets: tuple[str, ...] = OMNIGLOT_ALPHABETS) -> list[dict[str, Any]]:
    """Two characters of two drawings per alphabet, as ``raw_zip`` members (stored PNGs)."""
    return [
        dict(name=f"images_background/{a}/character0{c}/{i}{c}{n}_0{n}.png", data=png(i * 7 + n))
        for i, a in enumerate(alphabets)
        for c in (1, 2)
        for n in (1, 2)
    ]


def deflated(data: bytes) -> bytes:
    """``data`` as a raw deflate stream."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()
