"""The paper's Table 3 recipes: Meta-Dataset, trained on ILSVRC-2012 only, one config per column.

The paper ran Table 3 "with the setup and hyperparameters provided by [the Meta-Dataset] source
code". The columns are fo-MAML, fo-MAML + ALFA, fo-Proto-MAML and fo-Proto-MAML + ALFA; each is
tested on the test split of every source (the rows, :data:`TABLE3_SOURCES`).

From Meta-Dataset's gin files (``meta_dataset/learn/gin/best/maml_imagenet.gin`` and
``maml_init_with_proto_imagenet.gin``, with the ``setups/`` and ``models/`` files they include):

- backbone ``resnet`` (ResNet-18, :mod:`alfa.models.resnet18`), images 126x126
  (``DataConfig.image_height``), the head's size ``logit_dim`` 50 (the most ways of an episode);
- first-order inner loop (``MAMLLearner.first_order``), batch-norm parameters not adapted
  (``adapt_batch_norm = False``), non-transductive batch norm (``LearnConfig.transductive_batch_
  norm = False``: ``model.norm: support``);
- fo-MAML: inner lr 0.09915203576061224, 10 inner steps, 5 more at evaluation
  (``additional_evaluation_update_steps``: ``eval.steps`` 15), a zero head before every episode
  (``zero_fc_layer = True``: ``meta.head_init: zero``), Adam lr 0.0003601303690709516;
- fo-Proto-MAML: inner lr 0.005435022808033229, 6 inner steps, none added at evaluation, the
  prototype head (``proto_maml_fc_layer_init``: ``meta.head_init: proto``), Adam lr
  0.00036339913514891586;
- one episode per outer step, 600 evaluation episodes per source, validation and checkpoints
  every 500 steps (``LearnConfig``), at most 1,000,000 outer steps (``num_updates``).

Not represented here (say so before comparing numbers): both gin files start the backbone from a
ResNet-18 pretrained on the ILSVRC training classes (``Trainer.checkpoint_to_restore``), which
``alfa`` does not ship; their outer learning-rate decay (``decay_every``/``decay_rate``) and the
outer L2 weight decay (``Learner.weight_decay``), which ``alfa`` has no key for. The gin values
are those of the repository's current files; the version the paper used may differ.

Assumed (the paper does not say): the ALFA columns keep every hyperparameter of their baseline
column and add the ALFA rule with its own defaults (initial weight decay ``rule.weight_decay``
5e-4, a 2-layer generator on weights and gradients); ``data.shots``/``data.query`` (10 and 10,
with 50 ways: Meta-Dataset's largest support set of 500 images and query set of 500) only size
the memory estimate, since Meta-Dataset episodes set their own ways and shots.

``configs/paper/table3_*.yaml`` hold exactly these configs (a test checks it); write them again
with ``python -m alfa.paper.metadataset_recipes configs``. They run with ``python -m
alfa.paper.metadataset_run`` on converted Meta-Dataset records (``data.root`` is the ILSVRC source;
evaluate another source with ``--eval-only data.root=...``). Not run here: there is no
ImageNet on this project's machines.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from alfa.config import Config, config_from_dict
from alfa.config.writer import write_config

__all__ = ["TABLE3", "TABLE3_COLUMNS", "TABLE3_SOURCES", "table3_config", "write_table3_configs"]

TABLE3_SOURCES: tuple[str, ...] = (
    "ILSVRC",
    "Omniglot",
    "Aircraft",
    "Birds",
    "Textures",
    "Quick Draw",
    "Fungi",
    "VGG Flower",
    "Traffic Signs",
    "MSCOCO",
)
"""The rows of Table 3: the test sources."""

TABLE3_COLUMNS: tuple[str, ...] = ("fomaml", "fomaml_alfa", "foprotomaml", "foprotomaml_alfa")
"""The columns: fo-MAML, fo-MAML + ALFA, fo-Proto-MAML, fo-Proto-MAML + ALFA."""

TABLE3: dict[str, tuple[tuple[float, float], ...]] = {
    "fomaml": (
        (45.51, 1.11),
        (55.55, 1.54),
        (56.24, 1.11),
        (63.61, 1.06),
        (68.04, 0.81),
        (43.96, 1.29),
        (32.10, 1.10),
        (81.74, 0.83),
        (50.93, 1.51),
        (35.30, 1.23),
    ),
    "fomaml_alfa": (
        (51.09, 1.17),
        (67.89, 1.43),
        (66.34, 1.17),
        (67.67, 1.06),
        (65.34, 0.95),
        (60.53, 1.13),
        (37.41, 1.00),
        (84.28, 0.97),
        (60.86, 1.43),
        (40.05, 1.14),
    ),
    "foprotomaml": (
        (49.53, 1.05),
        (63.37, 1.33),
        (55.95, 0.99),
        (68.66, 0.96),
        (66.49, 0.83),
        (51.52, 1.00),
        (39.96, 1.14),
        (87.15, 0.69),
        (48.83, 1.09),
        (43.74, 1.12),
    ),
    "foprotomaml_alfa": (
        (52.80, 1.11),
        (61.87, 1.51),
        (63.43, 1.10),
        (69.75, 1.05),
        (70.78, 0.88),
        (59.17, 1.16),
        (41.49, 1.17),
        (85.96, 0.77),
        (60.78, 1.29),
        (48.11, 1.14),
    ),
}
"""The paper's Table 3: per column, (accuracy %, +-) of each row of :data:`TABLE3_SOURCES`."""

