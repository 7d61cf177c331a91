"""The inner loop: S steps of an update rule on the support sets of a whole meta-batch.

Every parameter carries a leading task axis ``[T, ...]``. The base learner (a
:class:`~alfa.engine.functional.FunctionalModel`, or its closed-form fast path
:class:`~alfa.engine.fast.FastModel`) supplies each task's support loss and gradient for the whole
meta-batch at once. ``create_graph=True`` keeps second-order terms (MAML's Hessian-vector
products); ``create_graph=False`` is first order: the gradients enter the update as constants,
and the meta-gradient still flows through the weights, the rule and the generated
hyperparameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from alfa.engine.functional import FunctionalModel
from alfa.errors import DivergenceError
from alfa.rules.base import Hyperparameters, UpdateRule
from alfa.typing import Params

__all__ = ["LossFn", "inner_loop"]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""Per-task loss: predictions ``[T, B, ...]`` and targets ``[T, B, ...]`` -> losses ``[T]``."""


def _first_bad(name: str | None, what: str, step: int, tensor: Tensor) -> None:
    finite = torch.isfinite(tensor.detach()).flatten(1).all(1)
    if not bool(finite.all()):
        task = int((~finite).nonzero()[0, 0])
        where = f"layer '{name}'" if name is not None else "layer -"
        raise DivergenceError(
            f"non-finite {what} at inner step {step}, {where}, task {task}",
            what=what,
            step=step,
            layer=name,
            task=task,
        )


def inner_loop(
    model: FunctionalModel,
    rule: UpdateRule,
    params: Params,
    support_x: Tensor,
    support_y: Tensor,
    loss_fn: LossFn,
    steps: int,
    *,
    create_graph: bool,
    keep_graph: bool = True,
    check: bool = False,
    on_step: Callable[[int, Params], None] | None = None,
    recompute: bool = False,
) -> tuple[Params, list[Hyperparameters]]:
    """Adapt ``params`` (each ``[T, ...]``) to the support sets with ``steps`` rule updates.

    Args:
        create_graph: keep the graph of the inner gradients (second order).
        keep_graph: keep the graph from the result back to the initial parameters and the rule
            (needed for a meta-gradient). When False, the loop runs without a graph, which
            bounds memory at evaluation time.
        check: verify after every step that losses, gradients, generated hyperparameters and
            weights are finite, raising :class:`DivergenceError` naming step, layer and task.
        on_step: called with ``(step, params)`` after each update (multi-step loss, plots).
        recompute: keep only each step's input weights and rebuild the step's graph during
            the meta-backward (activation checkpointing): the memory of one inner step instead
            of all of them, for about one more forward pass of each step.

    Returns:
        The adapted parameters and the hyperparameters of every step.
    """
    names = rule.names

    def support_grads(p: Params) -> tuple[Tensor | None, Params]:
        return model.support_grads(p, support_x, support_y, loss_fn, create_graph, losses=check)

    # Without a meta-gradient nothing needs a graph: the rule runs under no_grad and the
    # gradients are taken from detached weights (bounded memory at evaluation time).
    context = contextlib.nullcontext() if keep_graph else torch.no_grad()
    history: list[Hyperparameters] = []
    with context:
        # L2F's task embedding keeps its graph in first order too (the official code always
        # differentiates through it).
        params = rule.init(
            params,
            lambda p: model.support_grads(p, support_x, support_y, loss_fn, keep_graph)[1],
        )
        for step in range(steps):

            def one_step(p: Params, step: int = step):
                losses, grads = support_grads(p)
                new, hyper = rule.update(step, p, grads)
                return new, hyper, losses, grads

            if recompute and keep_graph:
                # Keep only the step's inputs; its graph is rebuilt during the meta-backward.
                params, hyper, losses, grads = checkpoint(one_step, params, use_reentrant=False)
            else:
                params, hyper, losses, grads = one_step(params)
            if check and losses is not None:
                _first_bad(None, "support loss", step, losses.unsqueeze(1))
                for n in names:
                    _first_bad(n, "gradient", step, grads[n])
            if check:  # hyperparameters first: a non-finite one reaches every weight
                for k, n in enumerate(names):
                    _first_bad(n, "generated alpha", step, hyper.alpha[:, k : k + 1])
                    _first_bad(n, "generated beta", step, hyper.beta[:, k : k + 1])
                for n in names:
                    _first_bad(n, "weight", step, params[n])
            history.append(hyper)
            if on_step is not None:
                on_step(step, params)
    return params, history
