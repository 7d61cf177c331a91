"""The cells of Table 8 (sinusoid regression): the paper's numbers, the rows, seeds and configs.

Every row is trained under one protocol and one outer optimiser and differs from the others only
in the inner-loop rule (:data:`RULES`):

- ``maml``: MAML, inner lr 0.01;
- ``learned_fixed``: meta-learned per-step, per-layer learning rates and weight-decay terms that
  do not depend on the task (Table 6's "fixed", alpha and beta): the baseline that isolates
  what ALFA's generated, task-adaptive values add;
- ``alfa_maml``: ALFA+MAML, the generator's last layer starting at weights 0 and bias 1
  (``rule.generator_init: unit``);
- ``alfa_maml_official``: ALFA+MAML with the official generator initialisation.

The protocol (:func:`controlled_config`): K support + K query points per training task,
meta-batch 25, 5 inner steps, inner lr 0.01, second order, Adam 1e-3 on the meta-gradient
clipped to global norm 1 (``meta.grad_clip: 1.0``, :data:`CLIP`, for every row; docs/stability.md
says how often it acts), 20,000 meta-iterations, the best of 10 validation checkpoints on 200
fixed validation tasks, tested on the same 600 fixed test tasks x 100 query points (seed 1234).

Ablations, 5-shot only: without the clip (``_noclip``, :data:`ABLATION`) and the generator
switches of docs/adaptivity.md (:data:`ADAPTIVITY`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from alfa.config import Config, config_from_dict
from alfa.errors import AlfaError

__all__ = [
    "ABLATION",
    "ADAPTIVITY",
    "CELLS",
    "CLIP",
    "DEFAULT_ITERATIONS",
    "LABELS",
    "MAIN",
    "PAPER_TABLE8",
    "RULES",
    "SEEDS",
    "cell_key",
    "controlled_config",
    "row_key",
    "shipped_config",
    "write_table8_configs",
]

# Paper Table 8 (MSE, 95% CI): (net, shots) -> {method: (mse, ci95)}
PAPER_TABLE8: dict[tuple[str, int], dict[str, tuple[float, float]]] = {
    ("40x2", 5): {"maml": (1.24, 0.21), "alfa_maml": (0.92, 0.19)},
    ("40x2", 10): {"maml": (0.75, 0.15), "alfa_maml": (0.62, 0.16)},
    ("40x2", 20): {"maml": (0.49, 0.11), "alfa_maml": (0.34, 0.07)},
    ("80x3", 5): {"maml": (0.84, 0.14), "alfa_maml": (0.70, 0.15)},
    ("80x3", 10): {"maml": (0.56, 0.09), "alfa_maml": (0.51, 0.10)},
    ("80x3", 20): {"maml": (0.33, 0.06), "alfa_maml": (0.25, 0.06)},
}
NETS = {"40x2": [40, 40], "80x3": [80, 80, 80]}
DEFAULT_ITERATIONS = 20000

CLIP = 1.0
"""The one stabilisation of every row: the meta-gradient's global norm is clipped."""

ALFA = {"name": "alfa", "lr": 0.01, "weight_decay": 0.0005, "generator": "paper"}
BOUNDED = {"generator_output": "bounded"}
LOG_SIGN = {"state_encoding": "log_sign"}
RMS = {"state_statistics": ["mean", "rms"]}
RULES: dict[str, dict[str, Any]] = {
    "maml": {"name": "maml", "lr": 0.01},
    "learned_fixed": {
        "name": "learned_fixed",
        "lr": 0.01,
        "weight_decay": 0.0005,
        "per_step": True,
        "per_layer": True,
        "learn_alpha": True,
        "learn_beta": True,
    },
    "alfa_maml": {**ALFA, "generator_init": "unit"},
    "alfa_maml_official": {**ALFA, "generator_init": "official"},
    # The generator switches of docs/adaptivity.md.
    "alfa_maml_bounded": {**ALFA, "generator_init": "unit", **BOUNDED},
    "alfa_maml_log_sign": {**ALFA, "generator_init": "unit", **LOG_SIGN},
    "alfa_maml_bounded_log_sign": {**ALFA, "generator_init": "unit", **BOUNDED, **LOG_SIGN},
    "alfa_maml_official_bounded": {**ALFA, "generator_init": "official", **BOUNDED},
    "alfa_maml_rms": {**ALFA, "generator_init": "unit", **RMS},
    "alfa_maml_rms_log_sign": {**ALFA, "generator_init": "unit", **RMS, **LOG_SIGN},
    "alfa_maml_rms_log_sign_bounded": {
        **ALFA,
        "generator_init": "unit",
        **RMS,
        **LOG_SIGN,
        **BOUNDED,
    },
}
MAIN = ("maml", "learned_fixed", "alfa_maml", "alfa_maml_official")
ABLATION = ("maml_noclip", "alfa_maml_noclip")
ADAPTIVITY = (
    "alfa_maml_bounded",
    "alfa_maml_log_sign",
    "alfa_maml_bounded_log_sign",
    "alfa_maml_official_bounded",
    "alfa_maml_rms",
    "alfa_maml_rms_log_sign",
    "alfa_maml_rms_log_sign_bounded",
)
SEEDS = (0, 1, 2)
LABELS = {
    "maml": "MAML",
    "learned_fixed": "learned fixed (per-step, per-layer alpha, beta)",
    "alfa_maml": "ALFA+MAML (unit generator init)",
    "alfa_maml_official": "ALFA+MAML (official generator init)",
    "maml_noclip": "MAML, no clip (ablation)",
    "alfa_maml_noclip": "ALFA+MAML (unit init), no clip (ablation)",
    "alfa_maml_bounded": "ALFA+MAML (unit init), generated multipliers bounded to (0, 2)",
    "alfa_maml_log_sign": "ALFA+MAML (unit init), log-magnitude and sign encoding of the state",
    "alfa_maml_bounded_log_sign": "ALFA+MAML (unit init), bounded and log-sign encoded",
    "alfa_maml_official_bounded": "ALFA+MAML (official init), bounded",
    "alfa_maml_rms": "ALFA+MAML (unit init), the state adds each layer's root mean square",
    "alfa_maml_rms_log_sign": "ALFA+MAML (unit init), root mean squares and log-sign encoding",
    "alfa_maml_rms_log_sign_bounded": "ALFA+MAML (unit init), all three generator switches",
}


