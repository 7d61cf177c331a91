"""Turn a :class:`~alfa.config.Config` into a meta-learner and its outer optimiser."""

from __future__ import annotations

import torch

from alfa.config import Config
from alfa.functional import FunctionalModel
from alfa.meta_learner import MetaLearner
from alfa.models import build_model
from alfa.rules import build_rule

__all__ = ["build_learner", "build_optimizer", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a clear error."""
    from alfa.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'train.device' is cuda but no CUDA device is available")
    return torch.device(name)


def build_learner(config: Config, *, task: str, in_channels: int) -> MetaLearner:
    """Model and rule, initialised from ``config.seed`` (the same seed gives the same learner)."""
    torch.manual_seed(config.seed)
    model = build_model(config, in_channels=in_channels)
    functional = FunctionalModel(model)
    shapes = [p.shape for p in functional.initial().values()]
    rule = build_rule(
        config.rule,
        functional.names,
        shapes,
        config.meta.steps,
        random_init=config.meta.init == "random",
    )
    return MetaLearner(
        model,
        rule,
        task=task,  # type: ignore[arg-type]
        steps=config.meta.steps,
        first_order=config.meta.first_order,
        multi_step_loss=config.meta.multi_step_loss,
        learn_init=config.meta.init == "learned",
    )


def build_optimizer(config: Config, learner: MetaLearner) -> torch.optim.Optimizer:
    """Adam over every meta-parameter that requires a gradient (reference A.3)."""
    params = [p for p in learner.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=config.meta.lr)
