"""The cells of the Omniglot protocol: rows, seeds and the one config every row shares.

The paper's three claims are tested on real images, the two official minimal Omniglot
background sets, under one protocol (:func:`protocol_config`); the rows differ only in the
inner-loop rule and the initialisation (:data:`RULES`):

- ``maml``: MAML, inner lr 0.1 (MAML's 20-way Omniglot value);
- ``learned_fixed``: meta-learned per-step, per-layer alpha and beta that do not depend on the
  task, the baseline that isolates what ALFA's generated values add (claim 3);
- ``alfa_maml``: ALFA+MAML, the paper's generator (raw layer-wise means, linear output) with
  the unit initialisation (claim 1);
- ``alfa_random``: ALFA on a fixed random initialisation with the official per-element decay
  (claim 2: "meta-learning the inner-loop optimisation is more beneficial than solely
  meta-learning the initialisation");
- ``alfa_maml_stable``: ALFA+MAML with the three generator switches that never diverged on
  sinusoid (docs/adaptivity.md): log-magnitude and sign encoding, each layer's root mean square
  beside its mean, generated multipliers bounded to (0, 2).

The protocol: meta-training on 5 of the 6 training alphabets of ``configs/omniglot/splits``
(179 characters), validation on the sixth (Greek: 24 characters), test on the 2 held-out
alphabets (Early_Aramaic and Tagalog: 39 characters); rotations by 90 degrees are extra classes
everywhere. 1-shot, 5 query images per class in training and 15 in validation and test. 4-CONV
with :data:`FILTERS` filters, :data:`STEPS` inner steps (the same at test time), inner lr 0.1,
second order; Adam 1e-3 on the meta-gradient clipped to global norm 1 for every row;
:data:`ITERATIONS` meta-iterations; validation on 200 fixed tasks every twelfth of the budget
selects the tested checkpoint; 600 fixed test episodes (seed 1234), the same for every row and
seed, so rows are compared paired over episodes.

A variant (:data:`VARIANTS`) changes one thing for every cell and is a table of its own, compared
cell by cell with the protocol's: the same seed draws the same tasks and initialisation, so a
difference is the variant's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alfa.config import Config, config_from_dict
from alfa.errors import AlfaError
from alfa.paper.result_table import read_table

__all__ = [
    "CELLS",
    "COMPARISONS",
    "FILTERS",
    "ITERATIONS",
    "LABELS",
    "METHODS",
    "ROW_KEYS",
    "RULES",
    "SEEDS",
    "STEPS",
    "VARIANTS",
    "WAYS",
    "cell_key",
    "check_variant",
    "last_validation",
    "parse_cell_key",
    "protocol_config",
    "read_protocol_table",
    "row_key",
    "table_name",
    "validation_interval",
]

WAYS = (20, 5)
"""20-way 1-shot first, then 5-way 1-shot."""

FILTERS = 32
"""Filters of every 4-CONV block. The Omniglot standard is 64; on this project's idle 2-core CPU
a 64-filter meta-iteration of 5 steps took 2.9 s at meta-batch 8 on one thread
(``benchmarks/speed.py --workload omniglot --threads 1``), about 2.5 hours per 20-way cell at
meta-batch 4, an estimated 90 CPU-hours for the 30 cells against about 35 with 32 filters (a
32-filter 20-way cell took 2 hours on one thread of the machine shared with a second cell and
other work), so the budget forces 32."""

STEPS = 5
"""Inner steps, in training and in testing: the standard number for Omniglot."""

ITERATIONS = {20: 6000, 5: 10000}
"""Meta-iterations per run: ten times the budget of ``results/omniglot_minimal.md``."""

BATCH = {20: 4, 5: 8}
"""Tasks per meta-batch (as ``configs/omniglot``)."""

CLIP = 1.0
"""The meta-gradient's global norm is clipped for every row alike."""

SEEDS = (0, 1, 2)

