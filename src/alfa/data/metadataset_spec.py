"""Meta-Dataset's ``dataset_spec.json``: the classes of a source, its splits and its structure.

Three kinds of specification exist (the ``__class__`` key):

* ``DatasetSpecification``: ``classes_per_split`` ``{"TRAIN": n, "VALID": n, "TEST": n}``; class
  ids are contiguous, the training classes first, then validation, then test.
* ``BiLevelDatasetSpecification`` (Omniglot): ``superclasses_per_split`` and
  ``classes_per_superclass``; superclasses (alphabets) are contiguous in split order and classes
  contiguous in superclass order.
* ``HierarchicalDatasetSpecification`` (ILSVRC-2012): ``split_subgraphs``, per split a list of
  WordNet nodes ``{"wn_id", "words", "children_ids", "parents_ids"}``; the leaves are the classes,
  and ``class_names`` maps class id -> WordNet id.

All kinds have ``name``, ``class_names`` (``{"id": name}``), ``images_per_class`` (``{"id": n}``;
the hierarchical spec may key it by split and WordNet id instead) and ``file_pattern``
(``"{}.tfrecords"``: the record file of class ``id``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alfa.errors import DataError
from alfa.limits import load_json, read_text

__all__ = ["SPEC_FILE", "SPLITS", "DatasetSpec", "load_spec", "spec_to_json"]

SPEC_FILE = "dataset_spec.json"
SPLITS = ("TRAIN", "VALID", "TEST")
_SPLIT_ALIASES = {"train": "TRAIN", "val": "VALID", "valid": "VALID", "test": "TEST"}


@dataclass
class DatasetSpec:
    """One Meta-Dataset source.

    Attributes:
        name: The source's name (``omniglot``, ``ilsvrc_2012``...).
        kind: ``flat``, ``bilevel`` or ``hierarchical``.
        class_names: Name of each class, indexed by class id.
        images_per_class: Number of records of each class.
        splits: ``TRAIN``/``VALID``/``TEST`` -> the class ids of that split, ascending.
        superclasses: Bi-level only: per split, the class ids of each superclass.
        superclass_names: Bi-level only: names of the superclasses (when the spec has them).
        graph: Hierarchical only: per split, node id -> children ids.
        file_pattern: Record file name of a class (``{}`` is the class id).
        path: The ``dataset_spec.json`` the spec was read from ("" when built in code).
    """

    name: str
    kind: str
    class_names: list[str]
    images_per_class: list[int]
    splits: dict[str, list[int]]
    superclasses: dict[str, list[list[int]]] = field(default_factory=dict)
    superclass_names: list[str] = field(default_factory=list)
    graph: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    file_pattern: str = "{}.tfrecords"
    path: str = ""  # the dataset_spec.json it was read from (for messages)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_classes(self, split: str) -> list[int]:
        """Class ids of a split (``train``/``val``/``test`` or ``TRAIN``/``VALID``/``TEST``)."""
        return self.splits[canonical_split(split)]

    def record_file(self, root: Path, class_id: int) -> Path:
        return root / self.file_pattern.format(class_id)


def canonical_split(split: str) -> str:
    """``train``/``val``/``valid``/``test`` (any case) -> ``TRAIN``/``VALID``/``TEST``."""
    key = _SPLIT_ALIASES.get(split.lower())
    if key is None:
        raise DataError(f"unknown split {split!r}; use train, val or test")
    return key


def _int_map(raw: Any, key: str, where: Path) -> dict[int, Any]:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: key {key!r} must be an object of id -> value")
    try:
        return {int(k): v for k, v in raw.items()}
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: key {key!r} has a non-integer id") from exc


def _counts(raw: Any, key: str, where: Path) -> list[int]:
    """Values of ``{split: n}`` in TRAIN/VALID/TEST order."""
    if not isinstance(raw, dict) or set(raw) - set(SPLITS):
        raise DataError(f"{where}: key {key!r} must map TRAIN, VALID and TEST to counts")
    values = [raw.get(s, 0) for s in SPLITS]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise DataError(f"{where}: key {key!r} must hold counts >= 0")
    return values


def _hierarchy(raw: Any, names: list[str], where: Path) -> tuple[dict, dict[str, list[int]]]:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: key 'split_subgraphs' must map splits to node lists")
    ids = {name: i for i, name in enumerate(names)}
    graph: dict[str, dict[str, list[str]]] = {}
    splits: dict[str, list[int]] = {}
    for split in SPLITS:
        nodes = raw.get(split, [])
        if not isinstance(nodes, list) or not all(_is_node(n) for n in nodes):
            raise DataError(
                f"{where}: key 'split_subgraphs' must hold, per split, a list of nodes "
                '{"wn_id": text, "children_ids": [text, ...]}'
            )
        children = {n["wn_id"]: list(n.get("children_ids", [])) for n in nodes}
        leaves = [n for n, c in children.items() if not c]
        missing = [n for n in leaves if n not in ids]
        if missing:
            raise DataError(f"{where}: leaf {missing[0]} of split {split} is not in class_names")
        graph[split] = children
        splits[split] = sorted(ids[n] for n in leaves)
    return graph, splits


def _is_node(node: Any) -> bool:
    if not isinstance(node, dict) or not isinstance(node.get("wn_id"), str):
        return False
    children = node.get("children_ids", [])
    return isinstance(children, list) and all(isinstance(c, str) for c in children)


def _file_pattern(raw: Any, where: Path) -> str:
    """The record file name pattern: text with one ``{}`` that names a file of the source
    folder itself (not a path into another folder)."""
    if not isinstance(raw, str):
        raise DataError(f"{where}: key 'file_pattern' must be text such as '{{}}.tfrecords'")
    try:
        first, second = raw.format(0), raw.format(1)
    except (IndexError, KeyError, ValueError, AttributeError):
        fields = raw.count("{")
        kind = "a sharded pattern, which alfa does not read" if fields > 1 else "not one {}"
        raise DataError(
            f"{where}: file_pattern {raw!r} is {kind}; use one {{}} for the class id, "
            "e.g. '{}.tfrecords'"
        ) from None
    if first == second:
        raise DataError(f"{where}: file_pattern {raw!r} has no {{}} for the class id")
    if Path(first).name != first or first in (".", ".."):
        raise DataError(
            f"{where}: file_pattern {raw!r} names a file outside the source folder; "
            "the record files must sit beside dataset_spec.json"
        )
    return raw


def _sizes(raw: Any, key: str, where: Path) -> dict[int, int]:
    sizes = _int_map(raw, key, where)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes.values()):
        raise DataError(f"{where}: key {key!r} must hold counts >= 0")
    return sizes


def load_spec(source: str | os.PathLike[str]) -> DatasetSpec:
    """Read and check ``<source>/dataset_spec.json``.

    The file is read within :data:`alfa.limits.MAX_TEXT_BYTES` and :data:`alfa.limits.MAX_DEPTH`,
    and every value is checked for its type before it is used.

    Raises:
        DataError: The file is missing, not JSON, of the wrong types, or inconsistent (ids not
            contiguous, split or superclass counts that do not add up to the classes, a
            ``file_pattern`` without one ``{}`` or naming a file outside the source folder).
    """
    where = Path(source) / SPEC_FILE
    if not where.exists():
        raise DataError(f"{where} not found (a Meta-Dataset source needs one)")
    raw = load_json(read_text(where, what="dataset specification"), str(where))
    if not isinstance(raw, dict):
        raise DataError(f"{where} must hold a JSON object")
    names_by_id = _int_map(raw.get("class_names"), "class_names", where)
    n = len(names_by_id)
    if sorted(names_by_id) != list(range(n)) or n == 0:
        raise DataError(f"{where}: class ids must be 0..N-1 without gaps")
    if not all(isinstance(v, str | int) for v in names_by_id.values()):
        raise DataError(f"{where}: key 'class_names' must map class ids to names (text)")
    names = [str(names_by_id[i]) for i in range(n)]
    counts_raw = raw.get("images_per_class")
    if isinstance(counts_raw, dict) and set(counts_raw) <= set(SPLITS) and counts_raw:
        if not all(isinstance(split, dict) for split in counts_raw.values()):
            raise DataError(
                f"{where}: key 'images_per_class' keyed by split must map each split to "
                "{WordNet id: count}"
            )
        by_name = {k: v for split in counts_raw.values() for k, v in split.items()}
        counts_by_id = {i: by_name.get(name) for i, name in enumerate(names)}
    else:
        counts_by_id = _int_map(counts_raw, "images_per_class", where)
    if sorted(counts_by_id) != list(range(n)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts_by_id.values()
    ):
        raise DataError(f"{where}: images_per_class must give a count for every class id")
    spec = DatasetSpec(
        name=str(raw.get("name", Path(source).name)),
        kind="flat",
        class_names=names,
        images_per_class=[counts_by_id[i] for i in range(n)],
        splits={},
        file_pattern=_file_pattern(raw.get("file_pattern", "{}.tfrecords"), where),
        path=str(where),
    )
    if "split_subgraphs" in raw:
        spec.kind = "hierarchical"
        spec.graph, spec.splits = _hierarchy(raw["split_subgraphs"], names, where)
    elif "superclasses_per_split" in raw:
        spec.kind = "bilevel"
        per_split = _counts(raw["superclasses_per_split"], "superclasses_per_split", where)
        sizes = _sizes(raw.get("classes_per_superclass"), "classes_per_superclass", where)
        if sorted(sizes) != list(range(sum(per_split))):
            raise DataError(
                f"{where}: classes_per_superclass must list superclasses 0..{sum(per_split) - 1}"
            )
        if sum(sizes.values()) != n:
            raise DataError(
                f"{where}: classes_per_superclass adds up to {sum(sizes.values())} classes, "
                f"class_names has {n}"
            )
        first_super, first_class = 0, 0
        for split, count in zip(SPLITS, per_split, strict=True):
            groups = []
            for s in range(first_super, first_super + count):
                groups.append(list(range(first_class, first_class + sizes[s])))
                first_class += sizes[s]
            first_super += count
            spec.superclasses[split] = groups
            spec.splits[split] = [c for g in groups for c in g]
        names_raw = raw.get("superclass_names")
        if isinstance(names_raw, dict):
            by_id = _int_map(names_raw, "superclass_names", where)
            spec.superclass_names = [str(by_id.get(i, i)) for i in range(sum(per_split))]
    else:
        per_split = _counts(raw.get("classes_per_split"), "classes_per_split", where)
        if sum(per_split) != n:
            raise DataError(
                f"{where}: classes_per_split adds up to {sum(per_split)} classes, "
                f"class_names has {n}"
            )
        start = 0
        for split, count in zip(SPLITS, per_split, strict=True):
            spec.splits[split] = list(range(start, start + count))
            start += count
    return spec


def spec_to_json(spec: DatasetSpec, path: str = "") -> dict[str, Any]:
    """The ``dataset_spec.json`` object of a flat or bi-level ``spec`` (Meta-Dataset's keys)."""
    out: dict[str, Any] = {"name": spec.name}
    if spec.kind == "bilevel":
        out["superclasses_per_split"] = {s: len(spec.superclasses[s]) for s in SPLITS}
        groups = [g for s in SPLITS for g in spec.superclasses[s]]
        out["classes_per_superclass"] = {str(i): len(g) for i, g in enumerate(groups)}
        out["superclass_names"] = {str(i): n for i, n in enumerate(spec.superclass_names)}
    elif spec.kind == "flat":
        out["classes_per_split"] = {s: len(spec.splits[s]) for s in SPLITS}
    else:
        raise ValueError("writing hierarchical specs is not supported")
    out["images_per_class"] = {str(i): n for i, n in enumerate(spec.images_per_class)}
    out["class_names"] = {str(i): n for i, n in enumerate(spec.class_names)}
    out["path"] = path
    out["file_pattern"] = spec.file_pattern
    out["__class__"] = (
        "BiLevelDatasetSpecification" if spec.kind == "bilevel" else "DatasetSpecification"
    )
    return out
