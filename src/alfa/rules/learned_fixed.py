"""Meta-learned task-independent hyperparameters: the "fixed" column of the paper's Table 6.

A learning rate and a weight-decay term per step and/or per layer, learned in the outer loop but
the same for every task (a per-layer, per-step Meta-SGD; MAML++'s LSLR when beta is off).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alfa.rules.base import Hyperparameters, UpdateRule
from alfa.rules.post_multipliers import StepLayerTable
from alfa.typing import Params

__all__ = ["LearnedFixed"]


class LearnedFixed(UpdateRule):
    """``theta <- (1 - beta0[j]) * theta - alpha0[j] * grad`` with meta-learned tables.

    Args:
        lr: initial alpha0 (0.01).
        weight_decay: beta0 starts at ``lr * weight_decay`` (reference A.2: 5e-6).
        per_step, per_layer: table layout (Table 6 rows).
        learn_alpha, learn_beta: which table is meta-learned; the other stays at its initial value.
    """

    name = "learned_fixed"

    def __init__(
        self,
        names: Sequence[str],
        shapes: Sequence[torch.Size],
        steps: int,
        *,
        lr: float = 0.01,
        weight_decay: float = 0.0005,
        per_step: bool = True,
        per_layer: bool = True,
        learn_alpha: bool = True,
        learn_beta: bool = True,
    ) -> None:
        super().__init__(names, shapes, steps)
        layout = {"per_step": per_step, "per_layer": per_layer}
        self.alpha0 = StepLayerTable(steps, len(names), lr, learn=learn_alpha, **layout)
        self.beta0 = StepLayerTable(
            steps, len(names), lr * weight_decay, learn=learn_beta, **layout
        )

    def hyperparameters(self, step: int, params: Params, grads: Params) -> Hyperparameters:
        tasks = params[self.names[0]].shape[0]
        alpha = self.alpha0(step).unsqueeze(0).expand(tasks, -1)
        beta = self.beta0(step).unsqueeze(0).expand(tasks, -1)
        return Hyperparameters(alpha, beta)
