"""``alfa data convert omniglot``: Omniglot zips -> a Meta-Dataset source, read back again."""

from __future__ import annotations

import io
import runpy
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader

from alfa.cli.main import main
from alfa.data.metadataset import MetaDatasetSource
from alfa.data.metadataset_convert import OMNIGLOT_TEST_ALPHABETS, OMNIGLOT_TRAIN_ALPHABETS
from metadataset_writer import Example
from shared_paths import REAL_OMNIGLOT, REPO

ALPHABETS = [*OMNIGLOT_TRAIN_ALPHABETS, *OMNIGLOT_TEST_ALPHABETS]


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _write_zip(path: Path, files: dict[str, int]) -> None:
    """An Omniglot-layout zip: ``root/alphabet/character/file.png`` -> a grey level."""
    with zipfile.ZipFile(path, "w") as z:
        for name, value in files.items():
            z.writestr(f"images_background/{name}", _png(value))


@pytest.fixture
def two_zips(tmp_path: Path) -> tuple[list[str], dict[tuple[str, str], list[int]]]:
    """Two zips over the 8 alphabets (2 characters each, 2 or 3 drawings); the second zip holds
    a duplicate file of Greek (which must come from the first) and a new drawing of Latin."""
    first: dict[str, int] = {}
    expected: dict[tuple[str, str], list[int]] = {}
    level = 0
    for alphabet in ALPHABETS[:-1]:
        for character in ("character02", "character01"):  # out of order in the zip
            for drawing in (2, 1):
                level += 1
                first[f"{alphabet}/{character}/{drawing:02d}.png"] = level
            expected[(alphabet, character)] = [level, level - 1]  # sorted by file name
    second = {f"{ALPHABETS[-1]}/character01/01.png": 200, "Greek/character01/01.png": 250}
    second["Latin/character01/03.png"] = 201
    expected[(ALPHABETS[-1], "character01")] = [200]
    expected[("Latin", "character01")].append(201)
    _write_zip(tmp_path / "a.zip", first)
    _write_zip(tmp_path / "b.zip", second)
    return [str(tmp_path / "a.zip"), str(tmp_path / "b.zip")], expected


def test_converted_records_read_back(tmp_path, two_zips, capsys):
    zips, expected = two_zips
    out = tmp_path / "omniglot"
    assert main(["data", "convert", "omniglot", *zips, "--to", str(out), "--keep-png"]) == 0
    n_test = 2 + 1  # Early_Aramaic: 2 characters, Tagalog: 1
    assert capsys.readouterr().out.strip() == (
        f"wrote 15 classes (30 images) to {out}: train 6 alphabets / 12 classes, "
        f"test 2 alphabets / {n_test} classes"
    )
    source = MetaDatasetSource(out, image_size=4, channels=1)
    spec = source.spec
    assert spec.kind == "bilevel" and spec.superclass_names == ALPHABETS
    # Class ids: training alphabets first, each alphabet's characters in name order.
    characters = ("character01", "character02")
    order = [(a, c) for a in ALPHABETS for c in characters if (a, c) in expected]
    assert spec.class_names == [f"{a}-{c}" for a, c in order]
    assert spec.split_classes("train") == list(range(12))
    assert spec.split_classes("valid") == []
    assert spec.split_classes("test") == [12, 13, 14]
    assert spec.superclasses["TEST"] == [[12, 13], [14]]
    for class_id, key in enumerate(order):
        images = source.images(class_id)  # [-1, 1]
        assert [round(float(im.mean() + 1) * 127.5) for im in images] == expected[key]
        assert images.shape == (len(expected[key]), 1, 4, 4)
        # The record file, read by TensorBoard's reader and parsed by the protobuf runtime,
        # holds the zip's PNG bytes (--keep-png) and the class id.
        records = list(RawEventFileLoader(str(out / f"{class_id}.tfrecords")).Load())
        for record, level in zip(records, expected[key], strict=True):
            example = Example.FromString(record)
            assert list(example.features.feature["label"].int64_list.value) == [class_id]
            assert example.features.feature["image"].bytes_list.value[0] == _png(level)


def _stroke_png() -> tuple[bytes, np.ndarray]:
    """A 1-bit PNG as Omniglot stores its drawings (mode ``1``, black strokes on white) and its
    pixels (0 or 255)."""
    pixels = np.full((16, 16), 255, dtype=np.uint8)
    pixels[3:13, 7:9] = 0  # a vertical stroke
    pixels[7:9, 2:14] = 0  # a horizontal stroke
    buf = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buf, format="PNG")
    return buf.getvalue(), pixels


