"""Untrusted data files: a decompression-bomb image and a pickle cache that would run code.

Each gives one line naming the file (a :class:`DataError`, exit code 2 from the CLI) and runs
nothing: the marker file a malicious pickle would create is never there.
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from alfa.cli.main import main
from alfa.data import load_dataset
from alfa.data._containers import load_pickle
from alfa.data.folder import load_folder
from alfa.data.images import MAX_IMAGE_PIXELS, FileReader
from alfa.data.mini_imagenet import load_mini_imagenet_pickle
from alfa.errors import DataError


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims ``width x height`` pixels (a few dozen bytes)."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR checksum
    return bytes(data)


# 9000^2 is over alfa's limit but under PIL's; 10000^2 makes PIL warn; 30000^2 makes PIL raise.
SIDES = [9000, 10000, 30000]


def test_the_limit_is_below_every_bomb():
    assert all(side * side > MAX_IMAGE_PIXELS for side in SIDES)
    assert MAX_IMAGE_PIXELS < Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("side", [9000, 30000])
def test_image_reader_refuses_a_decompression_bomb(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(side, side))
    assert path.stat().st_size < 100
    with pytest.raises(DataError) as info:
        FileReader().open(str(path))
    message = str(info.value)
    assert str(path) in message and "decompression bomb" in message and "\n" not in message
    assert f"{side * side:,} pixels" in message


def test_folder_loader_refuses_a_decompression_bomb(writer):
    root = writer.folder({"a": 3, "b": 3})
    bomb = root / "b" / "img_999.png"
    bomb.write_bytes(bomb_png(30000, 30000))
    with pytest.raises(DataError, match="decompression bomb") as info:
        load_folder(root, image_size=16, in_memory=True)
    assert str(bomb) in str(info.value)


def test_data_check_reports_each_bomb_on_one_line(writer, capsys):
    root = writer.folder({"a": 20, "b": 20})
    bombs = [root / "a" / f"bomb_{side}.png" for side in SIDES]
    for path, side in zip(bombs, SIDES, strict=True):
        path.write_bytes(bomb_png(side, side))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["data", "check", str(root)]) == 2
    assert not [w for w in caught if w.category is Image.DecompressionBombWarning]
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for path in bombs:
        lines = [line for line in out.splitlines() if str(path) in line]
        assert len(lines) == 1 and "decompression bomb" in lines[0], out


# --- pickle caches ------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs ``exec``, which creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_malicious_pickle_cache_is_refused_without_running(writer, tmp_path, protocol):
    root = writer.mini_pickle(classes=2, per_class=2, splits=("train",))
    file, marker = root / "mini-imagenet-cache-train.pkl", tmp_path / "pwned"
    cache = {"image_data": Payload(marker), "class_dict": {}}
    file.write_bytes(pickle.dumps(cache, protocol=protocol))
    pickle.loads(file.read_bytes())  # control: a plain pickle.load runs the payload
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DataError) as info:
        load_mini_imagenet_pickle(root, split="train")
    message = str(info.value)
    assert str(file) in message and "'builtins.exec'" in message and "\n" not in message
    assert not marker.exists()


def test_only_numpy_and_plain_globals_are_allowed(tmp_path):
    path = tmp_path / "cache.pkl"
    path.write_bytes(pickle.dumps({"path": Path("/etc")}))  # harmless, but not plain data
    with pytest.raises(DataError, match=r"pathlib\.PosixPath|pathlib\.Path"):
        load_pickle(path)


def test_data_check_names_a_malicious_pickle(writer, tmp_path, capsys):
    root = writer.mini_pickle(classes=2, per_class=20)
    file, marker = root / "mini-imagenet-cache-val.pkl", tmp_path / "pwned"
    file.write_bytes(pickle.dumps({"image_data": Payload(marker), "class_dict": {}}))
    assert main(["data", "check", str(root)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in out.splitlines() if str(file) in line]
    assert len(lines) == 1 and "builtins.exec" in lines[0], out
    assert not marker.exists()
    with pytest.raises(DataError, match=r"builtins\.exec"):
        load_dataset(root, split="val", check_split="off")
    assert not marker.exists()