_ALFA = {
    "name": "alfa",
    "lr": 0.1,
    "weight_decay": 0.0005,
    "generator_init": "unit",
    "generator": "paper",
}
RULES: dict[str, dict[str, Any]] = {
    "maml": {"name": "maml", "lr": 0.1},
    "learned_fixed": {
        "name": "learned_fixed",
        "lr": 0.1,
        "weight_decay": 0.0005,
        "per_step": True,
        "per_layer": True,
        "learn_alpha": True,
        "learn_beta": True,
    },
    "alfa_maml": dict(_ALFA),
    "alfa_random": {**_ALFA, "per_element_decay": True},
    "alfa_maml_stable": {**_ALFA, "generator": "stable"},  # the three switches (stability.md)
}
INIT = {"alfa_random": "random"}
"""The rows whose initialisation is not meta-learned (the others learn it, as MAML does)."""

METHODS = tuple(RULES)
LABELS = {
    "maml": "MAML",
    "learned_fixed": "learned fixed (per-step, per-layer alpha, beta)",
    "alfa_maml": "ALFA+MAML",
    "alfa_random": "ALFA+random init",
    "alfa_maml_stable": "ALFA+MAML, stable generator (log-sign, rms, bounded)",
}

COMPARISONS = [
    ("alfa_maml", "maml"),  # claim 1
    ("alfa_random", "maml"),  # claim 2
    ("alfa_maml", "learned_fixed"),  # claim 3: adaptivity
    ("learned_fixed", "maml"),
    ("alfa_maml_stable", "alfa_maml"),  # the generator switches
    ("alfa_maml_stable", "learned_fixed"),
]
"""Pairs (a, b) whose per-episode accuracy differences a - b are reported."""

VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "jitter": {"data": {"jitter_degrees": 10.0, "jitter_shift": 0.1, "jitter_scale": 0.1}},
}
"""Config sections that a variant of the protocol sets for every cell. ``jitter``: each training
image turned by up to 10 degrees, moved by up to a tenth of the side on each axis and zoomed by
up to 10% (:mod:`alfa.data.augment`); validation and test images are never jittered. It answers
whether standard augmentation helps on validation, before the pretrained models use it."""

SPLITS = "configs/omniglot/splits"
ZIPS = ("images_background_small1.zip", "images_background_small2.zip")
DATA_ROOT = ",".join(f"${{ALFA_DATA}}/omniglot/{z}" for z in ZIPS)


def _cells() -> list[tuple[int, str, int]]:
    """(ways, method, seed) in the order they run: seed by seed, every row of a seed together,
    20-way before 5-way, so that a partial table already pairs every row."""
    return [(ways, m, s) for ways in WAYS for s in SEEDS for m in METHODS]


CELLS = _cells()


def cell_key(ways: int, method: str, seed: int) -> str:
    return f"{ways}way-{method}-s{seed}"


def row_key(row: dict[str, Any]) -> str:
    """The :func:`cell_key` of a row of an ``omniglot_protocol*.json``."""
    return cell_key(row["ways"], row["method"], row["seed"])


def parse_cell_key(key: str) -> tuple[int, str, int]:
    """The inverse of :func:`cell_key`.

    Raises:
        AlfaError: ``key`` is not a cell of the protocol.
    """
    for cell in CELLS:
        if cell_key(*cell) == key:
            return cell
    raise AlfaError(f"{key!r} is not a cell of the Omniglot protocol, e.g. {cell_key(*CELLS[0])}")


def check_variant(variant: str | None) -> None:
    """Raise :class:`AlfaError` unless ``variant`` is None (the protocol) or a key of
    :data:`VARIANTS`."""
    if variant is not None and variant not in VARIANTS:
        raise AlfaError(f"unknown variant {variant!r}; the variants are {', '.join(VARIANTS)}")


def table_name(variant: str | None = None) -> str:
    """The stem of a table's files and evidence folder: ``omniglot_protocol``, or
    ``omniglot_protocol_<variant>`` for a variant's."""
    return f"omniglot_protocol_{variant}" if variant else "omniglot_protocol"


