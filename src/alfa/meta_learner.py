"""The meta-learner: a base learner, an update rule, and the outer objective (Eq. 2 and Eq. 6).

The meta-parameters are the base learner's initialisation theta (unless it is a fixed random
initialisation) and the rule's own parameters (ALFA's generator phi and post-multipliers). For a
meta-batch the initialisation is broadcast to ``[T, ...]`` per-task copies, the inner loop adapts
them on the support sets, and the outer loss is the mean query loss after the last step (or the
mean over all steps with ``multi_step_loss``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from alfa.fast import fast_model
from alfa.functional import FunctionalModel
from alfa.inner_loop import inner_loop
from alfa.losses import cross_entropy, mse
from alfa.rules.base import Hyperparameters, UpdateRule
from alfa.typing import Params, TaskBatch

__all__ = ["MetaLearner", "MetaOutput"]


@dataclass
class MetaOutput:
    """Result of one meta-batch: the outer loss and per-task diagnostics."""

    loss: Tensor  # scalar outer loss (with graph when training)
    query_losses: Tensor  # [T]
    hyperparameters: list[Hyperparameters]  # one per inner step, each [T, N]
    outputs: Tensor  # [T, B, ...] query outputs (logits or predictions), detached


class MetaLearner(nn.Module):
    """Meta-learns an inner-loop update rule (and, with ``learn_init``, the initialisation).

    Args:
        model: any ``nn.Module`` base learner (parameters outside normalisation layers adapt).
        rule: the inner-loop update rule.
        task: ``"regression"`` (MSE) or ``"classification"`` (cross-entropy).
        steps: inner steps S.
        first_order: drop second-order terms of the meta-gradient.
        multi_step_loss: outer loss averaged over the query losses after every step.
        learn_init: MAML init (meta-learned) or a fixed initialisation (ALFA + random init),
            in which case the base learner's parameters are frozen.
        engine: ``"auto"`` (default) uses the closed-form fast path (:mod:`alfa.fast`) when the
            base learner is built from layers it knows and the generic ``vmap`` + autograd path
            otherwise; ``"fast"`` requires the fast path; ``"generic"`` always uses autograd.
            Both compute the same numbers (tested in float64).
        group: tasks per group on the fast path (``"auto"``, an int, or None for all at once).
        recompute: rebuild each inner step's graph during the meta-backward instead of keeping
            it (memory of one step instead of ``steps``, for one more pass over each step).
    """

    def __init__(
        self,
        model: nn.Module,
        rule: UpdateRule,
        *,
        task: Literal["regression", "classification"] = "regression",
        steps: int = 5,
        first_order: bool = False,
        multi_step_loss: bool = False,
        learn_init: bool = True,
        engine: Literal["auto", "fast", "generic"] = "auto",
        group: int | str | None = "auto",
        recompute: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.rule = rule
        if engine not in ("auto", "fast", "generic"):
            raise ValueError(f"engine must be 'auto', 'fast' or 'generic', got {engine!r}")
        fast = None if engine == "generic" else fast_model(model, group)
        if engine == "fast" and fast is None:
            raise ValueError(
                f"engine 'fast' does not know a layer of {type(model).__name__}; use 'auto'"
            )
        self.functional: FunctionalModel = fast if fast is not None else FunctionalModel(model)
        self.engine = "fast" if fast is not None else "generic"
        self.recompute = recompute
        if self.functional.names != rule.names:
            raise ValueError("the rule was built for other parameter names than the model's")
        self.task = task
        self.loss_fn = mse if task == "regression" else cross_entropy
        self.steps = steps
        self.first_order = first_order
        self.multi_step_loss = multi_step_loss
        self.learn_init = learn_init
        # Optional per-task head before the inner loop, (params, support_x, support_y) ->
        # params: Proto-MAML and variable ways (alfa.proto_head.HeadInit).
        self.head_init: Callable[[Params, Tensor, Tensor], Params] | None = None
        if not learn_init:
            for p in model.parameters():
                p.requires_grad_(False)

    def initial_params(self, tasks: int) -> Params:
        """Per-task copies ``[T, ...]`` of the initialisation, differentiable w.r.t. theta."""
        out = {}
        for name, p in self.functional.initial().items():
            t = p.unsqueeze(0).expand(tasks, *p.shape)
            out[name] = t if t.requires_grad else t.detach().requires_grad_(True)
        return out

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        first_order: bool | None = None,
        keep_graph: bool = True,
        check: bool = False,
        on_step=None,
    ) -> tuple[Params, list[Hyperparameters]]:
        """Adapt the initialisation to every task's support set (``[T, ...]`` tensors)."""
        first_order = self.first_order if first_order is None else first_order
        params = self.initial_params(support_x.shape[0])
        if self.head_init is not None:
            with torch.set_grad_enabled(keep_graph and torch.is_grad_enabled()):
                params = self.head_init(params, support_x, support_y)
        return inner_loop(
            self.functional,
            self.rule,
            params,
            support_x,
            support_y,
            self.loss_fn,
            self.steps if steps is None else steps,
            create_graph=not first_order and keep_graph,
            keep_graph=keep_graph,
            check=check,
            on_step=on_step,
            recompute=self.recompute,
        )

    def predict(self, params: Params, x: Tensor, support_x: Tensor | None = None) -> Tensor:
        """Outputs of the adapted learners; ``support_x`` feeds non-transductive BatchNorm."""
        return self.functional.apply(params, x, reference=support_x)

    def forward(
        self,
        batch: TaskBatch,
        *,
        steps: int | None = None,
        first_order: bool | None = None,
        keep_graph: bool = True,
        check: bool = False,
    ) -> MetaOutput:
        """Adapt on the support sets and score on the query sets (the outer objective)."""
        step_losses: list[Tensor] = []

        def query_loss(params: Params) -> Tensor:
            out = self.predict(params, batch.query_x, batch.support_x)
            return self.loss_fn(out, batch.query_y)

        on_step = None
        if self.multi_step_loss and keep_graph:

            def on_step(step: int, params: Params) -> None:
                step_losses.append(query_loss(params))

        params, hyper = self.adapt(
            batch.support_x,
            batch.support_y,
            steps=steps,
            first_order=first_order,
            keep_graph=keep_graph,
            check=check,
            on_step=on_step,
        )
        grad_ctx = torch.enable_grad() if keep_graph else torch.no_grad()
        with grad_ctx:
            out = self.predict(params, batch.query_x, batch.support_x)
            losses = self.loss_fn(out, batch.query_y)
        loss = torch.stack(step_losses).mean(0).mean() if step_losses else losses.mean()
        return MetaOutput(loss, losses.detach(), hyper, out.detach())