# Meta-Dataset's best gin values for ILSVRC-only training (see the module docstring).
_BASELINES: dict[str, dict[str, Any]] = {
    "fomaml": {
        "rule_lr": 0.09915203576061224,
        "steps": 10,
        "eval_steps": 15,
        "head_init": "zero",
        "meta_lr": 0.0003601303690709516,
    },
    "foprotomaml": {
        "rule_lr": 0.005435022808033229,
        "steps": 6,
        "eval_steps": 0,  # as trained
        "head_init": "proto",
        "meta_lr": 0.00036339913514891586,
    },
}


def table3_config(column: str) -> Config:
    """The config of one column of Table 3 (a name of :data:`TABLE3_COLUMNS`)."""
    if column not in TABLE3_COLUMNS:
        raise ValueError(f"unknown Table 3 column {column!r}; one of {', '.join(TABLE3_COLUMNS)}")
    base = _BASELINES[column.removesuffix("_alfa")]
    body: dict[str, Any] = {
        "seed": 0,
        "name": f"table3_metadataset_ilsvrc_resnet18_{column}",
        "data": {
            "name": "metadataset",
            "root": "data/metadataset/ilsvrc_2012",
            "ways": 50,
            "shots": 10,
            "query": 10,
            "image_size": 126,
        },
        "model": {"name": "resnet18", "norm": "support"},
        "rule": {
            "name": "alfa" if column.endswith("_alfa") else "maml",
            "lr": base["rule_lr"],
            "generator": "paper",
        },
        "meta": {
            "init": "learned",
            "steps": base["steps"],
            "first_order": True,
            "batch_size": 1,
            "lr": base["meta_lr"],
            "head_init": base["head_init"],
        },
        "train": {
            "iterations": 1_000_000,
            "log_every": 100,
            "val_every": 500,
            "val_tasks": 600,
            "checkpoint_every": 500,
        },
        "eval": {"tasks": 600, "steps": base["eval_steps"], "batch": 1, "first_order": True},
    }
    return config_from_dict(body)


def write_table3_configs(folder: Path) -> list[Path]:
    """Write one YAML per column of Table 3 into ``folder``."""
    written = []
    for column in TABLE3_COLUMNS:
        config = table3_config(column)
        header = (
            f"Paper table3 column: {config.name} (not run: no ImageNet here)\n"
            "Meta-Dataset's hyperparameters (docs: src/alfa/paper/metadataset_recipes.py,\n"
            "docs/metadataset.md). Set data.root to your converted ILSVRC-2012 records."
        )
        written.append(write_config(folder / f"{config.name}.yaml", config, header))
    return written


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "configs")
    for written_path in write_table3_configs(root / "paper"):
        print(written_path)
