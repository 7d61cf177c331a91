"""``alfa.limits``: the rule every reader follows, checked on its own."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
import zlib

import pytest

from alfa.errors import ConfigError, DataError
from alfa.limits import (
    MAX_DEPTH,
    MAX_RATIO,
    check_depth,
    check_nesting,
    load_json,
    read_bytes,
    read_member,
    read_text,
)


def test_depth_counts_brackets_outside_strings_only():
    check_depth("[" * MAX_DEPTH + "]" * MAX_DEPTH, "x")
    check_depth(json.dumps({"name": "[" * 10000}), "x")  # brackets inside a string
    check_depth(json.dumps({"name": '\\"[' * 1000}), "x")  # escaped quotes stay in the string
    with pytest.raises(DataError, match="nested more than 100 levels"):
        check_depth("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "x")
    with pytest.raises(ConfigError, match="'f' is not valid JSON"):
        load_json("{", "'f'", error=ConfigError)
    with pytest.raises(DataError, match="not JSON text"):
        load_json(5, "x")  # type: ignore[arg-type]


def test_nesting_of_built_data_is_walked_without_recursion():
    deep: list = []
    for _ in range(100000):
        deep = [deep]
    with pytest.raises(DataError, match="nested more than"):
        check_nesting({"a": deep}, "state")
    check_nesting({"a": [[1, 2], {"b": (3,)}]}, "state")


def test_a_file_larger_than_its_cap_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    assert read_bytes(path, cap=101, what="file") == b"x" * 101
    with pytest.raises(DataError, match=r"larger .* than the 100 bytes"):
        read_bytes(path, cap=100, what="file")
    with pytest.raises(DataError, match=r"larger than the 1\.0 KiB"):  # no size: read to the cap
        read_bytes("/dev/zero", cap=1024, what="file")
    path.write_bytes(b"a\0b")
    with pytest.raises(DataError, match="holds NUL bytes"):
        read_text(path, what="file")
    with pytest.raises(DataError, match="cannot read file"):
        read_bytes(tmp_path / "missing", cap=10, what="file")


def _member(tmp_path, data: bytes, declared: int):
    """A zip whose one deflated member declares ``declared`` bytes (its CRC is of ``data``)."""
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("m", data)
    raw = bytearray(path.read_bytes())
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = declared.to_bytes(4, "little")  # uncompressed size
    path.write_bytes(bytes(raw))
    return zipfile.ZipFile(path)


def test_a_zip_member_is_checked_by_its_sizes_and_never_read_past_them(tmp_path):
    data = b"\0" * 2**20
    compressed = len(zlib.compress(data))
    with _member(tmp_path, data, 2**20) as z, pytest.raises(DataError, match="zip bomb"):
        read_member(z, "m", "a.zip!m")  # a 1 MiB member of about 1 KiB
    assert MAX_RATIO * compressed < 2**20
    with _member(tmp_path, data, 100) as z, pytest.raises(DataError, match="cannot be read"):
        read_member(z, "m", "a.zip!m")  # declares 100 bytes: the stream stops there (bad CRC)
    with _member(tmp_path, b"abc", 3) as z:
        assert read_member(z, "m", "a.zip!m") == b"abc"
        with pytest.raises(DataError, match="more than the 2 bytes"):
            read_member(z, "m", "a.zip!m", cap=2)


def test_available_memory_follows_the_address_space_limit():
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31)); "
        "from alfa.limits import available_memory; print(available_memory())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0 < int(done.stdout) < 2**31
