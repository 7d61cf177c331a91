"""Meta-learned task-independent hyperparameters: the "fixed" column of the paper's Table 6.

A learning rate and a weight-decay term per step and/or per layer, learned in the outer loop but
the same for every task (a per-layer, per-step Meta-SGD; MAML++'s LSLR when beta is off).
With ``per_element_decay`` a meta-learned per-element tensor ``w`` multiplies beta, as in ALFA's
random-init variant (beta0 then starts at 1 and ``w`` at ``lr * weight_decay``), so the
"fixed" and "adaptive" rows of Table 6 can differ in the generator alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from alfa.rules.base import Hyperparameters, UpdateRule, per_element_decays
from alfa.rules.post_multipliers import StepLayerTable
from alfa.typing import Params

__all__ = ["LearnedFixed"]


class LearnedFixed(UpdateRule):
    """``theta <- (1 - beta0[j]) * theta - alpha0[j] * grad`` with meta-learned tables.

    Args:
        lr: initial alpha0 (0.01).
        weight_decay: beta0 starts at ``lr * weight_decay`` (reference A.2: 5e-6).
        per_step: whether the tables differ across steps (Table 6 rows).
        per_layer: whether they differ across layers.
        learn_alpha: whether the alpha table is meta-learned (else it stays at its initial value).
        learn_beta: whether the beta table is meta-learned.
        per_element_decay: a meta-learned per-element weight-decay tensor (see above).
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
        per_element_decay: bool = False,
    ) -> None:
        super().__init__(names, shapes, steps)
        layout = {"per_step": per_step, "per_layer": per_layer}
        self.alpha0 = StepLayerTable(steps, len(names), lr, learn=learn_alpha, **layout)
        beta_init = 1.0 if per_element_decay else lr * weight_decay
        self.beta0 = StepLayerTable(steps, len(names), beta_init, learn=learn_beta, **layout)
        self.per_element_decay = per_element_decay
        self.decays = per_element_decays(
            self.shapes if per_element_decay else (), lr * weight_decay
        )

    def hyperparameters(self, step: int, params: Params, grads: Params) -> Hyperparameters:
        tasks = params[self.names[0]].shape[0]
        alpha = self.alpha0(step).unsqueeze(0).expand(tasks, -1)
        beta = self.beta0(step).unsqueeze(0).expand(tasks, -1)
        return Hyperparameters(alpha, beta)

    def decay(self, name: str) -> Tensor | None:
        if not self.per_element_decay:
            return None
        return self.decays[str(self.names.index(name))]
