"""``alfa train --dry-run``: what a run would be, without running it or touching the disk.

It prints the resolved config, the number of meta-parameters and the estimated peak memory
(:func:`alfa.runs.memory.estimate`), and the command refuses a run that cannot fit
(:func:`alfa.runs.memory.check_memory`).
No data is loaded: the base learner (:func:`alfa.models.build_model`) and the rule
(:func:`alfa.rules.build_rule`) are built on PyTorch's ``meta`` device, which holds shapes
only, so even a model far too large for the machine is counted without allocating it. An image
dataset's channels are assumed from its name (1 for Omniglot, else 3), as the data would say.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from alfa.config import Config

__all__ = ["MetaParameters", "count_meta_parameters", "dry_run_report"]


@dataclass(frozen=True)
class MetaParameters:
    """Parameter counts of a learner as :func:`alfa.runs.build.build_learner` builds it."""

    base: int  # parameters of the base learner (its initialisation)
    rule: int  # meta-learned parameters of the update rule
    learn_init: bool  # whether the initialisation is meta-learned (meta.init=learned)

    @property
    def total(self) -> int:
        """Meta-parameters: the rule's, and the base learner's when its init is learned."""
        return self.rule + (self.base if self.learn_init else 0)


def in_channels(config: Config) -> int:
    """Image channels the data would have: 1 for regression and Omniglot, 3 otherwise."""
    return 1 if config.data.name in ("sinusoid", "omniglot") else 3


def count_meta_parameters(config: Config) -> MetaParameters:
    """Count the base learner's and the rule's parameters, built on the ``meta`` device."""
    from alfa.runs.build import build_model_and_rule

    with torch.device("meta"):
        model, rule = build_model_and_rule(config, in_channels=in_channels(config))
    return MetaParameters(
        base=sum(p.numel() for p in model.parameters()),
        rule=sum(p.numel() for p in rule.parameters() if p.requires_grad),
        learn_init=config.meta.init == "learned",
    )


def _parts(parts: dict[str, int]) -> str:
    from alfa.runs.memory import _size

    return "; ".join(f"{key}: {_size(n)}" for key, n in parts.items())


def dry_run_report(config: Config, run_dir: Path | None) -> str:
    """The text ``alfa train --dry-run`` prints (the memory check is separate).

    Raises:
        ConfigError: ``train.device`` is cuda and no GPU is present.
    """
    from alfa.config.docs import config_yaml
    from alfa.runs.build import resolve_device
    from alfa.runs.memory import _size, device_memory, estimate, host_memory

    device = resolve_device(config.train.device)
    counts = count_meta_parameters(config)
    lines = [config_yaml(config).rstrip("\n"), ""]
    if run_dir is not None:
        lines.append(f"run directory: {run_dir} (not created: dry run)")
    if counts.learn_init:
        detail = f"base learner {counts.base:,} + rule {counts.rule:,}"
    else:
        detail = (
            f"the rule's; the base learner's {counts.base:,} are a fixed random "
            "initialisation (meta.init=random)"
        )
    lines.append(f"meta-parameters: {counts.total:,} ({detail})")
    on_device, on_host = estimate(config)
    if device.type != "cuda":
        on_host, on_device = {**on_device, **on_host}, {}
    for parts, limit, where in (
        (on_device, device_memory(device) if on_device else None, f"the {device.type} device"),
        (on_host, host_memory(), "this machine"),
    ):
        if not parts:
            continue
        total = sum(parts.values())
        available = f" of {_size(limit)}" if limit is not None else ""
        lines.append(
            f"estimated peak memory on {where}: at least {_size(total)}{available} "
            f"({_parts(parts)})"
        )
    return "\n".join(lines) + "\n"
