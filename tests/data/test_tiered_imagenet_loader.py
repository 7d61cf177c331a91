"""tieredImageNet: PNG-bytes pickles and BGR npz caches with Python 2 label pickles."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
import torch

from alfa.data._containers import npz_array
from alfa.data.dataset import LazyImageDataset
from alfa.data.tiered_imagenet import load_tiered_imagenet_npz, load_tiered_imagenet_png
from alfa.errors import DataError


def _expected(pixels: np.ndarray, labels: np.ndarray, class_index: int, k: int) -> torch.Tensor:
    row = np.flatnonzero(labels == class_index)[k]
    return torch.from_numpy(pixels[row]).permute(2, 0, 1)


def _labels(root, split):
    raw = pickle.loads((root / f"{split}_labels.pkl").read_bytes(), encoding="latin1")
    return np.asarray(raw["label_specific"])


def test_png_pickle_decodes_true_colours_lazily(writer):
    root, pixels = writer.tiered(kind="png", classes=4, per_class=5)
    data = load_tiered_imagenet_png(root, split="val")
    assert isinstance(data, LazyImageDataset)
    assert data.class_names == [f"n{9000000 + c:08d}" for c in range(4)]
    assert data.images_per_class() == [5] * 4
    labels = _labels(root, "val")
    assert torch.equal(data.get(2, [3])[0], _expected(pixels["val"], labels, 2, 3))


def test_npz_is_converted_from_bgr(writer):
    root, pixels = writer.tiered(kind="npz", classes=3, per_class=4)
    data = load_tiered_imagenet_npz(root, split="test")
    labels = _labels(root, "test")
    assert torch.equal(data.get(1, [0])[0], _expected(pixels["test"], labels, 1, 0))
    assert torch.equal(data.get(0, [3])[0], _expected(pixels["test"], labels, 0, 3))
    memory = load_tiered_imagenet_npz(root, split="test", in_memory=True)
    assert torch.equal(memory.get(1, [0, 1, 2]), data.get(1, [0, 1, 2]))


def test_uncompressed_npz_is_memory_mapped(writer):
    root, _ = writer.tiered(kind="npz", classes=2, per_class=2)
    assert isinstance(npz_array(root / "train_images.npz", "images"), np.memmap)
    compressed = root / "packed.npz"
    np.savez_compressed(compressed, images=np.ones((2, 3, 3, 3), dtype=np.uint8))
    array = npz_array(compressed, "images")
    assert not isinstance(array, np.memmap) and array.sum() == 54
    with pytest.raises(DataError, match="'labels'"):
        npz_array(compressed, "labels")


def test_metaoptnet_labels_key(writer):
    root, _pixels = writer.tiered(kind="npz", classes=3, per_class=2, metaoptnet=True)
    data = load_tiered_imagenet_npz(root, split="train")
    assert data.class_names == ["100", "101", "102"]
    assert data.images_per_class() == [2, 2, 2]


def test_mismatched_counts_and_missing_files(writer):
    root, _ = writer.tiered(kind="png", classes=2, per_class=2)
    writer.tiered_labels("train", np.arange(3), 3, metaoptnet=False)
    with pytest.raises(DataError, match=r"train_images_png\.pkl holds 4 images"):
        load_tiered_imagenet_png(root, split="train")
    (root / "val_labels.pkl").unlink()
    with pytest.raises(DataError, match=r"val_labels\.pkl"):
        load_tiered_imagenet_png(root, split="val")
    with pytest.raises(DataError, match=r"test_images\.npz"):
        load_tiered_imagenet_npz(root, split="test")
    with zipfile.ZipFile(root / "test_images.npz", "w") as zf:
        zf.writestr("other.npy", b"")
    with pytest.raises(DataError, match="no array 'images'"):
        load_tiered_imagenet_npz(root, split="test")


def test_corrupt_png_bytes_name_the_image(writer):
    root, _ = writer.tiered(kind="png", classes=2, per_class=2)
    blobs = pickle.loads((root / "train_images_png.pkl").read_bytes(), encoding="latin1")
    blobs[0] = blobs[0][:40]  # truncated PNG
    (root / "train_images_png.pkl").write_bytes(pickle.dumps(blobs))
    data = load_tiered_imagenet_png(root, split="train")
    labels = _labels(root, "train")
    c, k = int(labels[0]), int(np.flatnonzero(labels == labels[0]).tolist().index(0))
    with pytest.raises(DataError, match=r"train_images_png\.pkl\[0\]"):
        data.get(c, [k])
