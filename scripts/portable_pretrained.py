"""Rewrite the metadata of the shipped pretrained models so that they hold no machine path.

For each ``src/alfa/resources/pretrained/omniglot-<N>way.safetensors`` the stored config's
``data.root`` becomes the one of its recipe, ``configs/omniglot/alfa_maml_<N>way_1shot.yaml``
(``${ALFA_DATA}/omniglot/...``, kept as written), and the class lists its config names
(``configs/omniglot/splits/minimal_all.txt`` to train, ``minimal_test.txt`` to test) are kept
in the file (``class_lists``), so that ``alfa eval --pretrained NAME`` needs only ``ALFA_DATA``.
The tensors are written unchanged; the script checks that they are bit-identical and prints
one line per file.

    python scripts/portable_pretrained.py
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from alfa.config import read_yaml
from alfa.runs.class_lists import config_class_lists
from alfa.runs.export import read_export, write_export
from alfa.runs.pretrained import pretrained_names, pretrained_path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    os.chdir(ROOT)  # the class lists of the configs are relative to the repository root
    for name in pretrained_names():
        path = pretrained_path(name)
        old = read_export(path)
        ways = old.config.data.ways
        recipe = read_yaml(ROOT / "configs" / "omniglot" / f"alfa_maml_{ways}way_1shot.yaml")
        data = dataclasses.replace(old.config.data, root=recipe["data"]["root"])
        config = dataclasses.replace(old.config, data=data)
        write_export(
            path,
            config,
            old.learner,
            iteration=old.iteration,
            checkpoint=old.metadata["checkpoint"],
            class_lists=config_class_lists(config),
        )
        new = read_export(path)
        before, after = old.learner.state_dict(), new.learner.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before), name
        lists = ", ".join(f"{k} {len(v)} classes" for k, v in new.class_lists.items())
        print(f"{path.name}: data.root {new.config.data.root}; class lists {lists}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
