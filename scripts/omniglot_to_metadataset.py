"""Convert the minimal Omniglot background sets into Meta-Dataset's record format.

Usage (from the repository root)::

    PYTHONPATH=src python scripts/omniglot_to_metadataset.py \
        ../shared/data/omniglot/images_background_small1.zip \
        ../shared/data/omniglot/images_background_small2.zip \
        --out runs/metadataset/records/omniglot

Writes ``<out>/dataset_spec.json`` (a ``BiLevelDatasetSpecification``: alphabets are the
superclasses) and one ``<class_id>.tfrecords`` per character, each record a ``tf.train.Example``
with the character's PNG bytes as stored in the zip (``image``) and its class id (``label``).
The split is the alphabet split of ``configs/omniglot/splits`` (6 training alphabets, 2 test
alphabets, no validation alphabet); rotations are not classes (Meta-Dataset has none).
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

from alfa.data.example_proto import encode_example
from alfa.data.metadataset_spec import DatasetSpec, spec_to_json
from alfa.data.tfrecord import write_records

ROOT = Path(__file__).resolve().parent.parent
SPLITS = ROOT / "configs" / "omniglot" / "splits"


def _alphabets(list_file: Path) -> list[str]:
    return sorted({line.split("/")[0] for line in list_file.read_text().split() if line})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zips", nargs="+", help="Omniglot zip files (images_background_*)")
    parser.add_argument("--out", required=True, help="output folder of the source")
    args = parser.parse_args(argv)

    members: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for zip_path in args.zips:
        with zipfile.ZipFile(zip_path) as z:
            for name in z.namelist():
                parts = name.split("/")
                if len(parts) == 4 and parts[3].lower().endswith(".png"):
                    members.setdefault((parts[1], parts[2]), []).append((zip_path, name))
    train, test = _alphabets(SPLITS / "minimal_train.txt"), _alphabets(SPLITS / "minimal_test.txt")
    found = {a for a, _ in members}
    missing = sorted(set(train + test) - found)
    if missing:
        print(f"error: alphabet {missing[0]} is not in the given zip files", file=sys.stderr)
        return 2

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    counts: list[int] = []
    groups: list[list[int]] = []
    zips = {p: zipfile.ZipFile(p) for p in args.zips}
    try:
        for alphabet in train + test:
            group = []
            for character in sorted(c for a, c in members if a == alphabet):
                class_id = len(names)
                # The two minimal sets share alphabets (Greek, Latin): one copy of each file
                # name, the first zip given wins (as alfa.data.omniglot does).
                unique: dict[str, tuple[str, str]] = {}
                for z, n in members[(alphabet, character)]:
                    unique.setdefault(n.rsplit("/", 1)[1], (z, n))
                files = [unique[k] for k in sorted(unique)]
                records = [
                    encode_example({"image": [zips[z].read(n)], "label": [class_id]})
                    for z, n in files
                ]
                write_records(out / f"{class_id}.tfrecords", records)
                names.append(f"{alphabet}-{character}")
                counts.append(len(records))
                group.append(class_id)
            groups.append(group)
    finally:
        for z in zips.values():
            z.close()
    spec = DatasetSpec(
        name="omniglot",
        kind="bilevel",
        class_names=names,
        images_per_class=counts,
        splits={},
        superclasses={
            "TRAIN": groups[: len(train)],
            "VALID": [],
            "TEST": groups[len(train) :],
        },
        superclass_names=train + test,
    )
    (out / "dataset_spec.json").write_text(json.dumps(spec_to_json(spec, str(out)), indent=2))
    print(
        f"wrote {len(names)} classes ({sum(counts)} images) to {out}: "
        f"train {len(train)} alphabets / {sum(len(g) for g in groups[: len(train)])} classes, "
        f"test {len(test)} alphabets / {sum(len(g) for g in groups[len(train) :])} classes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
