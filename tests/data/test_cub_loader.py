"""CUB-200-2011: raw class folders with the CloserLook split rule, and CloserLook JSON files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from alfa.data.cub import cub_split_of, load_cub_json, load_cub_raw
from alfa.data.images import ImageSpec
from alfa.errors import DataError


def test_split_rule_sizes_on_200_classes():
    splits = [cub_split_of(i) for i in range(200)]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (100, 50, 50)


def test_raw_folder_split_rule(writer):
    root = writer.cub_raw(classes=8, per_class=3)
    names = {s: load_cub_raw(root, split=s).class_names for s in ("train", "val", "test")}
    assert [n[:3] for n in names["train"]] == ["001", "003", "005", "007"]  # i = 0, 2, 4, 6
    assert [n[:3] for n in names["val"]] == ["002", "006"]  # i = 1, 5
    assert [n[:3] for n in names["test"]] == ["004", "008"]  # i = 3, 7
    assert load_cub_raw(root.parent, split="novel").class_names == names["test"]


def test_eval_transform_resizes_then_centre_crops(writer):
    root = writer.cub_raw(classes=2, per_class=1)
    data = load_cub_raw(root, split="train", image_size=20)
    path = data.describe(0, 0)
    big = Image.open(path).convert("L").convert("RGB").resize((23, 23), Image.Resampling.BILINEAR)
    expected = np.asarray(big)[1:21, 1:21].transpose(2, 0, 1)  # first image of 001 is grey
    assert torch.equal(data.get(0, [0])[0], torch.from_numpy(expected.copy()))
    straight = load_cub_raw(root, split="train", image_size=20, crop_scale=1.0)
    assert straight.get(0, [0]).shape == (1, 3, 20, 20)
    assert ImageSpec(size=84, crop_scale=1.15).to_array(Image.open(path)).shape == (3, 84, 84)


def test_closerlook_json_with_stale_paths(writer):
    root = writer.cub_json(classes=8, per_class=3, stale=True)
    raw = load_cub_raw(root, split="val")
    data = load_cub_json(root, split="val")
    assert data.class_names == raw.class_names
    assert data.images_per_class() == raw.images_per_class()
    assert torch.equal(data.get(1, [0, 2]), raw.get(1, [0, 2]))


def test_json_with_real_paths_and_image_root(writer, tmp_path):
    root = writer.cub_json(classes=4, per_class=2, stale=False)
    assert load_cub_json(root / "base.json").num_classes == 2
    moved = tmp_path / "elsewhere"
    (root / "CUB_200_2011" / "images").rename(moved)
    with pytest.raises(DataError, match="image_root"):
        load_cub_json(root, split="train")
    assert load_cub_json(root, split="train", image_root=moved).num_classes == 2


def test_bad_json(writer):
    root = writer.cub_json(classes=4, per_class=2)
    (root / "novel.json").write_text("{not json")
    with pytest.raises(DataError, match=r"novel\.json"):
        load_cub_json(root, split="test")
    (root / "val.json").write_text(json.dumps({"label_names": []}))
    with pytest.raises(DataError, match="image_names"):
        load_cub_json(root, split="val")


def test_empty_class_folder(writer):
    root = writer.cub_raw(classes=4, per_class=2)
    (root / "images" / "005.Empty_Bird").mkdir()
    with pytest.raises(DataError, match=r"005\.Empty_Bird"):
        load_cub_raw(root, split="train")