def test_default_conversion_is_meta_dataset_s_inverted_rgb_jpeg(tmp_path, two_zips):
    """Meta-Dataset's converter opens each PNG with PIL, converts it to RGB, inverts it
    (``ImageOps.invert``) and saves it as JPEG with PIL's defaults: the records hold exactly
    those bytes, which decode to the inverted drawing (white strokes on black)."""
    zips, expected = two_zips
    data, pixels = _stroke_png()
    assert Image.open(io.BytesIO(data)).mode == "1"
    with zipfile.ZipFile(zips[0], "a") as z:  # a third drawing of Balinese/character01
        z.writestr("images_background/Balinese/character01/03.png", data)
    out = tmp_path / "omniglot"
    assert main(["data", "convert", "omniglot", *zips, "--to", str(out)]) == 0
    records = list(RawEventFileLoader(str(out / "0.tfrecords")).Load())
    assert len(records) == 3  # 01.png, 02.png, 03.png
    stored = Example.FromString(records[2]).features.feature["image"].bytes_list.value[0]
    theirs = io.BytesIO()  # what Meta-Dataset's converter does with the PNG
    ImageOps.invert(Image.open(io.BytesIO(data)).convert("RGB")).save(theirs, format="JPEG")
    assert stored == theirs.getvalue()
    image = Image.open(io.BytesIO(stored))
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (16, 16))
    decoded = np.asarray(image).astype(int)
    inverted = 255 - pixels.astype(int)
    assert np.abs(decoded - inverted[..., None]).mean() < 8  # JPEG of quality 75
    assert decoded[inverted == 255].min() > 160 and decoded[inverted == 0].max() < 100
    # A uniform drawing survives the JPEG within a level.
    grey = Example.FromString(records[0]).features.feature["image"].bytes_list.value[0]
    level = np.asarray(Image.open(io.BytesIO(grey))).astype(int)
    first = expected[("Balinese", "character01")][0]
    assert level.shape == (4, 4, 3) and np.abs(level - (255 - first)).max() <= 1
    # Read back on [-1, 1] at the drawing's own size: the strokes are bright on black.
    source = MetaDatasetSource(out, image_size=16)
    drawn = source.images(0)[2]
    assert drawn.shape == (3, 16, 16)
    assert torch.equal(
        drawn, torch.from_numpy(2 * (decoded.transpose(2, 0, 1) / 255 - 0.5)).float()
    )
    assert float(drawn.mean()) < -0.5


def test_keep_png_stores_the_zip_bytes(tmp_path, two_zips):
    zips, expected = two_zips
    data, _ = _stroke_png()
    with zipfile.ZipFile(zips[0], "a") as z:
        z.writestr("images_background/Balinese/character01/03.png", data)
    out = tmp_path / "omniglot"
    assert main(["data", "convert", "omniglot", *zips, "--to", str(out), "--keep-png"]) == 0
    records = list(RawEventFileLoader(str(out / "0.tfrecords")).Load())
    images = [Example.FromString(r).features.feature["image"].bytes_list.value[0] for r in records]
    assert images == [*map(_png, expected[("Balinese", "character01")]), data]


@pytest.mark.parametrize("options", [[], ["--keep-png"]])
def test_script_is_the_command(tmp_path, two_zips, monkeypatch, capsys, options):
    zips, _ = two_zips
    cli = ["data", "convert", "omniglot", *zips, "--to", str(tmp_path / "cli"), *options]
    assert main(cli) == 0
    line = capsys.readouterr().out
    script = REPO / "scripts" / "omniglot_to_metadataset.py"
    argv = [str(script), *zips, "--out", str(tmp_path / "script"), *options]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0
    assert capsys.readouterr().out == line.replace("cli", "script")
    files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "script").iterdir())
    for name in files:
        a, b = ((tmp_path / d / name).read_bytes() for d in ("cli", "script"))
        if name == "dataset_spec.json":  # names its own folder
            a, b = a.replace(b"/cli", b""), b.replace(b"/script", b"")
        assert a == b, name
    assert (b"\x89PNG" in (tmp_path / "cli" / "0.tfrecords").read_bytes()) == bool(options)


