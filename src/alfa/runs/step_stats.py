"""An iteration's statistics on their way to the host, read without making the device wait.

The training loop logs, for every meta-iteration, the outer loss, the mean generated alpha and
beta of every inner step, the query accuracy (classification) and whether every meta-gradient
is finite. They are computed on the device as one small tensor (:func:`stat_parts`,
:func:`with_gradient_check`). Reading it (``.tolist()``) waits for the device to finish the
iteration; read at once, before the optimiser step, the device would idle through Adam's
launches, the logging and the drawing of the next batch, every iteration.

So a single-process run reads them one iteration late (:class:`PendingStats`): the copy to
page-locked host memory is started after the backward pass, the optimiser step and the next
iteration's forward and backward passes are queued behind it, and only then does the host
look at the numbers (long copied by then). Iterations that log, validate, checkpoint, end the
run or stop on a signal read their own statistics at once, before any of that: the log, the
checkpoints and the validations are those of reading every iteration at once, in the same
order, with the same numbers.

A late reading can find that an earlier iteration diverged after its update was applied.
:class:`ParamSnapshot` keeps the meta-parameters from before that update, so the loop can put
them back and run the iteration again with the checks of :mod:`alfa.runs.divergence`, which
then name the step, layer and task as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from alfa.engine.meta_learner import MetaOutput
from alfa.typing import TaskBatch

__all__ = [
    "IterationStats",
    "ParamSnapshot",
    "PendingStats",
    "read_stats",
    "split_values",
    "stat_parts",
    "with_gradient_check",
]


@dataclass(frozen=True)
class IterationStats:
    """What the host learns of one iteration: the outer loss, the mean generated ``alpha`` and
    ``beta`` of every inner step, the largest meta-gradient magnitude (NaN or inf when a
    meta-gradient is) and the query accuracy (None for regression)."""

    loss: float
    alpha: list[float]
    beta: list[float]
    largest: float
    accuracy: float | None

    def as_tuple(self) -> tuple[float, list[float], list[float], float, float | None]:
        return self.loss, self.alpha, self.beta, self.largest, self.accuracy


def stat_parts(out: MetaOutput, query_y: Tensor | None) -> Tensor:
    """The iteration's statistics on the device: outer loss, mean generated alpha and beta of
    every inner step (over tasks and layers) and, for classification (``query_y`` given), the
    query accuracy of the adapted learners."""
    parts = [out.loss.detach().reshape(1)]
    parts += [h.alpha.detach().mean().reshape(1) for h in out.hyperparameters]
    parts += [h.beta.detach().mean().reshape(1) for h in out.hyperparameters]
    if query_y is not None:
        hits = out.outputs.detach().argmax(-1) == query_y
        # at least float32, so a half-precision loss does not round the accuracy (torch.cat
        # promotes the other parts losslessly)
        dtype = torch.promote_types(parts[0].dtype, torch.float32)
        parts.append(hits.to(dtype).mean().reshape(1))
    return torch.cat(parts)


def with_gradient_check(learner: nn.Module, stats: Tensor) -> tuple[Tensor, bool]:
    """``stats`` with the largest meta-gradient magnitude appended (NaN when any is NaN), and
    whether there was a gradient to measure.

    One multi-tensor reduction (``torch._foreach_norm`` with ``ord=inf``: the exact largest
    magnitude of each gradient, NaN-propagating) instead of a reduction per parameter."""
    grads = [p.grad.detach() for p in learner.parameters() if p.grad is not None]
    if not grads:
        return stats, False
    norms = torch._foreach_norm(grads, float("inf"))
    largest = torch.stack(norms).amax().reshape(1).to(stats.dtype)
    return torch.cat([stats, largest]), True


def split_values(values: list[float], steps: int, classify: bool, grads: bool) -> IterationStats:
    """The host's list of :func:`with_gradient_check`'s tensor, by meaning."""
    largest = values[-1] if grads else 0.0
    accuracy = values[1 + 2 * steps] if classify else None
    alpha, beta = values[1 : 1 + steps], values[1 + steps : 1 + 2 * steps]
    return IterationStats(values[0], alpha, beta, largest, accuracy)


def read_stats(learner: nn.Module, stats: Tensor, steps: int, classify: bool) -> IterationStats:
    """``stats`` of :func:`stat_parts` and the largest meta-gradient magnitude, read now in one
    transfer (waits for the device)."""
    values, grads = with_gradient_check(learner, stats)
    return split_values(values.tolist(), steps, classify, grads)


class PendingStats:
    """One iteration's statistics (:func:`with_gradient_check`'s tensor), copied to the host
    without waiting; :meth:`read` waits for that copy only.

    On a GPU the copy goes to page-locked memory behind a CUDA event, so the work queued after
    it (the optimiser step, the next iteration) does not delay the reading; on the CPU the
    tensor is already computed. ``batch`` and ``local`` (this process's statistics before
    averaging over processes) are kept to diagnose the iteration if it diverged.
    """

    def __init__(
        self,
        iteration: int,
        learner: nn.Module,
        stats: Tensor,
        steps: int,
        classify: bool,
        batch: TaskBatch,
        local: Tensor,
    ) -> None:
        self.iteration = iteration
        self.batch = batch
        self.local = local
        self.steps = steps
        self.classify = classify
        values, self._grads = with_gradient_check(learner, stats)
        self._event = None
        if values.device.type == "cuda":
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
            values = host
        self._values = values

    def read(self) -> IterationStats:
        """The numbers (one ``.tolist()``; on a GPU after the copy's event)."""
        if self._event is not None:
            self._event.synchronize()
        return split_values(self._values.tolist(), self.steps, self.classify, self._grads)


class ParamSnapshot:
    """The meta-parameters as they were before the last optimiser step (:meth:`take` copies
    them in one multi-tensor copy on their device; :meth:`restore` puts them back)."""

    def __init__(self, module: nn.Module) -> None:
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.saved = [torch.empty_like(p) for p in self.params]

    @torch.no_grad()
    def take(self) -> None:
        if self.params:
            torch._foreach_copy_(self.saved, self.params)

    @torch.no_grad()
    def restore(self) -> None:
        if self.params:
            torch._foreach_copy_(self.params, self.saved)
