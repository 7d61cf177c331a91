"""``detect_format`` on every layout and ``load_dataset`` options, splits and errors."""

from __future__ import annotations

import warnings

import pytest

from alfa.data import LOADERS, detect_format, load_dataset
from alfa.errors import DataError


@pytest.fixture
def layouts(writer):
    """Every supported layout written once, each in its own folder."""
    omni = writer.root / "omni"
    writer.omniglot("images_background", {"Greek": 2}, 2, base=omni, as_zip=True)
    return {
        "omniglot": omni,
        "mini_imagenet_csv": writer.mini_csv(classes=2, per_class=2),
        "mini_imagenet_folders": writer.mini_folders(classes=2, per_class=2).parent,
        "mini_imagenet_pickle": writer.mini_pickle(classes=2, per_class=2),
        "mini_imagenet_l2l": writer.mini_pickle(classes=2, per_class=2, l2l=True),
        "tiered_imagenet_png": writer.tiered(kind="png", classes=2, per_class=2)[0],
        "tiered_imagenet_npz": writer.tiered(kind="npz", classes=2, per_class=2, folder="npz")[0],
        "cub_json": writer.cub_json(classes=4, per_class=2, base=writer.root / "cub_json"),
        "cub_raw": writer.cub_raw(classes=4, per_class=2, base=writer.root / "cub_raw").parent,
        "folder": writer.folder({"x": 2, "y": 2}),
    }


def test_every_layout_is_detected(layouts):
    assert set(layouts) == set(LOADERS)
    for name, path in layouts.items():
        assert detect_format(path) == name, path


def test_every_layout_loads_through_load_dataset(layouts):
    for name, path in layouts.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = load_dataset(path, split="train" if name != "omniglot" else None)
        assert data.num_classes >= 2, name
        size = 28 if name == "omniglot" else 84
        assert data.get(0, [0, 1]).shape[-2:] == (size, size), name


def test_split_file_paths(layouts):
    pickle_dir = layouts["mini_imagenet_pickle"]
    assert detect_format(pickle_dir / "mini-imagenet-cache-val.pkl") == "mini_imagenet_pickle"
    data = load_dataset(pickle_dir / "mini-imagenet-cache-test.pkl", check_split="off")
    assert data.source.endswith("mini-imagenet-cache-test.pkl")
    tiered = layouts["tiered_imagenet_png"]
    assert detect_format(tiered / "val_labels.pkl") == "tiered_imagenet_png"
    assert load_dataset(tiered / "val_images_png.pkl").source.endswith("val_images_png.pkl")
    assert load_dataset(layouts["cub_json"] / "novel.json").source.endswith("novel.json")
    assert detect_format(layouts["omniglot"] / "images_background.zip") == "omniglot"


def test_options_image_size_and_class_list(layouts, tmp_path):
    folder = layouts["folder"]
    data = load_dataset(folder, image_size=32, channels=1)
    assert data.image_shape == (1, 32, 32)
    listing = tmp_path / "classes.txt"
    listing.write_text("y\n")
    assert load_dataset(folder, class_list=listing).class_names == ["y"]
    listing.write_text("y\nunknown_class\n")
    with pytest.raises(DataError, match="the first on line 2"):
        load_dataset(folder, class_list=listing)
    with pytest.raises(DataError, match="'colour'"):
        load_dataset(folder, colour=True)


def test_several_omniglot_roots_as_comma_string(writer):
    a = writer.omniglot("images_background_small1", {"Greek": 2}, 2)
    b = writer.omniglot("images_background_small2", {"Latin": 1}, 2)
    assert load_dataset(f"{a},{b}").num_classes == 3
    folder = writer.folder({"x": 2})
    with pytest.raises(DataError, match="different formats"):
        load_dataset([a, folder])


def test_errors_name_the_offending_value(tmp_path, layouts):
    with pytest.raises(DataError, match="missing_dir"):
        load_dataset(tmp_path / "missing_dir")
    with pytest.raises(DataError, match="missing_dir"):
        detect_format(tmp_path / "missing_dir")
    with pytest.raises(DataError, match="'imagenet21k'"):
        load_dataset(layouts["folder"], format="imagenet21k")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(DataError, match="empty_dir"):
        detect_format(empty)
    with pytest.raises(DataError, match="'holdout'"):
        load_dataset(layouts["mini_imagenet_pickle"], split="holdout")
    stray = tmp_path / "weights.bin"
    stray.write_bytes(b"")
    with pytest.raises(DataError, match=r"weights\.bin"):
        detect_format(stray)
