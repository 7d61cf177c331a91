"""Finding where a NaN or inf appeared, so a diverged run can say iteration, step, layer, task.

Training runs without per-step checks (they cost time on every iteration); when the outer loss
or a generated hyperparameter is non-finite, :func:`diagnose` re-runs that meta-batch with the
inner loop's checks on, and for a non-finite loss finds the first module whose output overflows.
"""

from __future__ import annotations

from typing import Any

import torch

from alfa.config import Config
from alfa.config.schema import GENERATOR_PRESETS
from alfa.engine.meta_learner import MetaLearner
from alfa.errors import DivergenceError
from alfa.typing import TaskBatch

__all__ = ["diagnose", "meta_gradients_finite", "meta_parameters_finite", "remedies"]


def _override(key: str, value: Any) -> str:
    shown = f"[{','.join(value)}]" if isinstance(value, tuple) else value
    return f"rule.{key}={shown}"


def remedies(config: Config) -> str:
    """What may stabilise a run that diverged: smaller learning rates and, among what its config
    does not use yet, clipping the meta-gradient and, for ALFA, the generator switches that never
    diverged in the controlled Table 8 (docs/stability.md): ``rule.generator=stable`` when it
    uses none of them, else those it lacks."""
    ways = []
    if config.meta.grad_clip <= 0:
        ways.append("meta.grad_clip=1.0")
    if config.rule.name == "alfa":
        stable = GENERATOR_PRESETS["stable"]
        lacks = [_override(k, v) for k, v in stable.items() if getattr(config.rule, k) != v]
        ways += ["rule.generator=stable"] if len(lacks) == len(stable) else lacks
    also = f", or {' '.join(ways)}" if ways else ""
    return f"to stabilise it, try a smaller rule.lr or meta.lr{also} (docs/stability.md)"


def _first_bad_module(
    learner: MetaLearner, batch: TaskBatch, step: int, task: int, *, query: bool = False
) -> str | None:
    """The first module whose output is non-finite when ``task``'s support (or query) set goes
    through the weights after ``step`` inner updates (None when every output is finite)."""
    with torch.enable_grad():
        params, _ = learner.adapt(
            batch.support_x, batch.support_y, steps=step, first_order=True, keep_graph=False
        )
    module = learner.model
    adapted = {n: p[task].detach() for n, p in params.items()}
    shared = learner.functional.shared()
    x = (batch.query_x if query else batch.support_x)[task]
    kwargs = {"reference": batch.support_x[task]} if query else {}
    if not learner.functional.accepts_reference:
        kwargs = {}
    found: list[str] = []
    names = {m: n for n, m in module.named_modules()}

    def hook(m: torch.nn.Module, _inputs: Any, output: Any) -> None:
        if not found and isinstance(output, torch.Tensor) and not bool(output.isfinite().all()):
            found.append(names[m])

    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            torch.func.functional_call(module, {**adapted, **shared}, (x,), kwargs)
    except Exception:  # the diagnosis must never hide the divergence itself
        return None
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


def _where(layer: str | None) -> str:
    if layer is None:
        return "layer - (outputs finite: the targets or the loss overflow)"
    return f"layer '{layer}' (first non-finite output)"


def diagnose(
    learner: MetaLearner, batch: TaskBatch, iteration: int, *, task_offset: int = 0
) -> DivergenceError:
    """Re-run a diverged meta-batch with per-step checks to name the step, layer and task.

    Gradients, generated hyperparameters and weights are checked per adapted tensor by the
    inner loop; for a non-finite loss, the layer is the first module whose output overflows.
    ``batch`` may be a share of the meta-batch starting at task ``task_offset`` (a distributed
    run): the task named is the meta-batch's.
    """
    try:
        out = learner(batch, check=True)
    except DivergenceError as exc:
        message = str(exc)
        if exc.what == "support loss" and exc.step is not None and exc.task is not None:
            layer = _where(_first_bad_module(learner, batch, exc.step, exc.task))
            message = f"non-finite support loss at inner step {exc.step}, {layer}, task {exc.task}"
        if exc.task is not None and task_offset and message.endswith(f"task {exc.task}"):
            message = f"{message.rsplit(' ', 1)[0]} {exc.task + task_offset}"
        return DivergenceError(f"iteration {iteration}: {message}")
    bad = (~torch.isfinite(out.query_losses)).nonzero()
    if bad.numel():
        task, last = int(bad[0, 0]), learner.steps - 1
        layer = _where(_first_bad_module(learner, batch, learner.steps, task, query=True))
        return DivergenceError(
            f"iteration {iteration}: non-finite query loss after inner step {last}, {layer}, "
            f"task {task + task_offset}"
        )
    return DivergenceError(f"iteration {iteration}: non-finite outer loss or hyperparameter mean")


def meta_gradients_finite(learner: MetaLearner, iteration: int) -> None:
    for name, p in learner.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            raise DivergenceError(f"iteration {iteration}: non-finite meta-gradient of '{name}'")


def meta_parameters_finite(learner: MetaLearner, iteration: int) -> None:
    """Never checkpoint a broken learner: every meta-parameter must be finite."""
    for name, p in learner.named_parameters():
        if not bool(torch.isfinite(p.detach()).all()):
            raise DivergenceError(
                f"iteration {iteration}: non-finite meta-parameter '{name}' after the meta-update"
            )
