"""miniImageNet: Ravi CSV, MAML++ folders, Ren et al. pickles (py2 and py3), learn2learn."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from alfa.data import load_dataset
from alfa.data.mini_imagenet import (
    load_mini_imagenet_csv,
    load_mini_imagenet_folders,
    load_mini_imagenet_l2l,
    load_mini_imagenet_pickle,
)
from alfa.data.splits import check_split_classes, mini_imagenet_split
from alfa.errors import DataError


def test_shipped_split_lists():
    sizes = {s: len(mini_imagenet_split(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 64, "val": 16, "test": 20}
    all_ids = set().union(*(mini_imagenet_split(s) for s in sizes))
    assert len(all_ids) == 100
    assert mini_imagenet_split("validation") == mini_imagenet_split("val")


def test_ravi_csv(writer):
    root = writer.mini_csv(classes=3, per_class=6)
    with pytest.warns(UserWarning, match="not the standard 16"):
        data = load_mini_imagenet_csv(root, split="val")
    assert data.class_names == sorted(mini_imagenet_split("val")[:3])
    assert data.images_per_class() == [6, 6, 6]
    assert data.get(2, [0, 5]).shape == (2, 3, 84, 84)  # arbitrary JPEG sizes resized


def test_ravi_csv_missing_images_and_split_file(writer):
    root = writer.mini_csv(classes=2, per_class=4)
    victim = sorted((root / "images").iterdir())[0]
    victim.unlink()
    with pytest.raises(DataError, match=victim.name):
        load_mini_imagenet_csv(root, check_split="off")
    (root / "test.csv").unlink()
    with pytest.raises(DataError, match=r"test\.csv"):
        load_mini_imagenet_csv(root, split="test", check_split="off")
    (root / "val.csv").write_text("file,class\nx.jpg,n01\n")
    with pytest.raises(DataError, match="filename,label"):
        load_mini_imagenet_csv(root, split="val", check_split="off")


def test_maml_folders(writer):
    root = writer.mini_folders(classes=2, per_class=5)
    data = load_mini_imagenet_folders(root.parent, split="test", check_split="off")
    assert data.class_names == sorted(mini_imagenet_split("test")[:2])
    assert data.images_per_class() == [5, 5]
    (root / "train" / "n99999999").mkdir()
    with pytest.raises(DataError, match="n99999999"):
        load_mini_imagenet_folders(root, split="train", check_split="off")


@pytest.mark.parametrize("py2", [False, True])
def test_ren_pickle(writer, py2):
    root = writer.mini_pickle(classes=3, per_class=4, py2=py2)
    if py2:  # like the original cache: unreadable without an encoding argument
        with pytest.raises(UnicodeDecodeError):
            pickle.loads((root / "mini-imagenet-cache-train.pkl").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_mini_imagenet_pickle(root, split="train")
    assert data.class_names == sorted(mini_imagenet_split("train")[:3])
    assert data.images_per_class() == [4, 4, 4]
    raw = pickle.loads((root / "mini-imagenet-cache-train.pkl").read_bytes(), encoding="bytes")
    raw = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    class_dict = {
        k.decode() if isinstance(k, bytes) else k: v for k, v in raw["class_dict"].items()
    }
    rows = class_dict[data.class_names[1]]
    expected = torch.from_numpy(raw["image_data"][rows[2]]).permute(2, 0, 1)
    assert torch.equal(data.get(1, [2])[0], expected)


def test_ren_pickle_resized_is_lazy_and_correct_size(writer):
    root = writer.mini_pickle(classes=2, per_class=3, size=40, splits=("val",))
    data = load_mini_imagenet_pickle(root, split="val", image_size=32, check_split="off")
    assert data.get(0, [0, 1, 2]).shape == (3, 3, 32, 32)


def test_learn2learn_pickle_uses_validation_name(writer):
    root = writer.mini_pickle(classes=2, per_class=3, l2l=True)
    assert (root / "mini-imagenet-cache-validation.pkl").is_file()
    data = load_mini_imagenet_l2l(root, split="val", check_split="off")
    assert data.class_names == sorted(mini_imagenet_split("val")[:2])
    assert load_dataset(root, split="validation", check_split="off").num_classes == 2


def test_swapped_val_and_test_is_an_error(writer, tmp_path):
    images = np.zeros((20, 84, 84, 3), dtype=np.uint8)
    class_dict = {w: [i] for i, w in enumerate(mini_imagenet_split("test"))}
    file = tmp_path / "mini-imagenet-cache-val.pkl"
    file.write_bytes(pickle.dumps({"image_data": images, "class_dict": class_dict}))
    with pytest.raises(DataError, match="'test' classes"):
        load_mini_imagenet_pickle(tmp_path, split="val")


def test_split_check_modes():
    with pytest.raises(DataError, match="n00000001"):
        check_split_classes(["n00000001"], "train", "here", "error")
    check_split_classes(["n00000001"], "train", "here", "off")
    check_split_classes(mini_imagenet_split("val"), "val", "here", "error")


def test_bad_pickles(tmp_path):
    (tmp_path / "mini-imagenet-cache-train.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match=r"mini-imagenet-cache-train\.pkl"):
        load_mini_imagenet_pickle(tmp_path)
    (tmp_path / "mini-imagenet-cache-train.pkl").write_bytes(pickle.dumps({"data": 1}))
    with pytest.raises(DataError, match="image_data"):
        load_mini_imagenet_pickle(tmp_path)
    with pytest.raises(DataError, match=r"mini-imagenet-cache-test\.pkl"):
        load_mini_imagenet_pickle(tmp_path, split="test")