def test_alphabet_split_is_the_omniglot_configs_split():
    splits = REPO / "configs" / "omniglot" / "splits"
    for name, alphabets in (("train", OMNIGLOT_TRAIN_ALPHABETS), ("test", OMNIGLOT_TEST_ALPHABETS)):
        lines = (splits / f"minimal_{name}.txt").read_text().split()
        assert tuple(sorted({line.split("/")[0] for line in lines})) == alphabets


def _fails(capsys, argv: list[str], *names: str) -> None:
    assert main(["data", "convert", "omniglot", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("alfa: error: ") and "Traceback" not in err
    for name in names:
        assert name in err, err


def test_bad_input_is_one_line_exit_2(tmp_path, two_zips, capsys):
    zips, _ = two_zips
    out = str(tmp_path / "out")
    _fails(capsys, [str(tmp_path / "missing.zip"), "--to", out], "missing.zip", "no such zip")
    (tmp_path / "text.zip").write_text("not a zip")
    _fails(capsys, [str(tmp_path / "text.zip"), "--to", out], "text.zip", "not a readable zip")
    # A drawing that does not decode (first zip wins): converted, it names its zip and member;
    # kept as PNG bytes, it is stored as it is.
    with zipfile.ZipFile(tmp_path / "broken.zip", "w") as z:
        z.writestr("images_background/Latin/character01/01.png", b"not a png")
    broken = [str(tmp_path / "broken.zip"), *zips]
    _fails(capsys, [*broken, "--to", out], "broken.zip", "Latin/character01/01.png", "corrupt")
    assert not Path(out).exists()
    assert main(["data", "convert", "omniglot", *broken, "--to", out, "--keep-png"]) == 0
    shutil.rmtree(out)
    capsys.readouterr()
    _write_zip(tmp_path / "flat.zip", {})
    with zipfile.ZipFile(tmp_path / "flat.zip", "a") as z:
        z.writestr("readme.txt", "no images")
    _fails(capsys, [str(tmp_path / "flat.zip"), "--to", out], "flat.zip", "no Omniglot image")
    _fails(capsys, [zips[0], "--to", out], "alphabet Tagalog")  # only in the second zip
    assert not Path(out).exists()  # nothing written on bad input
    Path(out).mkdir()
    (Path(out) / "0.tfrecords").write_bytes(b"")
    _fails(capsys, [*zips, "--to", out], out, "not empty")
    (tmp_path / "file").write_text("")
    _fails(capsys, [*zips, "--to", str(tmp_path / "file")], "file", "not a folder")


def test_damaged_member_names_the_zip(tmp_path, two_zips, capsys):
    zips, _ = two_zips
    data = bytearray(Path(zips[1]).read_bytes())
    png = _png(200)
    at = bytes(data).index(png)  # stored, not deflated: flip a byte of the image
    data[at + len(png) // 2] ^= 0xFF
    Path(zips[1]).write_bytes(bytes(data))
    _fails(capsys, [*zips, "--to", str(tmp_path / "out")], "b.zip", "cannot be read")


def test_real_minimal_sets(tmp_path, capsys):
    zips = [REAL_OMNIGLOT / f"images_background_small{i}.zip" for i in (1, 2)]
    if not zips[0].is_file():
        pytest.skip("real Omniglot zips not available")
    out = tmp_path / "omniglot"
    assert main(["data", "convert", "omniglot", *map(str, zips), "--to", str(out)]) == 0
    assert "242 classes (4840 images)" in capsys.readouterr().out
    # Every character of the split's alphabets, counted from the zips themselves.
    files: dict[str, set[str]] = {}
    for path in zips:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                parts = name.split("/")
                if len(parts) == 4 and parts[3].endswith(".png") and parts[1] in ALPHABETS:
                    files.setdefault(f"{parts[1]}-{parts[2]}", set()).add(parts[3])
    spec = MetaDatasetSource(out).spec
    assert sorted(spec.class_names) == sorted(files)
    assert [spec.images_per_class[spec.class_names.index(n)] for n in files] == [
        len(v) for v in files.values()
    ]
    assert len(spec.split_classes("test")) == 39
    assert main(["data", "check", str(out)]) == 0  # every record reads and decodes
    # Meta-Dataset's polarity: white strokes on a black background.
    drawings = MetaDatasetSource(out, image_size=28).images(0)
    assert drawings.shape == (20, 3, 28, 28) and float(drawings.mean()) < -0.5