ROW_KEYS: dict[str, tuple[type, ...]] = {
    "ways": (int,),
    "method": (str,),
    "seed": (int,),
    "accuracy": (int, float, type(None)),
    "ci95": (int, float, type(None)),
    "iterations": (int,),
}
"""What a row of an ``omniglot_protocol*.json`` must hold (and of which types) to be kept."""


def read_protocol_table(path: Path) -> dict[str, Any]:
    """An ``omniglot_protocol*.json`` (the protocol's or a variant's), its rows checked against
    :data:`ROW_KEYS` and :data:`CELLS` by :func:`~alfa.paper.result_table.read_table`; a table
    of no rows when the file does not exist.

    Raises:
        AlfaError: naming the file (and the row) when it cannot be read or does not hold the
            protocol's rows.
    """
    return read_table(
        path,
        row_keys=ROW_KEYS,
        score="accuracy",
        key=row_key,
        known={cell_key(*c) for c in CELLS},
    )


def validation_interval(iterations: int) -> int:
    """The validation and checkpoint interval of a cell of ``iterations`` meta-iterations: a
    twelfth of it (rounded down, so the last validation may come a few iterations before the
    end: at 9,996 of 10,000)."""
    return max(1, iterations // 12)


def last_validation(iterations: int) -> int:
    """The iteration of a cell's last validation, the last checkpoint that can be tested."""
    every = validation_interval(iterations)
    return iterations - iterations % every


def protocol_config(
    ways: int,
    method: str,
    seed: int = 0,
    iterations: int | None = None,
    tasks: int = 600,
    data: str | None = None,
    variant: str | None = None,
) -> Config:
    """The config of one cell: the protocol above, the row's rule and initialisation, the seed,
    and what ``variant`` (a key of :data:`VARIANTS`) changes.

    ``iterations`` (default :data:`ITERATIONS`) also sets the validation and checkpoint
    interval (a twelfth of it); ``tasks`` is the number of test episodes (and of validation
    tasks, up to 200); ``data`` names the
    folder of the two minimal zips (default ``${ALFA_DATA}/omniglot``, read when the config is
    used, so a shipped config holds no path of the machine that wrote it).

    Raises:
        AlfaError: an unknown method, number of ways or variant.
    """
    if method not in RULES or ways not in WAYS:
        raise AlfaError(
            f"unknown cell {ways}-way {method!r}; the methods are {', '.join(METHODS)} and the "
            f"ways {', '.join(map(str, WAYS))}"
        )
    check_variant(variant)
    changes = VARIANTS[variant] if variant else {}
    iterations = ITERATIONS[ways] if iterations is None else iterations
    root = DATA_ROOT if data is None else ",".join(f"{data}/{z}" for z in ZIPS)
    every = validation_interval(iterations)
    sections: dict[str, Any] = {
        "seed": seed,
        "name": cell_key(ways, method, seed) + (f"+{variant}" if variant else ""),
        "data": {
            "name": "omniglot",
            "root": root,
            "ways": ways,
            "shots": 1,
            "query": 5,
            "test_query": 15,
            "image_size": 28,
            "split_file": f"{SPLITS}/minimal_train_without_val.txt",
            "val_split_file": f"{SPLITS}/minimal_val.txt",
            "test_split_file": f"{SPLITS}/minimal_test.txt",
        },
        "model": {"name": "conv4", "filters": FILTERS},
        "rule": RULES[method],
        "meta": {
            "init": INIT.get(method, "learned"),
            "steps": STEPS,
            "batch_size": BATCH[ways],
            "lr": 0.001,
            "first_order": False,
            "grad_clip": CLIP,
        },
        "train": {
            "iterations": iterations,
            "log_every": max(1, min(100, iterations // 20)),
            "val_every": every,
            "val_tasks": min(200, tasks),
            "checkpoint_every": every,
            "threads": 1,
        },
        "eval": {"tasks": tasks, "seed": 1234, "batch": 50},
    }
    for section, values in changes.items():
        sections[section] = {**sections[section], **values}
    return config_from_dict(sections)
