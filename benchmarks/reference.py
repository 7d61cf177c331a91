"""The benchmarks' reference: an ALFA meta-iteration written the way the official code runs it.

A Python loop over the tasks of the meta-batch; per task and inner step, the support loss, one
``torch.autograd.grad`` without a graph for the generator's input (the layer-wise means of the
weights and gradients) and one with ``create_graph=True`` for the update
``theta <- (1 - beta) * theta - alpha * grad``. The base learner runs through
``torch.func.functional_call`` one task at a time (no ``vmap``), so convolutions are the plain
dense kernels. It shares no code with the engine: the generator and the per-step, per-layer
post-multipliers are plain tensors copied from an engine-built ALFA rule, so both compute the
same loss from the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ReferenceALFA"]


class ReferenceALFA(nn.Module):
    """The official scheme over any base learner; ``copy_from(learner)`` takes our values.

    Args:
        net: the base learner (its normalisation layers' parameters are shared, not adapted).
        adapted: the names of the adapted parameters, in the rule's order.
        steps: inner steps.
        task: ``"regression"`` (MSE) or ``"classification"`` (cross-entropy).
    """

    def __init__(self, net: nn.Module, adapted: tuple[str, ...], steps: int, task: str) -> None:
        super().__init__()
        self.net = net
        self.adapted = adapted
        n = len(adapted)
        self.generator = nn.Sequential(nn.Linear(2 * n, 2 * n), nn.ReLU(), nn.Linear(2 * n, 2 * n))
        self.alpha0 = nn.Parameter(torch.full((steps, n), 0.01))
        self.beta0 = nn.Parameter(torch.full((steps, n), 5e-6))
        self.steps = steps
        self.task = task

    @torch.no_grad()
    def copy_from(self, learner: nn.Module) -> None:
        """Take the base learner's and the ALFA rule's values from an engine-built learner."""
        self.net.load_state_dict(learner.model.state_dict())
        rule = learner.rule
        self.generator.load_state_dict(rule.generator.net.state_dict())
        self.alpha0.copy_(rule.alpha0.value.expand_as(self.alpha0))
        self.beta0.copy_(rule.beta0.value.expand_as(self.beta0))

    def _loss(self, out: Tensor, y: Tensor) -> Tensor:
        if self.task == "regression":
            return (out - y).pow(2).mean()
        return F.cross_entropy(out, y)

    def task_loss(self, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
        params = dict(self.net.named_parameters())
        shared = {k: v for k, v in params.items() if k not in self.adapted}
        weights = [params[k] for k in self.adapted]
        n = len(weights)

        def run(ws: list[Tensor], x: Tensor) -> Tensor:
            both = {**shared, **dict(zip(self.adapted, ws, strict=True))}
            return torch.func.functional_call(self.net, both, (x,))

        for step in range(self.steps):
            loss = self._loss(run(weights, sx), sy)
            plain = torch.autograd.grad(loss, weights, retain_graph=True)
            state = torch.cat(
                [torch.stack([w.mean() for w in weights]), torch.stack([g.mean() for g in plain])]
            )
            out = self.generator(state)
            alpha, beta = out[:n] * self.alpha0[step], out[n:] * self.beta0[step]
            grads = torch.autograd.grad(loss, weights, create_graph=True)
            weights = [
                (1 - beta[k]) * w - alpha[k] * g
                for k, (w, g) in enumerate(zip(weights, grads, strict=True))
            ]
        return self._loss(run(weights, qx), qy)

    def meta_loss(self, batch) -> Tensor:
        losses = [self.task_loss(*(t[i] for t in batch)) for i in range(batch.num_tasks)]
        return torch.stack(losses).mean()
