"""Write Meta-Dataset sources for tests with code independent of alfa's own writer.

Records are framed by TensorBoard's ``RecordWriter`` (the TFRecord framing with its own CRC-32C)
and each ``tf.train.Example`` is serialised by the ``protobuf`` runtime from a message schema
built here field for field after ``tensorflow/core/example/{example,feature}.proto``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from PIL import Image
from tensorboard.summary.writer.record_writer import RecordWriter


def _example_class():
    fdp = descriptor_pb2.FileDescriptorProto()
    fdp.name = "alfa_test_example.proto"
    fdp.package = "alfatest"
    fdp.syntax = "proto3"
    F = descriptor_pb2.FieldDescriptorProto

    def message(name):
        m = fdp.message_type.add()
        m.name = name
        return m

    def field(m, name, number, kind, label=F.LABEL_OPTIONAL, type_name=None, oneof=None):
        f = m.field.add()
        f.name, f.number, f.type, f.label = name, number, kind, label
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof

    field(message("BytesList"), "value", 1, F.TYPE_BYTES, F.LABEL_REPEATED)
    field(message("FloatList"), "value", 1, F.TYPE_FLOAT, F.LABEL_REPEATED)
    field(message("Int64List"), "value", 1, F.TYPE_INT64, F.LABEL_REPEATED)
    feature = message("Feature")
    feature.oneof_decl.add().name = "kind"
    for i, kind in enumerate(("BytesList", "FloatList", "Int64List"), start=1):
        name = {"BytesList": "bytes_list", "FloatList": "float_list", "Int64List": "int64_list"}
        field(feature, name[kind], i, F.TYPE_MESSAGE, type_name=f".alfatest.{kind}", oneof=0)
    features = message("Features")
    entry = features.nested_type.add()
    entry.name = "FeatureEntry"
    entry.options.map_entry = True
    field(entry, "key", 1, F.TYPE_STRING)
    field(entry, "value", 2, F.TYPE_MESSAGE, type_name=".alfatest.Feature")
    field(
        features, "feature", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".alfatest.Features.FeatureEntry"
    )
    field(message("Example"), "features", 1, F.TYPE_MESSAGE, type_name=".alfatest.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("alfatest.Example"))


Example = _example_class()


def example_bytes(image: bytes, label: int) -> bytes:
    e = Example()
    e.features.feature["image"].bytes_list.value.append(image)
    e.features.feature["label"].int64_list.value.append(label)
    return e.SerializeToString()


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_record_file(path: Path, payloads: list[bytes]) -> None:
    with open(path, "wb") as f:
        writer = RecordWriter(f)
        for p in payloads:
            writer.write(p)


def write_source(
    root: Path,
    images_per_class: list[int],
    *,
    alphabets: dict[str, list[int]] | None = None,
    size: int = 6,
    seed: int = 0,
) -> dict[int, list[np.ndarray]]:
    """A flat source (classes split 60/20/20 %) or, with ``alphabets``
    (``{"TRAIN": [sizes], "VALID": [...], "TEST": [...]}``), a bi-level one; random RGB images."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays: dict[int, list[np.ndarray]] = {}
    for class_id, n in enumerate(images_per_class):
        arrays[class_id] = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
        write_record_file(
            root / f"{class_id}.tfrecords",
            [example_bytes(png(a), class_id) for a in arrays[class_id]],
        )
    n = len(images_per_class)
    spec: dict = {"name": "synthetic"}
    if alphabets is None:
        train, val = int(0.6 * n), int(0.2 * n)
        spec["classes_per_split"] = {"TRAIN": train, "VALID": val, "TEST": n - train - val}
        spec["__class__"] = "DatasetSpecification"
    else:
        sizes = [s for split in ("TRAIN", "VALID", "TEST") for s in alphabets[split]]
        assert sum(sizes) == n
        spec["superclasses_per_split"] = {k: len(v) for k, v in alphabets.items()}
        spec["classes_per_superclass"] = {str(i): s for i, s in enumerate(sizes)}
        spec["__class__"] = "BiLevelDatasetSpecification"
    spec["images_per_class"] = {str(i): c for i, c in enumerate(images_per_class)}
    spec["class_names"] = {str(i): f"class{i}" for i in range(n)}
    spec["path"] = str(root)
    spec["file_pattern"] = "{}.tfrecords"
    (root / "dataset_spec.json").write_text(json.dumps(spec))
    return arrays
