"""The benchmark workloads: a base learner, an ALFA meta-learner and one fixed meta-batch each.

Every workload is ALFA, second order, with the official generator initialisation (so the
generated hyperparameters differ from the post-multipliers and a wrong generator input, order
or detach changes the loss), Adam 1e-3 over the meta-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from alfa.config import RuleConfig
from alfa.engine.functional import FunctionalModel
from alfa.engine.meta_learner import MetaLearner
from alfa.models.conv4 import Conv4
from alfa.models.mlp import MLP
from alfa.models.resnet12 import ResNet12
from alfa.rules import build_rule
from alfa.tasks import SinusoidTasks
from alfa.typing import TaskBatch

__all__ = ["WORKLOADS", "Workload", "build"]


@dataclass(frozen=True)
class Workload:
    description: str
    tasks: int
    steps: int = 5
    ways: int = 5
    shots: int = 1
    query: int = 15
    channels: int = 3
    image_size: int = 84
    model: str = "conv4"
    filters: int = 48


WORKLOADS = {
    "sinusoid": Workload("mlp 40-40, K=10 support and 10 query points", 25, model="mlp"),
    "omniglot": Workload(
        "4-CONV 64 filters, 28x28x1, 20-way 1-shot, 5 query per class",
        8,
        ways=20,
        query=5,
        channels=1,
        image_size=28,
        filters=64,
    ),
    "mini-conv4": Workload(
        "4-CONV 48 filters, 84x84x3, 5-way 5-shot, 15 query per class", 2, shots=5
    ),
    "mini-resnet12": Workload(
        "ResNet12 64-128-256-512, 84x84x3, 5-way 5-shot, 15 query per class",
        2,
        shots=5,
        model="resnet12",
    ),
}


def _model(w: Workload) -> nn.Module:
    if w.model == "mlp":
        return MLP((40, 40))
    if w.model == "conv4":
        return Conv4(w.ways, in_channels=w.channels, filters=w.filters, image_size=w.image_size)
    return ResNet12(w.ways, in_channels=w.channels)


def _batch(w: Workload, tasks: int) -> TaskBatch:
    if w.model == "mlp":
        return SinusoidTasks("paper", 10, 10, seed=0).sample(tasks)
    g = torch.Generator().manual_seed(0)
    shape = (w.channels, w.image_size, w.image_size)

    def split(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(tasks, w.ways * per_class, *shape, generator=g)
        y = torch.arange(w.ways).repeat_interleave(per_class).expand(tasks, -1).contiguous()
        return x, y

    return TaskBatch(*split(w.shots), *split(w.query))


def build(
    name: str,
    *,
    tasks: int | None = None,
    engine: str = "auto",
    group: int | str | None = "auto",
    device: str = "cpu",
    **overrides: int,
) -> tuple[MetaLearner, TaskBatch, Workload]:
    """Our learner for workload ``name`` (seeded), its meta-batch and the workload;
    ``overrides`` replace fields of the workload (``image_size``, ``filters``: small shapes
    for tests)."""
    w = replace(WORKLOADS[name], **overrides)
    torch.manual_seed(0)
    model = _model(w)
    functional = FunctionalModel(model)
    shapes = [p.shape for p in functional.initial().values()]
    rule = build_rule(
        RuleConfig(name="alfa", generator_init="official"), functional.names, shapes, w.steps
    )
    task = "regression" if w.model == "mlp" else "classification"
    learner = MetaLearner(model, rule, task=task, steps=w.steps, engine=engine, group=group)  # type: ignore[arg-type]
    return learner.to(device), _batch(w, tasks or w.tasks).to(device), w
