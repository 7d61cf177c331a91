"""The paper's classification recipes (Tables 1, 2, 4, 5, 6 and 7) as configs.

Hyperparameters follow the official code and the paper (reference A.3): 84x84 images, 15 query
images per class, 5 inner steps (first order at evaluation), inner lr 0.01, weight decay 5e-4,
Adam 1e-3, 100 epochs x 500 iterations, meta-batch 2 for 5-shot and 4 for 1-shot, validation on
600 tasks after every epoch, 600 test tasks. 4-CONV has 48 filters; ResNet12 64-128-256-512.
BatchNorm runs in the official transductive mode. The configs name the dataset folder with a
placeholder path under ``data/``; point ``data.root`` at yours.

Tables 5-7 are ablations of ALFA on 4-CONV, 5-way 5-shot miniImageNet: the generator's input
(Table 5), alpha or beta alone, task-independent ("fixed", the ``learned_fixed`` rule) or
generated ("adaptive"), per step or per layer (Table 6), and the number of inner steps (Table 7).

Each Table 6 row differs from its neighbour in the one switch its name changes (a test builds
every pair and checks it): ``fixed`` -> ``adaptive`` adds the generator g_phi (``rule.name``);
``step`` -> ``layer`` moves both the meta-learned table and the generated values from one value
per step (shared by the layers) to one value per layer (held for every step)
(``rule.per_step``, ``rule.per_layer``); ``alpha`` -> ``beta`` swaps which hyperparameter is
learned (the other stays at its initial value: alpha 0.01, beta ``lr * weight_decay``);
``maml`` -> ``random`` swaps the initialisation (``meta.init``). No Table 6 row has the
per-element weight-decay tensor of the official random-init variant (``rule.per_element_decay``,
reference A.2): it is a learned regulariser, which would make every random-init row partly a
learned-beta row. The ALFA+random init recipe of Tables 1 and 2 has it, as the official code.

``configs/paper/*.yaml`` hold exactly these configs (a test checks it); write them again, with
the Table 8 configs of ``configs/sinusoid/``, by ``python -m alfa.paper.recipes configs``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from alfa.config import Config, config_from_dict
from alfa.config.writer import write_config

__all__ = ["PAPER_CELLS", "paper_config", "write_paper_configs"]

METHODS: dict[str, dict[str, Any]] = {
    "maml": {"rule": {"name": "maml"}, "meta": {"init": "learned"}},
    "alfa_maml": {"rule": {"name": "alfa", "generator": "paper"}, "meta": {"init": "learned"}},
    "alfa_random": {
        "rule": {"name": "alfa", "generator": "paper", "per_element_decay": True},
        "meta": {"init": "random"},
    },
    "maml_l2f": {"rule": {"name": "maml", "l2f": True}, "meta": {"init": "learned"}},
    "alfa_maml_l2f": {
        "rule": {"name": "alfa", "generator": "paper", "l2f": True},
        "meta": {"init": "learned"},
    },
}
ROOTS = {
    "mini_imagenet": "data/mini_imagenet",
    "tiered_imagenet": "data/tiered_imagenet",
    "cub": "data/CUB_200_2011",
}

# (table, train dataset, test dataset, backbone, ways, shots, method)
PAPER_CELLS: list[tuple[str, str, str, str, int, int, str]] = (
    [
        ("table1", data, data, backbone, 5, shots, method)
        for data in ("mini_imagenet", "tiered_imagenet")
        for backbone in ("conv4", "resnet12")
        for shots in (1, 5)
        for method in METHODS
    ]
    + [
        ("table2", "mini_imagenet", "cub", backbone, 5, 5, method)
        for backbone in ("conv4", "resnet12")
        for method in METHODS
    ]
    + [
        ("table4", "mini_imagenet", "mini_imagenet", "conv4", 20, shots, method)
        for shots in (1, 5)
        for method in ("maml", "alfa_maml")
    ]
)


def cell_name(
    table: str, data: str, test: str, backbone: str, ways: int, shots: int, method: str
) -> str:
    where = data if data == test else f"{data}_to_{test}"
    return f"{table}_{where}_{backbone}_{ways}way_{shots}shot_{method.replace('-', '_')}"


def _ablation(method: str) -> dict[str, Any]:
    """Rule and meta settings of a Table 5/6/7 method name (see :data:`ABLATIONS`)."""
    parts = method.split("-")
    if parts[0] == "input":  # Table 5: input-<weights|gradients|both>
        return {
            "rule": {"name": "alfa", "generator": "paper", "generator_input": parts[1]},
            "meta": {},
        }
    if parts[0] == "steps":  # Table 7: steps-<S>
        return {"rule": {"name": "alfa", "generator": "paper"}, "meta": {"steps": int(parts[1])}}
    # Table 6: <maml|random>-<alpha|beta>-<fixed|adaptive>-<step|layer>
    init, which, kind, layout = parts
    rule: dict[str, Any] = {
        "per_step": layout == "step",
        "per_layer": layout == "layer",
        "learn_alpha": which == "alpha",
        "learn_beta": which == "beta",
        "per_element_decay": False,
        "generate": [which],  # read by alfa only; the same in both columns
        "generator": "paper",
        "name": "learned_fixed" if kind == "fixed" else "alfa",
    }
    return {"rule": rule, "meta": {"init": "learned" if init == "maml" else "random"}}


ABLATIONS = (
    [f"input-{i}" for i in ("weights", "gradients", "both")]
    + [
        f"{init}-{which}-{kind}-{layout}"
        for init in ("maml", "random")
        for which in ("alpha", "beta")
        for kind in ("fixed", "adaptive")
        for layout in ("step", "layer")
    ]
    + [f"steps-{s}" for s in range(1, 6)]
)
ABLATION_TABLE = {"input": "table5", "steps": "table7"}
PAPER_CELLS += [
    (
        ABLATION_TABLE.get(m.split("-")[0], "table6"),
        "mini_imagenet",
        "mini_imagenet",
        "conv4",
        5,
        5,
        m,
    )
    for m in ABLATIONS
]


def paper_config(
    table: str, data: str, test: str, backbone: str, ways: int, shots: int, method: str
) -> Config:
    """The config of one classification cell of the paper."""
    spec = METHODS[method] if method in METHODS else _ablation(method)
    body: dict[str, Any] = {
        "seed": 0,
        "name": cell_name(table, data, test, backbone, ways, shots, method),
        "data": {
            "name": data,
            "root": ROOTS[data],
            "ways": ways,
            "shots": shots,
            "query": 15,
            "image_size": 84,
            "workers": 4,
        },
        "model": {"name": backbone, "filters": 48, "norm": "transductive"},
        "rule": {"lr": 0.01, "weight_decay": 0.0005, **spec["rule"]},
        "meta": {
            "steps": 5,
            "first_order": False,
            "batch_size": 2 if shots >= 5 else 4,
            "lr": 0.001,
            **spec["meta"],
        },
        "train": {
            "iterations": 50000,
            "log_every": 100,
            "val_every": 500,
            "val_tasks": 600,
            "checkpoint_every": 500,
            "keep_last": 2,
        },
        "eval": {"tasks": 600, "steps": 0, "batch": 20, "first_order": True},
    }
    if test != data:
        body["data"]["test_name"] = test
        body["data"]["test_root"] = ROOTS[test]
    return config_from_dict(body)


def write_paper_configs(folder: Path) -> list[Path]:
    """Write one YAML per cell of :data:`PAPER_CELLS` into ``folder``."""
    written = []
    for cell in PAPER_CELLS:
        config = paper_config(*cell)
        header = (
            f"Paper {cell[0]} cell: {config.name}\n"
            "Hyperparameters of the official code (docs: src/alfa/paper/recipes.py). Set "
            "data.root\n(and data.test_root for cross-domain) to your copy, e.g. "
            "data.root=/data/mini."
        )
        written.append(write_config(folder / f"{config.name}.yaml", config, header))
    return written


if __name__ == "__main__":
    from alfa.paper.table8_cells import write_table8_configs

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "configs")
    for written_path in write_paper_configs(root / "paper") + write_table8_configs(
        root / "sinusoid"
    ):
        print(written_path)
