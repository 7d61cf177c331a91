"""Inner-loop update rules, interchangeable: MAML, learned fixed hyperparameters, ALFA, L2F."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alfa.config import RuleConfig
from alfa.rules.alfa import ALFA
from alfa.rules.base import Hyperparameters, UpdateRule, layer_means
from alfa.rules.generator import HyperparameterGenerator
from alfa.rules.l2f import L2F
from alfa.rules.learned_fixed import LearnedFixed
from alfa.rules.maml import MAML
from alfa.rules.post_multipliers import StepLayerTable

__all__ = [
    "ALFA",
    "L2F",
    "MAML",
    "RULES",
    "HyperparameterGenerator",
    "Hyperparameters",
    "LearnedFixed",
    "StepLayerTable",
    "UpdateRule",
    "build_rule",
    "layer_means",
]

RULES: dict[str, type[UpdateRule]] = {"maml": MAML, "learned_fixed": LearnedFixed, "alfa": ALFA}


def build_rule(
    config: RuleConfig,
    names: Sequence[str],
    shapes: Sequence[torch.Size],
    steps: int,
) -> UpdateRule:
    """The rule a :class:`~alfa.config.RuleConfig` describes, for the given adapted tensors."""
    layout = {
        "per_step": config.per_step,
        "per_layer": config.per_layer,
        "learn_alpha": config.learn_alpha,
        "learn_beta": config.learn_beta,
    }
    rule: UpdateRule
    if config.name == "maml":
        rule = MAML(names, shapes, steps, lr=config.lr, weight_decay=0.0)
    elif config.name == "learned_fixed":
        rule = LearnedFixed(
            names,
            shapes,
            steps,
            lr=config.lr,
            weight_decay=config.weight_decay,
            per_element_decay=config.per_element_decay,
            **layout,
        )
    elif config.name == "alfa":
        clip = (float(config.clip[0]), float(config.clip[1])) if config.clip else None
        rule = ALFA(
            names,
            shapes,
            steps,
            lr=config.lr,
            weight_decay=config.weight_decay,
            generator_input=config.generator_input,
            generate=config.generate,
            generator_layers=config.generator_layers,
            generator_init=config.generator_init,
            clip=clip,
            per_element_decay=config.per_element_decay,
            detach_gradient_state=config.detach_gradient_state,
            **layout,
        )
    else:  # pragma: no cover - validated by the config schema
        raise ValueError(f"unknown rule {config.name!r}")
    return L2F(rule) if config.l2f else rule
