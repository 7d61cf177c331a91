"""Sizes trusted from inside files: zip bombs, ``.npy`` headers, TFRecord lengths, pickles
that ask for terabytes and files of 64 GiB are refused from what they claim, before anything
that size is allocated or read (see ``alfa.limits``)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from crafted import (
    Reduce,
    crafted_pickle,
    folder_dataset,
    metadataset_source,
    npy_header,
    npz,
    png,
    raw_zip,
    sparse,
    tfrecord_frame,
    zeros_deflated,
)
from hostile_conftest import Case, check

from alfa.config import config_to_dict, load_config

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


def _omniglot_bomb(folder: Path) -> dict[str, Any]:
    """2 GiB of zeros in a 2 MiB Omniglot zip, beside two valid characters."""
    stream, crc = zeros_deflated(2048)
    members = [
        dict(name=f"images_background/Greek/character0{c}/0{c}0{i}_01.png", data=png(c * 10 + i))
        for c in (1, 2)
        for i in range(3)
    ]
    bomb = "images_background/Greek/character01/bomb.png"
    members.append(dict(name=bomb, data=stream, method=8, crc=crc, size=2048 * 2**20))
    raw_zip(folder / "images_background.zip", members)
    return {"argv": ["data", "check", str(folder / "images_background.zip")]}


def _labels(folder: Path, rows: int) -> None:
    data = {"label_specific": np.zeros(rows, np.int64), "label_specific_str": ["n01"]}
    (folder / "train_labels.pkl").write_bytes(pickle.dumps(data, protocol=2))


def _npz_case(shape: tuple[int, ...], held: int, *, compressed: bool):
    def build(folder: Path) -> dict[str, Any]:
        _labels(folder, shape[0])
        npz(folder / "train_images.npz", npy_header(shape) + bytes(held), compressed=compressed)
        return {"argv": ["data", "check", str(folder), "--format", "tiered_imagenet_npz"]}

    return build


def _records(length: int):
    def build(folder: Path) -> dict[str, Any]:
        metadataset_source(folder / "records" / "crafted", tfrecord_frame(length))
        return {"argv": ["data", "check", str(folder / "records")]}

    return build


def _mini_pickle(payload: Any):
    def build(folder: Path) -> dict[str, Any]:
        crafted_pickle(folder / "mini-imagenet-cache-train.pkl", payload)
        return {"argv": ["data", "check", str(folder), "--format", "mini_imagenet_pickle"]}

    return build


def _binbytes8(folder: Path) -> dict[str, Any]:
    head = b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc"
    (folder / "mini-imagenet-cache-train.pkl").write_bytes(head)
    return {"argv": ["data", "check", str(folder), "--format", "mini_imagenet_pickle"]}


def _sparse_image(folder: Path) -> dict[str, Any]:
    root = folder_dataset(folder / "data")
    sparse(root / "c0" / "huge.png")
    return {"argv": ["data", "check", str(root)]}


def _sparse_export(folder: Path) -> dict[str, Any]:
    sparse(folder / "model.safetensors")
    return {"argv": ["eval", str(folder / "model.safetensors")]}


def _sparse_checkpoint(folder: Path) -> dict[str, Any]:
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config_to_dict(load_config(None))))
    sparse(run / "checkpoints" / "step-0000010.pt")
    return {"argv": ["eval", str(run), "--checkpoint", "last"]}


CASES: dict[str, Case] = {
    "zip bomb in an Omniglot zip": Case(
        _omniglot_bomb, ("bomb.png", "zip bomb"), kind="report", keep=("images_background.zip",)
    ),
    "npy header claiming 10^7 images, stored": Case(
        _npz_case((10**7, 84, 84, 3), 100, compressed=False),
        ("train_images.npz", "(10000000, 84, 84, 3)"),
        kind="report",
    ),
    "npy header claiming 10^7 images, compressed": Case(
        _npz_case((10**7, 84, 84, 3), 100, compressed=True),
        ("train_images.npz", "(10000000, 84, 84, 3)"),
        kind="report",
    ),
    "stored npy claiming more rows than it holds": Case(
        _npz_case((20, 84, 84, 3), 10 * 84 * 84 * 3, compressed=False),
        ("train_images.npz", "(20, 84, 84, 3)", "truncated"),
        kind="report",
    ),
    "TFRecord length 2^40 with a valid checksum": Case(
        _records(2**40), ("0.tfrecords", "truncated", "at byte 0"), kind="report"
    ),
    "TFRecord length 2^64-8": Case(
        _records(2**64 - 8), ("0.tfrecords", "truncated", "at byte 0"), kind="report"
    ),
    "pickle calling bytearray(2**40)": Case(
        _mini_pickle(Reduce(bytearray, (2**40,))),
        ("mini-imagenet-cache-train.pkl", "bytearray(1099511627776)", "more than its size"),
        kind="report",
    ),
    "pickle calling bytes(10**12)": Case(
        _mini_pickle(Reduce(bytes, (10**12,))),
        ("mini-imagenet-cache-train.pkl", "bytes(1000000000000)"),
        kind="report",
    ),
    "pickle calling numpy.ndarray((2**40,))": Case(
        _mini_pickle(Reduce(np.ndarray, ((2**40,), np.dtype(np.uint8)))),
        ("mini-imagenet-cache-train.pkl", "numpy.ndarray", "more than its size"),
        kind="report",
    ),
    "pickle of an object array of 2**35 elements": Case(
        _mini_pickle(
            Reduce(
                _RECONSTRUCT,
                (np.ndarray, (0,), b"b"),
                (1, (2**35,), np.dtype(object), False, [1, 2]),
            )
        ),
        ("mini-imagenet-cache-train.pkl", "more than its size"),
        kind="report",
    ),
    "pickle opcode BINBYTES8 of 2**40 bytes": Case(
        _binbytes8, ("mini-imagenet-cache-train.pkl", "refusing to load"), kind="report"
    ),
    "image file of 64 GiB (sparse)": Case(
        _sparse_image, ("huge.png", "64.0 GiB", "larger"), kind="report"
    ),
    "export of 64 GiB (sparse)": Case(_sparse_export, ("model.safetensors", "64.0 GiB")),
    "checkpoint of 64 GiB (sparse)": Case(_sparse_checkpoint, ("step-0000010.pt", "64.0 GiB")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_sizes(hostile, name):
    check(CASES[name], hostile[name])
