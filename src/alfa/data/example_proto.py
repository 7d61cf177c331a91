"""``tf.train.Example`` protocol buffers encoded and decoded by hand (no protobuf dependency).

The messages (``tensorflow/core/example/{example,feature}.proto``)::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }
              # a map entry is {string key = 1; Feature value = 2;}
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Wire format: each field is a varint key ``(field_number << 3) | wire_type``; wire type 0 is a
varint, 2 a length-delimited byte string, 5 a little-endian 32-bit value (and 1 a 64-bit one).
Repeated numbers may come packed (one length-delimited field) or one per field; both are read.
An int64 is a varint of its 64-bit two's complement (ten bytes for a negative number).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

__all__ = ["ExampleError", "FeatureValue", "decode_example", "encode_example"]

FeatureValue = list[bytes] | list[int] | list[float]


class ExampleError(ValueError):
    """The bytes are not a well-formed ``tf.train.Example``."""


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ExampleError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ExampleError("varint longer than 10 bytes")


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """``(field_number, wire_type, value)`` of every field of one message."""
    out: list[tuple[int, int, bytes | int]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: bytes | int
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ExampleError("length-delimited field runs past the end")
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            if pos + 4 > len(data):
                raise ExampleError("truncated 32-bit field")
            value, pos = data[pos : pos + 4], pos + 4
        elif wire == 1:
            if pos + 8 > len(data):
                raise ExampleError("truncated 64-bit field")
            value, pos = data[pos : pos + 8], pos + 8
        else:
            raise ExampleError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _encode_feature(value: Sequence[bytes] | Sequence[int] | Sequence[float]) -> bytes:
    items = list(value)
    if all(isinstance(v, bytes) for v in items) and items:
        body = b"".join(_field(1, v) for v in items)  # type: ignore[arg-type]
        return _field(1, body)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        packed = b"".join(_varint(int(v)) for v in items)
        return _field(3, _field(1, packed) if items else b"")
    if all(isinstance(v, float) for v in items):
        packed = b"".join(struct.pack("<f", v) for v in items)
        return _field(2, _field(1, packed))
    raise TypeError("a feature holds bytes, ints or floats, all of one kind")


def encode_example(
    features: Mapping[str, Sequence[bytes] | Sequence[int] | Sequence[float]],
) -> bytes:
    """Serialise ``{name: [values]}`` as a ``tf.train.Example`` (int lists packed, as TF does)."""
    entries = b"".join(
        _field(1, _field(1, name.encode()) + _field(2, _encode_feature(value)))
        for name, value in features.items()
    )
    return _field(1, entries)


def _decode_feature(data: bytes) -> FeatureValue:
    kinds = _fields(data)
    if not kinds:
        return []
    number, wire, body = kinds[-1]
    if wire != 2 or not isinstance(body, bytes):
        raise ExampleError("a Feature holds a list message")
    values = _fields(body)
    if number == 1:
        return [v for n, w, v in values if n == 1 and w == 2 and isinstance(v, bytes)]
    if number == 3:
        ints: list[int] = []
        for n, w, v in values:
            if n != 1:
                continue
            if w == 0 and isinstance(v, int):
                ints.append(_signed(v))
            elif w == 2 and isinstance(v, bytes):
                pos = 0
                while pos < len(v):
                    raw, pos = _read_varint(v, pos)
                    ints.append(_signed(raw))
        return ints
    if number == 2:
        floats: list[float] = []
        for n, w, v in values:
            if n == 1 and isinstance(v, bytes):
                if w == 2 and len(v) % 4:
                    raise ExampleError("packed floats are not a multiple of 4 bytes")
                floats.extend(x for (x,) in struct.iter_unpack("<f", v))
        return floats
    raise ExampleError(f"unknown Feature kind {number}")


def decode_example(data: bytes) -> dict[str, FeatureValue]:
    """``{name: [values]}`` of a serialised ``tf.train.Example``.

    Raises:
        ExampleError: The bytes are not a well-formed Example.
    """
    out: dict[str, FeatureValue] = {}
    for number, wire, features in _fields(data):
        if number != 1:
            continue
        if wire != 2 or not isinstance(features, bytes):
            raise ExampleError("Example.features is not a message")
        for n, w, entry in _fields(features):
            if n != 1 or w != 2 or not isinstance(entry, bytes):
                continue
            key, value = "", b""
            for en, ew, ev in _fields(entry):
                if en == 1 and ew == 2 and isinstance(ev, bytes):
                    key = ev.decode("utf-8", errors="replace")
                elif en == 2 and ew == 2 and isinstance(ev, bytes):
                    value = ev
            out[key] = _decode_feature(value)
    return out
