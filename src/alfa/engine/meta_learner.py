"""The meta-learner: a base learner, an update rule, and the outer objective (Eq. 2 and Eq. 6).

The meta-parameters are the base learner's initialisation theta (unless it is a fixed random
initialisation) and the rule's own parameters (ALFA's generator phi and post-multipliers). For a
meta-batch the initialisation is broadcast to ``[T, ...]`` per-task copies, the inner loop adapts
them on the support sets, and the outer loss is the mean query loss after the last step (or a
weighted sum over the steps with ``multi_step_loss``: :mod:`alfa.engine.multi_step`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from alfa.batch_checks import check_batch, check_labels, check_task, check_tensors
from alfa.config.schema import DEFAULT_RULE
from alfa.engine.base_learner import prepare_base_learner
from alfa.engine.fast import fast_model, unsupported
from alfa.engine.functional import FunctionalModel
from alfa.engine.inner_loop import LossFn, inner_loop
from alfa.engine.input_checks import check_model, probe
from alfa.engine.losses import cross_entropy, mse
from alfa.engine.multi_step import MultiStepLoss, step_loss_weights
from alfa.errors import ArgumentError, BatchError
from alfa.rules import make_rule
from alfa.rules.base import Hyperparameters, UpdateRule
from alfa.typing import Params, TaskBatch

__all__ = ["DEFAULT_STEPS", "MetaLearner", "MetaOutput"]


_log = logging.getLogger("alfa")

DEFAULT_STEPS = 5
"""Inner steps when neither ``steps`` nor a built rule gives them (the paper's S = 5)."""


def _check_steps(rule: object, steps: object, rule_options: dict[str, Any]) -> int:
    """The inner steps of a learner: ``steps``, or the built rule's; they must agree."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ArgumentError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(rule, UpdateRule):
        if rule_options:
            raise ArgumentError(
                f"rule options ({', '.join(rule_options)}) go with a rule name, not with a "
                "built rule: MetaLearner(model, rule='alfa', steps=5, lr=0.01)"
            )
        if steps is not None and steps != rule.steps:
            raise ArgumentError(
                f"the rule was built for {rule.steps} inner steps but steps={steps}; give the "
                f"steps once: MetaLearner(model, rule=<name>, steps={steps})"
            )
        return rule.steps
    return DEFAULT_STEPS if steps is None else steps


@dataclass
class MetaOutput:
    """Result of one meta-batch: the outer loss and per-task diagnostics."""

    loss: Tensor  # scalar outer loss (with graph when training)
    query_losses: Tensor  # [T]
    hyperparameters: list[Hyperparameters]  # one per inner step, each [T, N]
    outputs: Tensor  # [T, B, ...] query outputs (logits or predictions), detached


class MetaLearner(nn.Module):
    """Meta-learns an inner-loop update rule (and, with ``learn_init``, the initialisation).

    The one way to build a learner: a model, a rule by name and its options, the inner steps::

        learner = MetaLearner(model, rule="alfa", steps=5, lr=0.01)

    Args:
        model: any ``nn.Module`` base learner (parameters outside normalisation layers adapt).
            It is prepared in place by :func:`~alfa.engine.base_learner.prepare_base_learner`:
            ``nn.BatchNorm2d`` layers become per-task
            :class:`~alfa.models.batchnorm.MetaBatchNorm2d`, other normalisation layers drop
            their running statistics, and random layers draw per task; a module that cannot
            run once per task is refused, named.
        rule: the inner-loop update rule: a name of :data:`alfa.rules.RULES` (``"alfa"``,
            ``"maml"``, ``"learned_fixed"``; default ``"maml"``, as a config's ``rule.name``:
            :data:`alfa.config.schema.DEFAULT_RULE` says why) or an
            :class:`~alfa.rules.UpdateRule` subclass,
            built here for the model's adapted tensors with ``rule_options``; or a rule that is
            already built (then ``steps`` may be left out and ``rule_options`` must be empty).
        steps: inner steps S (default: the built rule's, else 5); given once, for both the
            rule's per-step tables and the inner loop.
        task: ``"regression"`` (MSE) or ``"classification"`` (cross-entropy); also what the
            input checks expect of the targets.
        loss_fn: a per-task loss ``(outputs [T, B, ...], targets [T, B, ...]) -> [T]`` that
            replaces the task's default one, in the inner and the outer loop.
        first_order: drop second-order terms of the meta-gradient.
        multi_step_loss: the query losses after every step enter the outer loss, averaged
            (True) or with the official annealed weights (``"annealed"``, over
            ``multi_step_epochs`` epochs of ``epoch_iterations``; :mod:`alfa.engine.multi_step`).
        learn_init: MAML init (meta-learned) or a fixed initialisation (ALFA + random init),
            in which case the base learner's parameters are frozen. The official random-init
            variant also meta-learns a per-element weight decay: pass
            ``per_element_decay=True`` (a rule option of ``alfa`` and ``learned_fixed``).
        engine: ``"auto"`` (default) uses the closed-form fast path (:mod:`alfa.engine.fast`)
            when the base learner is built from layers it knows and the generic ``vmap`` +
            autograd path otherwise; ``"fast"`` requires the fast path; ``"generic"`` always uses
            autograd. Both compute the same numbers (tested in float64). When the generic path
            is chosen, ``engine_reason`` says why (e.g. the first layer the fast path does
            not know, such as ``nn.Dropout``) and the ``alfa`` logger says so at level INFO
            (``logging.basicConfig(level=logging.INFO)`` shows it; ``alfa train`` prints it).
        group: tasks per group on the fast path (``"auto"``, an int, or None for all at once).
        recompute: rebuild each inner step's graph during the meta-backward instead of keeping
            it (memory of one step instead of ``steps``, for one more pass over each step).
        rule_options: keyword options of the rule (e.g. ``lr``, ``weight_decay``,
            ``generator_layers``, ``l2f=True``); see :func:`alfa.rules.make_rule`.

    Raises:
        ArgumentError: an unknown task, engine, rule or rule option; a step count that is not
            a positive integer or that differs from the built rule's.
        ModelError: a module of ``model`` cannot run once per task (named).
    """

    def __init__(
        self,
        model: nn.Module,
        rule: str | type[UpdateRule] | UpdateRule = DEFAULT_RULE,
        *,
        steps: int | None = None,
        task: Literal["regression", "classification"] = "regression",
        loss_fn: LossFn | None = None,
        first_order: bool = False,
        multi_step_loss: MultiStepLoss = False,
        multi_step_epochs: int = 15,
        epoch_iterations: int = 500,
        learn_init: bool = True,
        engine: Literal["auto", "fast", "generic"] = "auto",
        group: int | str | None = "auto",
        recompute: bool = False,
        **rule_options: Any,
    ) -> None:
        super().__init__()
        self.task = check_task(task)
        if loss_fn is not None and not callable(loss_fn):
            raise ArgumentError(f"loss_fn must be a function, got {type(loss_fn).__name__}")
        if engine not in ("auto", "fast", "generic"):
            raise ArgumentError(f"engine must be 'auto', 'fast' or 'generic', got {engine!r}")
        steps = _check_steps(rule, steps, rule_options)
        self.converted = prepare_base_learner(check_model(model))
        self.model = model
        fast = None if engine == "generic" else fast_model(model, group)
        if engine == "fast" and fast is None:
            raise ArgumentError(
                f"engine 'fast' does not know a layer of {type(model).__name__}; use 'auto'"
            )
        self.functional: FunctionalModel = fast if fast is not None else FunctionalModel(model)
        self.engine = "fast" if fast is not None else "generic"
        self.engine_reason: str | None = None
        """Why the generic engine runs the inner loop (None on the fast path)."""
        if fast is None:
            self.engine_reason = (
                "engine='generic' was asked for"
                if engine == "generic"
                else f"the fast path does not take this model: {unsupported(model)}"
            )
            _log.info("inner loop on the generic engine (vmap + autograd): %s", self.engine_reason)
        self.recompute = recompute
        if not isinstance(rule, UpdateRule):
            shapes = [p.shape for p in self.functional.initial().values()]
            rule = make_rule(rule, self.functional.names, shapes, steps, **rule_options)
        if self.functional.names != rule.names:
            raise ArgumentError(
                "the rule was built for other parameter names than the model's: "
                f"{list(rule.names)[:4]} vs {list(self.functional.names)[:4]}; build it with "
                "MetaLearner(model, rule=<name>, ...)"
            )
        self.rule = rule
        self.loss_fn: LossFn = loss_fn or (mse if task == "regression" else cross_entropy)
        self.custom_loss = loss_fn is not None
        self.steps = steps
        self.first_order = first_order
        self.multi_step_loss = multi_step_loss
        self.multi_step_epochs = multi_step_epochs
        self.epoch_iterations = epoch_iterations
        self.learn_init = learn_init
        self._output_shape: torch.Size | None = None
        # Optional per-task head before the inner loop, (params, support_x, support_y) ->
        # params: Proto-MAML and variable ways (alfa.engine.proto_head.HeadInit).
        self.head_init: Callable[[Params, Tensor, Tensor], Params] | None = None
        if not learn_init:
            for p in model.parameters():
                p.requires_grad_(False)

    def check_inputs(self, x: Tensor, y: Tensor, split: str = "support") -> None:
        """Check one set against the task and the model's outputs (probed once, on the first
        call, by running the base learner on one task: a module that cannot run once per task
        is refused there, before any meta-update).

        Raises:
            BatchError: see :func:`alfa.batch_checks.check_tensors`; inputs of another dtype
                or device than the model's, or that do not fit it (see
                :func:`alfa.engine.input_checks.probe`); targets that do not fit the model's
                outputs (a label out of range, a regression target of another shape).
            ModelError: a module of the base learner cannot run once per task (named), or the
                model does not return one tensor.
            ArgumentError: ``loss_fn`` does not return a tensor.
        """
        check_tensors(x, y, self.task, split=split)
        if self._output_shape is None:
            # the generic path: a failure names the module (or the input) whichever engine
            # runs later
            loss_fn = self.loss_fn if self.custom_loss else None
            self._output_shape = probe(self.model, x, y, split, loss_fn)
        if self.custom_loss:
            return
        out = tuple(self._output_shape)
        if self.task == "classification":
            if len(out) != 1:
                raise BatchError(
                    f"the model outputs shape {out} per example; classification needs one "
                    "logit per class, shape (classes,)"
                )
            check_labels(y, out[0], split=split)
        elif out != tuple(y.shape[2:]):
            raise BatchError(
                f"the model outputs shape {out} per example but {split}_y has "
                f"{tuple(y.shape[2:])}; make them agree (or pass loss_fn=)"
            )

    def initial_params(self, tasks: int) -> Params:
        """Per-task copies ``[T, ...]`` of the initialisation, differentiable w.r.t. theta.

        A fixed initialisation (``learn_init=False``) becomes a leaf that requires a gradient
        on the generic path, whose autograd inner loop differentiates with respect to it. The
        fast path computes the inner gradients in closed form and needs no such leaf: there
        the copies stay plain tensors, and a compiled meta-iteration (``train.compile``) has
        no ``requires_grad_`` inside it (which ``torch.compile`` cannot trace: a graph break).
        """
        out = {}
        leaf = self.engine != "fast"
        for name, p in self.functional.initial().items():
            t = p.unsqueeze(0).expand(tasks, *p.shape)
            out[name] = t if t.requires_grad or not leaf else t.detach().requires_grad_(True)
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
        """Adapt the initialisation to every task's support set (``[T, ...]`` tensors).

        Raises:
            BatchError: the support set is not what the task and the model expect (see
                :meth:`check_inputs`).
        """
        self.check_inputs(support_x, support_y)
        return self._adapt(
            support_x,
            support_y,
            steps=steps,
            first_order=first_order,
            keep_graph=keep_graph,
            check=check,
            on_step=on_step,
        )

    def _adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None,
        first_order: bool | None,
        keep_graph: bool,
        check: bool,
        on_step,
    ) -> tuple[Params, list[Hyperparameters]]:
        bad = isinstance(steps, bool) or not isinstance(steps, int) or steps < 0
        if steps is not None and bad:
            raise ArgumentError(f"steps must be a non-negative integer, got {steps!r}")
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
        iteration: int = 1,
        validate: bool = True,
    ) -> MetaOutput:
        """Adapt on the support sets and score on the query sets (the outer objective).

        ``iteration`` (1-based meta-iteration) sets the annealed multi-step weights.
        ``validate=False`` skips the batch checks (the label-range check reads the labels on the
        host); the training loop passes it for the batches its own samplers draw.

        Raises:
            BatchError: the batch is not what the task and the model expect (see
                :func:`alfa.batch_checks.check_batch` and :meth:`check_inputs`).
            ArgumentError: ``loss_fn`` does not return one loss per task.
        """
        if not isinstance(batch, TaskBatch):
            raise BatchError(
                f"a meta-batch must be an alfa.TaskBatch(support_x, support_y, query_x, "
                f"query_y), got {type(batch).__name__}"
            )
        if validate:
            check_batch(batch, self.task)
            self.check_inputs(batch.support_x, batch.support_y, "support")
            self.check_inputs(batch.query_x, batch.query_y, "query")
        step_losses: list[Tensor] = []
        weights = step_loss_weights(
            self.multi_step_loss,
            self.steps if steps is None else steps,
            iteration,
            epochs=self.multi_step_epochs,
            epoch_iterations=self.epoch_iterations,
        )

        def query_loss(params: Params) -> Tensor:
            out = self.predict(params, batch.query_x, batch.support_x)
            return self.loss_fn(out, batch.query_y)

        on_step = None
        if any(w != 0 for w in weights[:-1]) and keep_graph:

            def on_step(step: int, params: Params) -> None:
                step_losses.append(query_loss(params))

        params, hyper = self._adapt(
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
        if not isinstance(losses, Tensor) or losses.shape != (batch.num_tasks,):
            got = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ArgumentError(
                f"loss_fn must return one loss per task, shape ({batch.num_tasks},); got {got}"
            )
        if step_losses:  # sum_j w_j L_j per task, then the mean over tasks
            loss = sum(w * q for w, q in zip(weights, step_losses, strict=True)).mean()
        else:
            loss = losses.mean()
        return MetaOutput(loss, losses.detach(), hyper, out.detach())
