"""A user's class-per-folder images: mixed modes and extensions, bad folders and files."""

from __future__ import annotations

import pytest
import torch

from alfa.data.dataset import LazyImageDataset, TensorImageDataset
from alfa.data.folder import load_folder
from alfa.errors import DataError

MIXED = ("RGB", "L", "P", "RGBA", "1", "LA", "I;16")


@pytest.mark.parametrize("channels", [1, 3])
def test_mixed_modes_and_extensions_are_converted_consistently(writer, channels):
    root = writer.folder({"cats": 7, "dogs": 8}, modes=MIXED)
    (root / "cats" / "notes.txt").write_text("not an image")
    data = load_folder(root, image_size=16, channels=channels)
    assert isinstance(data, TensorImageDataset)
    assert data.class_names == ["cats", "dogs"]
    assert data.images_per_class() == [7, 8]
    assert data.get(1, list(range(8))).shape == (8, channels, 16, 16)


def test_split_subfolder_and_lazy_mode(writer):
    root = writer.folder({"a": 2, "b": 2})
    split_root = writer.root / "with_splits"
    split_root.mkdir()
    root.rename(split_root / "train")
    data = load_folder(split_root, split="train", in_memory=False)
    assert isinstance(data, LazyImageDataset)
    assert data.class_names == ["a", "b"]
    assert torch.equal(data.get(0, [1]), data.to_memory().get(0, [1]))


def test_empty_class_folder_names_the_folder(writer):
    root = writer.folder({"a": 2})
    (root / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class"):
        load_folder(root)


def test_loose_images_without_class_folders(writer, tmp_path):
    loose = tmp_path / "loose"
    writer.save(writer.image(), loose / "x.png")
    with pytest.raises(DataError, match="one sub-folder per class"):
        load_folder(loose)


def test_corrupt_image_names_the_file(writer):
    root = writer.folder({"a": 3})
    bad = root / "a" / "img_001.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(DataError, match=r"img_001\.jpg"):
        load_folder(root)
    lazy = load_folder(root, in_memory=False)
    assert lazy.get(0, [0]).shape == (1, 3, 84, 84)
    with pytest.raises(DataError, match=r"img_001\.jpg"):
        lazy.get(0, [1])


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not_there"):
        load_folder(tmp_path / "not_there")


def test_split_folders_default_to_train_and_unknown_split_is_named(writer):
    root = writer.folder({"a": 2, "b": 2})
    base = writer.root / "split_layout"
    base.mkdir()
    root.rename(base / "train")
    assert load_folder(base).class_names == ["a", "b"]
    with pytest.raises(DataError, match="'val'"):
        load_folder(base, split="val")