def _cells() -> list[tuple[str, int, str, int]]:
    """(net, shots, method, seed) in the order they are run: the 5-shot cells of each network
    with their no-clip ablation, then the generator switches, then the 10- and 20-shot cells."""
    cells = []
    for net in NETS:
        cells += [(net, 5, m, s) for s in SEEDS for m in MAIN]
        cells += [(net, 5, m, s) for s in SEEDS for m in ABLATION]
    for net in NETS:
        cells += [(net, 5, m, s) for s in SEEDS for m in ADAPTIVITY]
    for net in NETS:
        for shots in (10, 20):
            cells += [(net, shots, m, s) for s in SEEDS for m in MAIN]
    return cells


CELLS = _cells()


def cell_key(net: str, shots: int, method: str, seed: int) -> str:
    """A cell's name, ``<net>-k<shots>-<method>-s<seed>``: its run folder and evidence folder."""
    return f"{net}-k{shots}-{method}-s{seed}"


def row_key(row: dict[str, Any]) -> str:
    """The :func:`cell_key` of a row of ``table8.json``."""
    return cell_key(row["net"], row["shots"], row["method"], row["seed"])


def controlled_config(
    net: str, shots: int, method: str, seed: int = 0, iterations: int = DEFAULT_ITERATIONS
) -> Config:
    """The config of one cell: Table 8's protocol, the row's rule, the shared clip, the seed."""
    rule = method.removesuffix("_noclip")
    if rule not in RULES or net not in NETS:
        raise AlfaError(
            f"unknown cell {net} {method!r}; the methods are {', '.join(LABELS)} and the "
            f"networks {', '.join(NETS)}"
        )
    return config_from_dict(
        {
            "seed": seed,
            "name": cell_key(net, shots, method, seed),
            "data": {"name": "sinusoid", "family": "paper", "shots": shots, "eval_query": 100},
            "model": {"name": "mlp", "hidden": NETS[net]},
            "rule": RULES[rule],
            "meta": {
                "steps": 5,
                "batch_size": 25,
                "lr": 0.001,
                "first_order": False,
                "grad_clip": 0.0 if method.endswith("_noclip") else CLIP,
            },
            "train": {
                "iterations": iterations,
                "log_every": 100,
                "val_every": max(1, iterations // 10),
                "val_tasks": 200,
                "checkpoint_every": max(1, iterations // 10),
                "threads": 1,
            },
            "eval": {"tasks": 600, "seed": 1234, "batch": 100},
        }
    )


def shipped_config(net: str, shots: int, method: str) -> Config:
    """A cell's config as ``configs/sinusoid`` ships it: seed 0, named without the seed (a run
    directory is named after it, whatever seed it is given)."""
    return replace(controlled_config(net, shots, method, 0), name=f"{net}-k{shots}-{method}")


def write_table8_configs(folder: Path) -> list[Path]:
    """Write ``configs/sinusoid``: the main rows of every Table 8 cell (seed 0), the 40x2 5-shot
    rows under short names, and the 5-shot ablations."""
    from alfa.config.writer import write_config

    tail = "\nKeys not listed keep the defaults of alfa.config. Whole table: alfa reproduce table8"
    main = ("maml", "learned_fixed", "alfa_maml")
    written = []
    for (net, shots), method in [(cell, m) for cell in PAPER_TABLE8 for m in main]:
        title = f"Table 8 cell: {LABELS[method]}, {shots}-shot sinusoid regression, MLP {net}"
        path = folder / f"{method}_k{shots}_{net}.yaml"
        written.append(write_config(path, shipped_config(net, shots, method), title + tail))
    for method in (*main, "alfa_maml_official", *ABLATION[1:], *ADAPTIVITY):
        title = f"{LABELS[method]}, 5-shot sinusoid regression, MLP 40x2 (Table 8)"
        path = folder / f"{method}.yaml"
        written.append(write_config(path, shipped_config("40x2", 5, method), title + tail))
    return written
