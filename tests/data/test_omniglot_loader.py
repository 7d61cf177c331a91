"""Omniglot: folders, zips, merged roots, rotations, Vinyals lists, the real minimal zips."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from alfa.data.check import check_dataset
from alfa.data.omniglot import load_omniglot
from alfa.errors import DataError


def test_folder_root_loads_characters_as_classes(writer):
    root = writer.omniglot("images_background", {"Greek": 3, "Latin": 2}, drawers=4)
    data = load_omniglot(root)
    assert data.class_names == [
        "Greek/character01",
        "Greek/character02",
        "Greek/character03",
        "Latin/character01",
        "Latin/character02",
    ]
    assert data.images_per_class() == [4] * 5
    assert data.image_shape == (1, 28, 28)
    images = data.get(0, [0, 1, 2, 3])
    assert images.dtype == torch.uint8 and images.shape == (4, 1, 28, 28)


def test_zip_and_folder_give_identical_pixels(writer, tmp_path):
    folder = writer.omniglot("images_background", {"Greek": 2}, drawers=3)
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    archive = shutil.make_archive(str(zipped / "images_background"), "zip", tmp_path, folder.name)
    a = load_omniglot(folder)
    b = load_omniglot(archive)
    assert a.class_names == b.class_names
    assert torch.equal(a.get(1, [0, 1, 2]), b.get(1, [0, 1, 2]))


def test_merged_roots_deduplicate_shared_characters(writer):
    base = writer.root / "omni"
    ids = {"Greek": 500}
    writer.omniglot(
        "images_background_small1",
        {"Greek": 2, "Korean": 3},
        4,
        as_zip=True,
        base=base,
        char_ids=ids,
    )
    writer.omniglot(
        "images_background_small2",
        {"Greek": 2, "Tagalog": 1},
        4,
        as_zip=True,
        base=base,
        char_ids=ids,
    )
    data = load_omniglot(base)
    assert data.num_classes == 2 + 3 + 1
    assert data.images_per_class() == [4] * 6  # the shared Greek images are not doubled
    assert data.class_names[:2] == ["Greek/character01", "Greek/character02"]


def test_folder_and_zip_of_the_same_root_are_not_doubled(writer):
    base = writer.root / "both"
    writer.omniglot("images_evaluation", {"Atlantean": 2}, 3, base=base)
    shutil.make_archive(str(base / "images_evaluation"), "zip", base, "images_evaluation")
    data = load_omniglot(base)
    assert data.num_classes == 2 and data.images_per_class() == [3, 3]


def test_background_and_evaluation_splits(writer):
    base = writer.root / "omni"
    writer.omniglot("images_background", {"Latin": 2}, 3, base=base)
    writer.omniglot("images_evaluation", {"Atlantean": 1}, 3, base=base, as_zip=True)
    assert load_omniglot(base).num_classes == 3
    assert load_omniglot(base, split="background").class_names[0].startswith("Latin/")
    assert load_omniglot(base, split="evaluation").class_names == ["Atlantean/character01"]
    with pytest.raises(DataError, match="Vinyals"):
        load_omniglot(base, split="train")


def test_rotations_are_extra_classes(writer):
    root = writer.omniglot("images_background", {"Greek": 2}, 3)
    plain = load_omniglot(root)
    rotated = load_omniglot(root, rotations=True)
    assert rotated.num_classes == 8
    assert rotated.class_names[:4] == [f"Greek/character01/rot{a:03d}" for a in (0, 90, 180, 270)]
    base = plain.get(0, [1])
    for k in range(4):
        assert torch.equal(rotated.get(k, [1]), torch.rot90(base, k, dims=(2, 3)))
    assert load_omniglot(root, rotations=[0, 180]).num_classes == 4


def test_vinyals_class_list(writer):
    root = writer.omniglot("images_background", {"Greek": 3}, 3)
    splits = writer.root / "splits" / "vinyals"
    splits.mkdir(parents=True)
    (splits / "train.txt").write_text("Greek/character02/rot090\nGreek/character01/rot000\n")
    data = load_omniglot(writer.root, split="train")
    assert data.class_names == ["Greek/character02/rot090", "Greek/character01/rot000"]
    direct = load_omniglot(root)
    assert torch.equal(data.get(0, [0]), torch.rot90(direct.get(1, [0]), 1, dims=(2, 3)))
    (splits / "bad.txt").write_text("Greek/character01/rot045\n")
    with pytest.raises(DataError, match=r"line 1 of .*bad\.txt is not a class line"):
        load_omniglot(root, class_list=splits / "bad.txt")
    (splits / "missing.txt").write_text("Greek/character09/rot000\n")
    with pytest.raises(DataError, match="the first on line 1"):
        load_omniglot(root, class_list=splits / "missing.txt")


def test_inversion_makes_strokes_bright(writer):
    root = writer.omniglot("images_background", {"Greek": 1}, 1)
    inverted = load_omniglot(root, image_size=105).get(0, [0]).numpy()
    raw = load_omniglot(root, image_size=105, invert=False).get(0, [0]).numpy()
    assert np.array_equal(inverted, 255 - raw)


def test_empty_character_folder_is_an_error(writer):
    root = writer.omniglot("images_background", {"Greek": 2}, 2)
    (root / "Greek" / "character03").mkdir()
    with pytest.raises(DataError, match="character03"):
        load_omniglot(root)
    report = check_dataset(root)
    assert any("character03" in p for p in report.problems)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_omniglot(tmp_path / "nowhere")


def test_real_minimal_zips(real_omniglot, real_omniglot_data):
    data = real_omniglot_data
    assert data.num_classes == 242  # 136 + 156 characters, 50 shared (Greek 24, Latin 26)
    assert set(data.images_per_class()) == {20}
    alphabets = {name.split("/")[0] for name in data.class_names}
    assert len(alphabets) == 8
    images = data.get(0, list(range(20)))
    assert images.shape == (20, 1, 28, 28)
    ink = images.float().mean() / 255
    assert 0.02 < float(ink) < 0.4  # inverted: mostly dark background, bright strokes
    merged = load_omniglot(
        [
            real_omniglot / "images_background_small1.zip",
            real_omniglot / "images_background_small2.zip",
        ],
        in_memory=False,
    )
    assert merged.class_names == data.class_names
    assert torch.equal(merged.get(100, [3, 7]), data.get(100, [3, 7]))
