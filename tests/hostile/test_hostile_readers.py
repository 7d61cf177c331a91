"""Readers that let library exceptions through: damaged, encrypted and unknown zip members,
``data convert`` into a folder it cannot write or onto a full disk, ``dataset_spec.json``,
pickle caches and CUB split files of the wrong types, Meta-Dataset records of huge images.
Each is one line naming the file (a problem line of ``alfa data check``)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from crafted import (
    bomb_png,
    deflated,
    metadataset_source,
    omniglot_members,
    png,
    raw_zip,
)
from hostile_conftest import Case, check

from alfa.data.example_proto import encode_example
from alfa.data.tfrecord import write_records

BAD_MEMBERS: dict[str, dict[str, Any]] = {
    "damaged deflate stream": dict(data=b"\xff" * 64, method=8, size=200, crc=0),
    "encrypted member": dict(data=png(1), flags=1),
    "compression method 99": dict(data=png(1), method=99),
}
EXPECT = {
    "damaged deflate stream": "cannot be read",
    "encrypted member": "encrypted",
    "compression method 99": "compression",
}


def _bad_zip(path: Path, bad: dict[str, Any], alphabets: tuple[str, ...] | None = None) -> Path:
    members = omniglot_members(alphabets) if alphabets else omniglot_members()
    members[0] = {**members[0], **bad}
    return raw_zip(path, members)


def _check_zip(bad: dict[str, Any]):
    def build(folder: Path) -> dict[str, Any]:
        zip_path = _bad_zip(folder / "images_background.zip", bad, ("Greek", "Latin"))
        return {"argv": ["data", "check", str(zip_path)]}

    return build


def _train_zip(bad: dict[str, Any]):
    def build(folder: Path) -> dict[str, Any]:
        zip_path = _bad_zip(folder / "images_background.zip", bad, ("Greek", "Latin"))
        classes = [f"{a}/character0{c}" for a in ("Greek", "Latin") for c in (1, 2)]
        (folder / "train.txt").write_text("\n".join(classes) + "\n")
        return {
            "argv": [
                "train",
                "data.name=omniglot",
                f"data.root={zip_path}",
                f"data.split_file={folder / 'train.txt'}",
                "data.ways=2",
                "data.shots=1",
                "data.query=1",
                "data.image_size=16",
                "model.name=conv4",
                "model.filters=2",
                "meta.steps=1",
                "meta.batch_size=1",
                "train.iterations=1",
                "train.val_every=0",
                "train.threads=1",
                "--run-dir",
                str(folder / "run"),
                "--no-progress",
            ]
        }

    return build


def _convert_zip(bad: dict[str, Any]):
    def build(folder: Path) -> dict[str, Any]:
        zip_path = _bad_zip(folder / "images_background.zip", bad)
        return {"argv": ["data", "convert", "omniglot", str(zip_path), "--to", str(folder / "o")]}

    return build


def _convert_to(target: str, *, fsize: int | None = None):
    """``data convert`` of good zips into ``target`` (relative to a folder shared by the
    full-disk case and its re-run)."""

    def build(folder: Path) -> dict[str, Any]:
        shared = folder.parent / "convert"
        shared.mkdir(exist_ok=True)
        zip_path = shared / "images_background.zip"
        if not zip_path.exists():
            raw_zip(zip_path, omniglot_members())
        to = target if target.startswith("/") else str(shared / target)
        case: dict[str, Any] = {"argv": ["data", "convert", "omniglot", str(zip_path), "--to", to]}
        if fsize is not None:
            case["fsize"] = fsize
        return case

    return build


def _spec(**fields: Any):
    def build(folder: Path) -> dict[str, Any]:
        source = metadataset_source(folder / "records" / "crafted", b"")
        spec = json.loads((source / "dataset_spec.json").read_text())
        spec.update(fields)
        (source / "dataset_spec.json").write_text(json.dumps(spec))
        return {"argv": ["data", "check", str(folder / "records")]}

    return build


def _deep_spec(folder: Path) -> dict[str, Any]:
    source = metadataset_source(folder / "records" / "crafted", b"")
    depth = 100000
    (source / "dataset_spec.json").write_text('{"class_names": ' + "[" * depth + "]" * depth + "}")
    return {"argv": ["data", "check", str(folder / "records")]}


def _mini(image_data: Any, class_dict: Any):
    def build(folder: Path) -> dict[str, Any]:
        data = {"image_data": image_data, "class_dict": class_dict}
        (folder / "mini-imagenet-cache-train.pkl").write_bytes(pickle.dumps(data, protocol=2))
        return {"argv": ["data", "check", str(folder), "--format", "mini_imagenet_pickle"]}

    return build


_IMAGES = np.zeros((4, 8, 8, 3), np.uint8)


def _tiered(labels: Any, blobs: Any = None):
    def build(folder: Path) -> dict[str, Any]:
        (folder / "train_labels.pkl").write_bytes(pickle.dumps(labels, protocol=2))
        images = blobs if blobs is not None else [np.frombuffer(png(i), np.uint8) for i in range(4)]
        (folder / "train_images_png.pkl").write_bytes(pickle.dumps(images, protocol=2))
        return {"argv": ["data", "check", str(folder), "--format", "tiered_imagenet_png"]}

    return build


def _cub(text: str):
    def build(folder: Path) -> dict[str, Any]:
        (folder / "base.json").write_text(text)
        return {"argv": ["data", "check", str(folder), "--format", "cub_json"]}

    return build


def _record_image(image: bytes):
    def build(folder: Path) -> dict[str, Any]:
        source = metadataset_source(folder / "records" / "crafted", b"")
        write_records(source / "0.tfrecords", [encode_example({"image": [image], "label": [0]})])
        return {"argv": ["data", "check", str(folder / "records")]}

    return build


CASES: dict[str, Case] = {}
for _what, _bad in BAD_MEMBERS.items():
    CASES[f"data check: {_what}"] = Case(
        _check_zip(_bad), ("011_01.png", EXPECT[_what]), kind="report"
    )
    CASES[f"train: {_what}"] = Case(_train_zip(_bad), ("011_01.png", EXPECT[_what]))
    CASES[f"data convert: {_what}"] = Case(_convert_zip(_bad), ("011_01.png", EXPECT[_what]))
CASES |= {
    "data convert into a folder it cannot create": Case(
        _convert_to("/sys/alfa-convert"), ("/sys/alfa-convert",)
    ),
    "data convert onto a full disk": Case(
        _convert_to("out", fsize=300), ("out", "nothing was kept")
    ),
    "data convert again once there is room": Case(_convert_to("out"), ("wrote 16 classes",), "ok"),
    "data convert: a drawing of 100000x100000 pixels": Case(
        _convert_zip(dict(data=bomb_png(100000, 100000))), ("011_01.png", "too large")
    ),
    "data convert: a drawing that is not an image": Case(
        _convert_zip(dict(data=b"not an image")), ("011_01.png", "not a recognised image")
    ),
    "spec: images_per_class by split of numbers": Case(
        _spec(images_per_class={"TRAIN": 5}), ("dataset_spec.json", "images_per_class")
    ),
    "spec: split_subgraphs of numbers": Case(
        _spec(split_subgraphs={"TRAIN": [1, 2]}), ("dataset_spec.json", "split_subgraphs")
    ),
    "spec: classes_per_superclass of text": Case(
        _spec(
            superclasses_per_split={"TRAIN": 1, "VALID": 0, "TEST": 0},
            classes_per_superclass={"0": "x"},
        ),
        ("dataset_spec.json", "classes_per_superclass"),
    ),
    "spec: class_names of lists": Case(
        _spec(class_names={"0": [1]}), ("dataset_spec.json", "class_names")
    ),
    "spec: file_pattern {1}": Case(_spec(file_pattern="{1}"), ("dataset_spec.json", "{1}")),
    "spec: file_pattern {}_{} (sharded)": Case(
        _spec(file_pattern="{}_{}.tfrecords"), ("dataset_spec.json", "{}_{}.tfrecords")
    ),
    "spec: file_pattern {name}": Case(
        _spec(file_pattern="{name}.tfrecords"), ("dataset_spec.json", "{name}")
    ),
    "spec: file_pattern of a number": Case(
        _spec(file_pattern=7), ("dataset_spec.json", "file_pattern")
    ),
    "spec: nested 100000 deep": Case(_deep_spec, ("dataset_spec.json", "nested")),
    "miniImageNet: class_dict rows as strings": Case(
        _mini(_IMAGES, {"n01": ["a", "b"]}), ("mini-imagenet-cache-train.pkl", "n01")
    ),
    "miniImageNet: class_dict keys of mixed types": Case(
        _mini(_IMAGES, {"n01": [0, 1], 5: [2, 3]}), ("mini-imagenet-cache-train.pkl", "5")
    ),
    "miniImageNet: image_data of text": Case(
        _mini(np.full((4, 8, 8, 3), "x"), {"n01": [0, 1]}),
        ("mini-imagenet-cache-train.pkl", "image_data"),
    ),
    "miniImageNet: class_dict of a list": Case(
        _mini(_IMAGES, [1, 2]), ("mini-imagenet-cache-train.pkl", "class_dict")
    ),
    "tieredImageNet: label_specific of text": Case(
        _tiered({"label_specific": "abcd", "label_specific_str": ["a"]}),
        ("train_labels.pkl", "label_specific"),
    ),
    "tieredImageNet: label_specific of a dict": Case(
        _tiered({"label_specific": {"a": 1}, "label_specific_str": ["a"]}),
        ("train_labels.pkl", "label_specific"),
    ),
    "tieredImageNet: ragged labels": Case(
        _tiered({"labels": [[1], [2, 3], 4, 5]}), ("train_labels.pkl", "labels")
    ),
    "tieredImageNet: class names of numbers": Case(
        _tiered({"label_specific": [0, 0, 0, 0], "label_specific_str": 7}),
        ("train_labels.pkl", "label_specific_str"),
    ),
    "tieredImageNet: images of numbers": Case(
        _tiered({"label_specific": [0, 0, 0, 0], "label_specific_str": ["a"]}, [2**40] * 4),
        ("train_images_png.pkl", "not an encoded image"),
    ),
    "CUB: label_names of a number": Case(
        _cub('{"label_names": 5, "image_names": ["a.jpg"], "image_labels": [0]}'),
        ("base.json", "label_names"),
    ),
    "CUB: image_names of an object": Case(
        _cub('{"label_names": ["a"], "image_names": null, "image_labels": null}'),
        ("base.json", "image_names"),
    ),
    "CUB: nested 100000 deep": Case(
        _cub('{"label_names": ' + "[" * 100000 + "]" * 100000 + "}"), ("base.json", "nested")
    ),
    "Meta-Dataset record of 100000x100000 pixels": Case(
        _record_image(bomb_png(100000, 100000)), ("0.tfrecords", "too large"), kind="report"
    ),
    "Meta-Dataset record of 10000x9500 pixels": Case(
        _record_image(bomb_png(10000, 9500)), ("0.tfrecords", "too large"), kind="report"
    ),
    "Meta-Dataset record of 72 megapixels": Case(
        _record_image(bomb_png(9000, 8000)), ("0.tfrecords", "too large"), kind="report"
    ),
    "a record that is not an image": Case(
        _record_image(deflated(b"not an image")), ("0.tfrecords", "does not decode"), kind="report"
    ),
}
for _name in list(CASES):
    if _name.startswith(("spec:", "miniImageNet:", "tieredImageNet:", "CUB:")):
        CASES[_name].kind = "report"


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_readers(hostile, name):
    check(CASES[name], hostile[name])
