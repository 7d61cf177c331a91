"""The inner loop: S steps of an update rule on the support sets of a whole meta-batch.

Tasks are independent, so the gradient of the *sum* of the per-task support losses with respect
to the per-task parameter copies ``[T, ...]`` is exactly each task's own gradient: one
``torch.autograd.grad`` call per step serves the whole meta-batch, with the forward vectorised by
``vmap``. ``create_graph=True`` keeps second-order terms (MAML's Hessian-vector products);
``create_graph=False`` is first order: the gradients enter the update as constants, and the
meta-gradient still flows through the weights, the rule and the generated hyperparameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from alfa.errors import DivergenceError
from alfa.functional import FunctionalModel
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
) -> tuple[Params, list[Hyperparameters]]:
    """Adapt ``params`` (each ``[T, ...]``) to the support sets with ``steps`` rule updates.

    Args:
        create_graph: keep the graph of the inner gradients (second order).
        keep_graph: keep the graph from the result back to the initial parameters and the rule
            (needed for a meta-gradient). When False, parameters are detached after each step,
            which bounds memory at evaluation time.
        check: verify after every step that losses, gradients, generated hyperparameters and
            weights are finite, raising :class:`DivergenceError` naming step, layer and task.
        on_step: called with ``(step, params)`` after each update (multi-step loss, plots).

    Returns:
        The adapted parameters and the hyperparameters of every step.
    """
    names = rule.names

    def support_grads(p: Params, graph: bool) -> tuple[Tensor, Params]:
        losses = loss_fn(model.apply(p, support_x), support_y)
        grads = torch.autograd.grad(losses.sum(), [p[n] for n in names], create_graph=graph)
        return losses, dict(zip(names, grads, strict=True))

    def fresh(p: Params) -> Params:
        return {n: t.detach().requires_grad_(True) for n, t in p.items()}

    if not keep_graph:
        params = fresh(params)
    params = rule.init(params, lambda p: support_grads(p, create_graph)[1])
    history: list[Hyperparameters] = []
    for step in range(steps):
        losses, grads = support_grads(params, create_graph)
        if check:
            _first_bad(None, "support loss", step, losses.unsqueeze(1))
            for n in names:
                _first_bad(n, "gradient", step, grads[n])
        params, hyper = rule.update(step, params, grads)
        if check:
            for k, n in enumerate(names):
                _first_bad(n, "generated alpha", step, hyper.alpha[:, k : k + 1])
                _first_bad(n, "generated beta", step, hyper.beta[:, k : k + 1])
                _first_bad(n, "weight", step, params[n])
        history.append(hyper)
        if not keep_graph:
            params = fresh(params)
            history[-1] = Hyperparameters(hyper.alpha.detach(), hyper.beta.detach())
        if on_step is not None:
            on_step(step, params)
    return params, history
