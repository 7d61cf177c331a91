"""Image preprocessing and the in-memory / lazy dataset containers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from alfa.data.dataset import LazyImageDataset, TensorImageDataset
from alfa.data.images import ArrayReader, BytesReader, FileReader, ImageSpec
from alfa.errors import DataError

MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_converts_to_the_requested_channels(writer, mode, channels):
    source = writer.image("I;16" if mode in ("I", "F") else mode, (31, 17))
    if mode in ("I", "F"):
        source = source.convert(mode)
    out = ImageSpec(size=12, channels=channels).to_array(source)
    assert out.shape == (channels, 12, 12)
    assert out.dtype == np.uint8


def test_sixteen_bit_grey_is_rescaled_not_clipped():
    image = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    out = ImageSpec(size=8, channels=1).to_array(image)
    assert 120 <= int(out.mean()) <= 136


def test_transparent_pixels_become_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    out = ImageSpec(size=4, channels=3).to_array(Image.fromarray(rgba, "RGBA"))
    assert (out == 255).all()


def test_invert_and_centre_crop():
    grey = np.zeros((20, 20), dtype=np.uint8)
    grey[5:15, 5:15] = 255
    spec = ImageSpec(size=10, channels=1, crop_scale=2.0, resample="nearest", invert=True)
    out = spec.to_array(Image.fromarray(grey))
    assert out.shape == (1, 10, 10)
    assert (out == 0).all()  # the crop keeps the white centre, inverted to 0


@pytest.mark.parametrize(
    "kwargs", [{"size": 0}, {"size": 8, "channels": 2}, {"size": 8, "resample": "cubic"}]
)
def test_bad_spec_raises(kwargs):
    with pytest.raises(DataError):
        ImageSpec(**kwargs)


def test_tensor_dataset_groups_rows_by_label():
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 2, 2).contiguous()
    labels = torch.tensor([1, 0, 1, -1, 0, 1])
    data = TensorImageDataset(["a", "b"], images, labels, source="mem")
    assert data.num_classes == 2
    assert data.images_per_class() == [2, 3]
    assert data.get(1, [0, 2])[:, 0, 0, 0].tolist() == [0, 5]
    both = data.gather([0, 1], [torch.tensor([1]), torch.tensor([1])])
    assert both[:, 0, 0, 0].tolist() == [4, 2]


def test_tensor_dataset_rejects_empty_class():
    images = torch.zeros(2, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(DataError, match="'b'"):
        TensorImageDataset(["a", "b"], images, torch.tensor([0, 0]))


def test_lazy_dataset_matches_its_in_memory_copy(writer):
    files = [str(writer.save(writer.image("RGB"), writer.root / f"x{i}.png")) for i in range(5)]
    lazy = LazyImageDataset(["p", "q"], [files[:2], files[2:]], FileReader(), ImageSpec(size=8))
    memory = lazy.to_memory()
    assert memory.images_per_class() == lazy.images_per_class() == [2, 3]
    for c in range(2):
        idx = list(range(lazy.images_per_class()[c]))
        assert torch.equal(lazy.get(c, idx), memory.get(c, idx))
    assert lazy.get(1, [2]).shape == (1, 3, 8, 8)


def test_select_classes_reorders_and_names_missing(writer):
    images = torch.zeros(3, 1, 2, 2, dtype=torch.uint8)
    data = TensorImageDataset(["a", "b", "c"], images, torch.tensor([0, 1, 2]))
    sub = data.select_classes(["c", "a"])
    assert sub.class_names == ["c", "a"]
    assert sub.images_per_class() == [1, 1]
    with pytest.raises(DataError, match="'zz'"):
        data.select_classes(["a", "zz"])


def test_array_reader_flips_bgr():
    bgr = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV order
    rgb = np.asarray(ArrayReader(bgr, "mem", bgr=True).open(0))
    assert rgb[0, 0].tolist() == [0, 0, 200]


def test_corrupt_bytes_raise_data_error_naming_the_source():
    reader = BytesReader([np.frombuffer(b"\x89PNG not really", dtype=np.uint8)], "blobs.pkl")
    with pytest.raises(DataError, match=r"blobs\.pkl\[0\]"):
        reader.open(0)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match=r"gone\.png"):
        FileReader().open(str(tmp_path / "gone.png"))
