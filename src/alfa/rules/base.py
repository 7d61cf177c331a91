"""The interface every inner-loop update rule implements, and the one update formula they share.

Every rule turns the learning state of a task at inner step ``j`` into a learning rate
``alpha`` and a weight-decay term ``beta`` per parameter tensor ("layer"), and the update is
always the paper's Eq. (3)/(4) in the form the official code uses::

    theta_{j+1} = (1 - beta_j * decay) * theta_j - alpha_j * grad_j

so Eq. (4)'s multiplier is ``1 - beta_j * decay``. ``decay`` is 1 except for ALFA with a random
initialisation, where it is a meta-learned per-element tensor (reference A.2). MAML is
``alpha = lr, beta = 0`` (Eq. 1).

Rules work on a whole meta-batch at once: every parameter and gradient tensor carries a leading
task axis ``T``; ``alpha`` and ``beta`` are ``[T, N]`` for the ``N`` adapted tensors. A rule is an
``nn.Module`` that holds its meta-parameters (so the outer optimiser and checkpoints see them)
and never mutates itself inside the inner loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from alfa.typing import Params

__all__ = ["Hyperparameters", "UpdateRule", "layer_means"]


class Hyperparameters(NamedTuple):
    """Hyperparameters of one inner step, per task and tensor: ``alpha``, ``beta``, ``[T, N]``."""

    alpha: Tensor
    beta: Tensor


def layer_means(tensors: Params, names: Sequence[str]) -> Tensor:
    """Layer-wise means (paper Sec. 3.3): one value per task and tensor, shape ``[T, N]``."""
    return torch.stack([tensors[n].flatten(1).mean(1) for n in names], dim=1)


class UpdateRule(nn.Module):
    """Base class: subclasses implement :meth:`hyperparameters` (and may override :meth:`init`).

    Args:
        names: the names of the adapted parameter tensors, in a fixed order (one "layer" each).
        shapes: their shapes (without the task axis).
        steps: the number of inner steps ``S`` the rule is meta-trained for.
    """

    name = "base"

    def __init__(self, names: Sequence[str], shapes: Sequence[torch.Size], steps: int) -> None:
        super().__init__()
        self.names = tuple(names)
        self.shapes = tuple(torch.Size(s) for s in shapes)
        self.steps = int(steps)

    @property
    def num_layers(self) -> int:
        return len(self.names)

    def init(self, params: Params, support_grads: Callable[[Params], Params]) -> Params:
        """Transform the initial parameters of each task before the first step (identity here).

        ``support_grads(params)`` returns the support-loss gradients at ``params``; L2F uses it.
        """
        return params

    def hyperparameters(self, step: int, params: Params, grads: Params) -> Hyperparameters:
        """The learning rate and weight-decay term of every task and tensor at ``step``."""
        raise NotImplementedError

    def decay(self, name: str) -> Tensor | None:
        """An optional per-element multiplier of ``beta`` for tensor ``name`` (None: 1)."""
        return None

    def update(self, step: int, params: Params, grads: Params) -> tuple[Params, Hyperparameters]:
        """One inner step, Eq. (4): ``theta <- (1 - beta * decay) * theta - alpha * grad``."""
        hyper = self.hyperparameters(step, params, grads)
        new: Params = dict(params)
        for k, name in enumerate(self.names):
            theta, grad = params[name], grads[name]
            view = (-1,) + (1,) * (theta.dim() - 1)
            alpha = hyper.alpha[:, k].reshape(view)
            beta = hyper.beta[:, k].reshape(view)
            decay = self.decay(name)
            if decay is not None:
                beta = beta * decay
            new[name] = theta - beta * theta - alpha * grad
        return new, hyper
