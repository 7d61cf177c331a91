"""Tiny float64 learners and task batches for exact checks of the meta-gradient."""

from __future__ import annotations

import torch

from alfa.config import RuleConfig
from alfa.engine.functional import FunctionalModel
from alfa.engine.meta_learner import MetaLearner
from alfa.models.mlp import MLP
from alfa.rules import build_rule
from alfa.tasks import SinusoidTasks
from alfa.typing import TaskBatch

TINY = [
    "train.iterations=20",
    "train.checkpoint_every=10",
    "train.log_every=5",
    "train.val_every=10",
    "train.val_tasks=10",
    "eval.batch=10",
    "eval.tasks=10",
    "meta.batch_size=2",
    "meta.steps=1",
    "model.hidden=[4]",
    "train.threads=1",
]
"""Overrides of a sinusoid run that trains, validates and checkpoints in about a second."""

RULE_CASES = {
    "maml": ({"name": "maml"}, "learned"),
    "learned_fixed": ({"name": "learned_fixed"}, "learned"),
    "alfa_unit": ({"name": "alfa"}, "learned"),
    "alfa_official": ({"name": "alfa", "generator_init": "official"}, "learned"),
    "alfa_three_layer": ({"name": "alfa", "generator_layers": 3}, "learned"),
    "alfa_random_init": (
        {"name": "alfa", "generator_init": "official", "per_element_decay": True},
        "random",
    ),
    "alfa_l2f": ({"name": "alfa", "l2f": True, "generator_init": "official"}, "learned"),
    "maml_l2f": ({"name": "maml", "l2f": True}, "learned"),
}


def make_learner(
    rule: dict | None = None,
    *,
    init: str = "learned",
    hidden: tuple[int, ...] = (4,),
    steps: int = 2,
    first_order: bool = False,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> MetaLearner:
    torch.manual_seed(seed)
    model = MLP(hidden)
    functional = FunctionalModel(model)
    shapes = [p.shape for p in functional.initial().values()]
    config = RuleConfig(**(rule or {"name": "alfa"}))
    built = build_rule(config, functional.names, shapes, steps)
    learner = MetaLearner(
        model, built, steps=steps, first_order=first_order, learn_init=init == "learned"
    )
    return learner.to(dtype)


def make_batch(tasks: int = 3, shots: int = 4, seed: int = 1, dtype=torch.float64) -> TaskBatch:
    batch = SinusoidTasks("paper", shots, shots, seed=seed).sample(tasks)
    return TaskBatch(*(t.to(dtype) for t in batch))
