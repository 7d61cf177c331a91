"""The rows, seeds and configs of the controlled Table 8 (see :mod:`alfa.controlled`)."""

from __future__ import annotations

from typing import Any

from alfa.config import Config, config_from_dict, config_to_dict
from alfa.errors import AlfaError
from alfa.reproduce import DEFAULT_ITERATIONS, table8_config

__all__ = [
    "ABLATION",
    "ADAPTIVITY",
    "CELLS",
    "CLIP",
    "LABELS",
    "MAIN",
    "RULES",
    "SEEDS",
    "cell_key",
    "controlled_config",
]

CLIP = 1.0
"""The one stabilisation of the controlled rows: the meta-gradient's global norm is clipped."""

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
    "alfa_maml": {"name": "alfa", "lr": 0.01, "weight_decay": 0.0005, "generator_init": "unit"},
    "alfa_maml_official": {
        "name": "alfa",
        "lr": 0.01,
        "weight_decay": 0.0005,
        "generator_init": "official",
    },
}
# The generator switches of docs/adaptivity.md, each on the unit-init ALFA+MAML row.
BOUNDED = {"generator_output": "bounded"}
LOG_SIGN = {"state_encoding": "log_sign"}
RULES["alfa_maml_bounded"] = {**RULES["alfa_maml"], **BOUNDED}
RULES["alfa_maml_log_sign"] = {**RULES["alfa_maml"], **LOG_SIGN}
RULES["alfa_maml_bounded_log_sign"] = {**RULES["alfa_maml"], **BOUNDED, **LOG_SIGN}
RULES["alfa_maml_official_bounded"] = {**RULES["alfa_maml_official"], **BOUNDED}
MAIN = ("maml", "learned_fixed", "alfa_maml", "alfa_maml_official")
ABLATION = ("maml_noclip", "alfa_maml_noclip")
ADAPTIVITY = (
    "alfa_maml_bounded",
    "alfa_maml_log_sign",
    "alfa_maml_bounded_log_sign",
    "alfa_maml_official_bounded",
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
}


def _cells() -> list[tuple[str, int, str, int]]:
    """(net, shots, method, seed) in the order they are run: 40x2 5-shot first, seed by seed,
    then its no-clip ablation, then 80x3 5-shot and its ablation; then the generator switches of
    docs/adaptivity.md on both networks."""
    cells = []
    for net in ("40x2", "80x3"):
        cells += [(net, 5, m, s) for s in SEEDS for m in MAIN]
        cells += [(net, 5, m, s) for s in SEEDS for m in ABLATION]
    for net in ("40x2", "80x3"):
        cells += [(net, 5, m, s) for s in SEEDS for m in ADAPTIVITY]
    return cells


CELLS = _cells()


def cell_key(net: str, shots: int, method: str, seed: int) -> str:
    return f"{net}-k{shots}-{method}-s{seed}"


def controlled_config(
    net: str, shots: int, method: str, seed: int, iterations: int = DEFAULT_ITERATIONS
) -> Config:
    """The config of one cell: Table 8's protocol, the row's rule, the shared clip, the seed."""
    body = config_to_dict(table8_config(net, shots, "maml", iterations))
    rule = method.removesuffix("_noclip")
    if rule not in RULES:
        raise AlfaError(f"unknown method {method!r}; the methods are {', '.join(LABELS)}")
    body["rule"].update(RULES[rule])
    body["meta"]["grad_clip"] = 0.0 if method.endswith("_noclip") else CLIP
    body["seed"] = seed
    body["name"] = cell_key(net, shots, method, seed)
    return config_from_dict(body)
