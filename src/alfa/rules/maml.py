"""MAML's inner loop: plain SGD with a fixed learning rate (paper Eq. 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alfa.rules.base import Hyperparameters, UpdateRule
from alfa.typing import Params

__all__ = ["MAML"]


class MAML(UpdateRule):
    """``theta <- theta - lr * grad`` (Eq. 1), optionally with a fixed weight decay (Eq. 3).

    Args:
        lr: the inner learning rate alpha (0.01 in the paper).
        weight_decay: lambda of Eq. (3); ``beta = lr * weight_decay``. 0 gives Eq. (1).
    """

    name = "maml"

    def __init__(
        self,
        names: Sequence[str],
        shapes: Sequence[torch.Size],
        steps: int,
        *,
        lr: float = 0.01,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(names, shapes, steps)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)

    def hyperparameters(self, step: int, params: Params, grads: Params) -> Hyperparameters:
        ref = params[self.names[0]]
        shape = (ref.shape[0], self.num_layers)
        alpha = torch.full(shape, self.lr, dtype=ref.dtype, device=ref.device)
        beta = torch.full(shape, self.lr * self.weight_decay, dtype=ref.dtype, device=ref.device)
        return Hyperparameters(alpha, beta)
