"""Meta-Dataset records without TensorFlow: TFRecord framing, tf.train.Example, the source reader.

Records are written by independent code (TensorBoard's record writer and the protobuf runtime,
tests/metadataset_writer.py) in the exact on-disk format, then read back by alfa; and alfa's
writer's output is parsed by the protobuf runtime.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_masked

from alfa.data.check import check_dataset, run_check
from alfa.data.example_proto import ExampleError, decode_example, encode_example
from alfa.data.formats import detect_format
from alfa.data.metadataset import MetaDatasetSource, resize_and_scale
from alfa.data.metadataset_spec import load_spec
from alfa.data.tfrecord import crc32c, masked_crc32c, read_records, write_records
from alfa.errors import DataError
from metadataset_writer import (
    Example,
    example_bytes,
    png,
    write_record_file,
    write_source,
)


def test_crc32c_check_value_and_mask_match_tensorboard() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    for data in (b"", b"a", b"hello world", bytes(range(256)) * 3):
        assert masked_crc32c(data) == tb_masked(data)


def test_records_written_by_tensorboard_read_back(tmp_path) -> None:
    payloads = [b"", b"x", bytes(range(200)) * 7]
    write_record_file(tmp_path / "a.tfrecords", payloads)
    assert read_records(tmp_path / "a.tfrecords") == payloads


def test_own_writer_frames_as_tensorboard(tmp_path) -> None:
    payloads = [b"abc", b"\x00" * 1000]
    write_records(tmp_path / "mine", payloads)
    write_record_file(tmp_path / "theirs", payloads)
    assert (tmp_path / "mine").read_bytes() == (tmp_path / "theirs").read_bytes()


def test_corrupt_truncated_and_foreign_files_name_the_file(tmp_path) -> None:
    write_record_file(tmp_path / "ok.tfrecords", [b"hello", b"world"])
    raw = (tmp_path / "ok.tfrecords").read_bytes()
    corrupt = bytearray(raw)
    corrupt[12 + 1] ^= 0xFF  # a byte of the first record's data
    (tmp_path / "corrupt.tfrecords").write_bytes(bytes(corrupt))
    with pytest.raises(
        DataError, match=r"corrupt.tfrecords is corrupt: bad data checksum .* byte 0"
    ):
        read_records(tmp_path / "corrupt.tfrecords")
    (tmp_path / "cut.tfrecords").write_bytes(raw[:-3])
    with pytest.raises(DataError, match=r"cut.tfrecords is truncated: the record at byte 21"):
        read_records(tmp_path / "cut.tfrecords")
    (tmp_path / "cut2.tfrecords").write_bytes(raw[:5])
    with pytest.raises(DataError, match=r"cut2.tfrecords is truncated at byte 0"):
        read_records(tmp_path / "cut2.tfrecords")
    (tmp_path / "image.png").write_bytes(png(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(DataError, match=r"image.png is corrupt or not a TFRecord file"):
        read_records(tmp_path / "image.png")


def test_example_decodes_protobuf_serialisation() -> None:
    e = Example()
    e.features.feature["image"].bytes_list.value.extend([b"\x89PNG", b""])
    e.features.feature["label"].int64_list.value.extend([0, 1, 300, -3, 2**62])
    e.features.feature["scale"].float_list.value.extend([1.5, -0.25])
    assert decode_example(e.SerializeToString()) == {
        "image": [b"\x89PNG", b""],
        "label": [0, 1, 300, -3, 2**62],
        "scale": [1.5, -0.25],
    }


def test_example_unpacked_int64_is_read() -> None:
    # Int64List.value as one varint field per value (unpacked), which proto2 writers produce.
    int64_list = b"\x08\x05\x08\x07"  # field 1 varint 5, field 1 varint 7
    feature = b"\x1a" + bytes([len(int64_list)]) + int64_list
    entry = b"\x0a\x05label" + b"\x12" + bytes([len(feature)]) + feature
    features = b"\x0a" + bytes([len(entry)]) + entry
    assert decode_example(b"\x0a" + bytes([len(features)]) + features) == {"label": [5, 7]}


def test_encoded_example_parses_with_protobuf() -> None:
    parsed = Example()
    parsed.ParseFromString(encode_example({"image": [b"abc"], "label": [-2, 7], "f": [0.5]}))
    f = parsed.features.feature
    assert list(f["image"].bytes_list.value) == [b"abc"]
    assert list(f["label"].int64_list.value) == [-2, 7]
    assert list(f["f"].float_list.value) == [0.5]


def test_malformed_example_raises() -> None:
    with pytest.raises(ExampleError):
        decode_example(b"\x0a\x10abc")  # a length past the end


def test_source_round_trip_and_spec(tmp_path) -> None:
    arrays = write_source(tmp_path / "src", [3, 4, 2, 5, 3], size=6)
    spec = load_spec(tmp_path / "src")
    assert spec.kind == "flat" and spec.splits == {"TRAIN": [0, 1, 2], "VALID": [3], "TEST": [4]}
    source = MetaDatasetSource(tmp_path / "src", image_size=6)
    for class_id, expected in arrays.items():
        got = source.images(class_id)
        assert got.shape == (len(expected), 3, 6, 6) and got.dtype == torch.float32
        # At its own size an image is only scaled, as Meta-Dataset's decoder does it (float32).
        stored = np.stack(expected).transpose(0, 3, 1, 2).astype(np.float32)
        np.testing.assert_array_equal(got.numpy(), np.float32(2) * (stored / 255 - 0.5))


def _one_image_source(root, pixels: np.ndarray) -> None:
    """A flat source of 5 classes, class 0 holding the grey PNG ``pixels`` (lossless)."""
    write_source(root, [1] * 5, size=2)
    write_record_file(root / "0.tfrecords", [example_bytes(png(pixels), 0)])


def _scaled(values) -> np.ndarray:
    return 2 * (np.asarray(values, dtype=np.float64) / 255 - 0.5)


def test_resize_is_bilinear_with_aligned_corners(tmp_path) -> None:
    """TensorFlow 1's ``resize_images(BILINEAR, align_corners=True)``: output pixel ``i`` samples
    the input at ``i (in - 1) / (out - 1)``, the corner pixels are kept; in float, no rounding."""
    # 2x2 -> 3x3: samples at 0, 0.5, 1 in each direction.
    _one_image_source(tmp_path / "up", np.array([[0, 30], [60, 91]], np.uint8))
    up = MetaDatasetSource(tmp_path / "up", image_size=3).images(0)[0]
    hand = [[0, 15, 30], [30, 45.25, 60.5], [60, 75.5, 91]]  # 45.25: (0 + 30 + 60 + 91) / 4
    assert up.shape == (3, 3, 3)
    for channel in up:  # grey: the same in R, G and B
        np.testing.assert_allclose(channel.numpy(), _scaled(hand), rtol=0, atol=1e-6)
    # 4x4 -> 3x3: samples at 0, 1.5, 3.
    four = np.array([[0, 10, 20, 30], [40, 50, 60, 70], [80, 90, 100, 110], [120, 131, 140, 150]])
    _one_image_source(tmp_path / "mid", four.astype(np.uint8))
    mid = MetaDatasetSource(tmp_path / "mid", image_size=3).images(0)[0, 0]
    hand = [
        [0, (10 + 20) / 2, 30],
        [(40 + 80) / 2, (50 + 60 + 90 + 100) / 4, (70 + 110) / 2],
        [120, (131 + 140) / 2, 150],
    ]
    np.testing.assert_allclose(mid.numpy(), _scaled(hand), rtol=0, atol=1e-6)
    # 3x3 -> 2x2 keeps the corners (an antialiased resize would average their neighbours).
    nine = np.array([[7, 200, 9], [200, 255, 200], [11, 200, 13]], np.uint8)
    _one_image_source(tmp_path / "down", nine)
    down = MetaDatasetSource(tmp_path / "down", image_size=2).images(0)[0, 0]
    np.testing.assert_allclose(down.numpy(), _scaled([[7, 9], [11, 13]]), rtol=0, atol=1e-6)


def test_resize_and_scale_at_the_target_size_is_the_scaling_alone() -> None:
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 5, 5), np.uint8))
    out = resize_and_scale(images, 5)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 5, 5)
    assert torch.equal(out, 2 * (images.float() / 255.0 - 0.5))
    assert float(out.min()) >= -1 and float(out.max()) <= 1


def test_bilevel_spec_alphabets(tmp_path) -> None:
    write_source(tmp_path / "omni", [2] * 14, alphabets={"TRAIN": [5, 4], "VALID": [], "TEST": [5]})
    spec = load_spec(tmp_path / "omni")
    assert spec.kind == "bilevel"
    assert spec.superclasses["TRAIN"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    assert spec.superclasses["TEST"] == [[9, 10, 11, 12, 13]]
    assert spec.splits["VALID"] == []


def _bad_sources(tmp_path):
    """(name, how to break a fresh source, expected message)."""
    cases = []

    def missing(root):
        (root / "2.tfrecords").unlink()

    cases.append((missing, r"2.tfrecords: record file of class 2 is missing"))

    def disagree(root):
        spec = json.loads((root / "dataset_spec.json").read_text())
        spec["images_per_class"]["1"] = 9
        (root / "dataset_spec.json").write_text(json.dumps(spec))

    cases.append((disagree, r"1.tfrecords: holds 4 records, dataset_spec.json says 9 images"))

    def label(root):
        write_record_file(root / "0.tfrecords", [example_bytes(b"x", 4)] * 3)

    cases.append((label, r"0.tfrecords: record 0 has label 4, the file is class 0"))

    def undecodable(root):
        write_record_file(root / "3.tfrecords", [example_bytes(b"not an image", 3)] * 5)

    cases.append((undecodable, r"3.tfrecords: the image of record 0 does not decode"))

    def truncated(root):
        raw = (root / "4.tfrecords").read_bytes()
        (root / "4.tfrecords").write_bytes(raw[: len(raw) // 2])

    cases.append((truncated, r"4.tfrecords is truncated"))
    return cases


@pytest.mark.parametrize("case", range(5))
def test_bad_sources_are_reported_by_data_check(tmp_path, case) -> None:
    root = tmp_path / "records" / "synthetic"
    write_source(
        root, [3, 4, 2, 5, 3] + [2] * 5, alphabets={"TRAIN": [5], "VALID": [], "TEST": [5]}
    )
    breaker, message = _bad_sources(tmp_path)[case]
    breaker(root)
    assert detect_format(tmp_path / "records") == "metadataset"
    report = check_dataset(tmp_path / "records")
    assert report.format == "metadataset"
    assert len(report.problems) == 1, report.problems
    assert re.search(message, report.problems[0])


def test_data_check_cli_on_records(tmp_path, capsys) -> None:
    root = tmp_path / "records" / "omniglot"
    write_source(root, [2] * 10, alphabets={"TRAIN": [5], "VALID": [], "TEST": [5]})
    assert run_check(str(tmp_path / "records")) == 0
    out = capsys.readouterr().out
    assert "format: metadataset (detected)" in out
    assert "split synthetic/TRAIN: 5 classes, 10 images" in out
    cmd = [sys.executable, "-m", "alfa.cli.main", "data", "check", str(tmp_path / "records")]
    (root / "7.tfrecords").write_bytes(b"\x00" * 40)
    bad = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "7.tfrecords is corrupt or not a TFRecord file" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr


def test_split_with_too_few_classes_is_a_problem(tmp_path) -> None:
    write_source(tmp_path / "s", [2] * 10, alphabets={"TRAIN": [5, 3], "VALID": [], "TEST": [2]})
    report = check_dataset(tmp_path / "s")
    assert any(
        "split TEST has 2 classes, an episode needs at least 5" in p for p in report.problems
    )


def test_spec_inconsistent_counts(tmp_path) -> None:
    write_source(tmp_path / "s", [2] * 5)
    spec = json.loads((tmp_path / "s" / "dataset_spec.json").read_text())
    spec["classes_per_split"]["TEST"] = 4
    (tmp_path / "s" / "dataset_spec.json").write_text(json.dumps(spec))
    with pytest.raises(DataError, match=r"dataset_spec.json: classes_per_split adds up to 8"):
        load_spec(tmp_path / "s")
