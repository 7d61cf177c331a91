"""Inner-loop update rules, interchangeable: MAML, learned fixed hyperparameters, ALFA, L2F."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch

from alfa.config import RuleConfig
from alfa.config.schema import GENERATOR_PRESETS
from alfa.errors import ArgumentError
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
    "make_rule",
    "rule_class",
    "rule_option_names",
    "rule_options",
]

RULES: dict[str, type[UpdateRule]] = {"maml": MAML, "learned_fixed": LearnedFixed, "alfa": ALFA}
"""The rules :func:`make_rule` builds by name (``l2f=True`` wraps any of them in :class:`L2F`)."""


def rule_class(rule: str | type[UpdateRule]) -> type[UpdateRule]:
    """The class of a rule given by name or class.

    Raises:
        ArgumentError: an unknown name, with the known ones.
    """
    if isinstance(rule, type) and issubclass(rule, UpdateRule) and rule is not L2F:
        return rule
    if isinstance(rule, str) and rule in RULES:
        return RULES[rule]
    if isinstance(rule, str) and rule == "l2f":
        raise ArgumentError("L2F wraps another rule: pass l2f=True with rule='alfa' or 'maml'")
    raise ArgumentError(
        f"unknown rule {rule!r}; choose one of {', '.join(RULES)}, an UpdateRule subclass or a "
        "built UpdateRule"
    )


def rule_option_names(rule: str | type[UpdateRule]) -> list[str] | None:
    """The keyword options a rule takes besides ``names``, ``shapes`` and ``steps`` (None when
    its constructor takes any ``**options``)."""
    params = list(inspect.signature(rule_class(rule).__init__).parameters.values())[4:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def make_rule(
    rule: str | type[UpdateRule],
    names: Sequence[str],
    shapes: Sequence[torch.Size],
    steps: int,
    *,
    l2f: bool = False,
    **options: Any,
) -> UpdateRule:
    """The rule ``rule`` (a name of :data:`RULES` or a class) for the given adapted tensors.

    Args:
        options: the rule's own keyword arguments (e.g. ALFA's ``lr``, ``generator_layers``);
            for ALFA also ``generator``, a preset of its three generator switches
            (:data:`~alfa.config.schema.GENERATOR_PRESETS`: ``"paper"`` or ``"stable"``) that
            the switches given beside it override.
        l2f: wrap the rule in :class:`L2F` (attenuation of the initialisation).

    Raises:
        ArgumentError: an unknown rule or option, naming the options the rule takes; an option
            that is NaN or infinite.
    """
    cls = rule_class(rule)
    if issubclass(cls, ALFA) and "generator" in options:
        preset = options.pop("generator")
        if preset not in GENERATOR_PRESETS:
            raise ArgumentError(
                f"generator={preset!r} is not a preset; choose {' or '.join(GENERATOR_PRESETS)}"
            )
        options = {**GENERATOR_PRESETS[preset], **options}
    allowed = rule_option_names(cls)
    unknown = [k for k in options if allowed is not None and k not in allowed]
    if unknown:
        raise ArgumentError(
            f"rule {cls.__name__} has no option {unknown[0]!r}; its options are "
            f"{', '.join(allowed or []) or 'none'}"
        )
    for key, value in options.items():  # lr=nan would train to NaN without a word
        numbers = value if isinstance(value, list | tuple) else [value]
        for number in numbers:
            if isinstance(number, float) and not math.isfinite(number):
                raise ArgumentError(f"rule option {key}={value!r} must be a finite number")
    built = cls(names, shapes, steps, **options)
    return L2F(built) if l2f else built


def rule_options(config: RuleConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`make_rule` that a :class:`~alfa.config.RuleConfig`
    describes."""
    layout = {
        "per_step": config.per_step,
        "per_layer": config.per_layer,
        "learn_alpha": config.learn_alpha,
        "learn_beta": config.learn_beta,
    }
    options: dict[str, Any]
    if config.name == "maml":
        options = {"lr": config.lr, "weight_decay": 0.0}
    elif config.name == "learned_fixed":
        options = {
            "lr": config.lr,
            "weight_decay": config.weight_decay,
            "per_element_decay": config.per_element_decay,
            **layout,
        }
    elif config.name == "alfa":
        clip = (float(config.clip[0]), float(config.clip[1])) if config.clip else None
        options = {
            "lr": config.lr,
            "weight_decay": config.weight_decay,
            "generator_input": config.generator_input,
            "state_statistics": tuple(config.state_statistics),
            "generate": config.generate,
            "generator_layers": config.generator_layers,
            "generator_init": config.generator_init,
            "clip": clip,
            "state_encoding": config.state_encoding,
            "generator_output": config.generator_output,
            "per_element_decay": config.per_element_decay,
            "detach_gradient_state": config.detach_gradient_state,
            **layout,
        }
    else:  # pragma: no cover - validated by the config schema
        raise ValueError(f"unknown rule {config.name!r}")
    return {"l2f": config.l2f, **options}


def build_rule(
    config: RuleConfig,
    names: Sequence[str],
    shapes: Sequence[torch.Size],
    steps: int,
) -> UpdateRule:
    """The rule a :class:`~alfa.config.RuleConfig` describes, for the given adapted tensors."""
    return make_rule(config.name, names, shapes, steps, **rule_options(config))
