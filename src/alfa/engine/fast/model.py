"""The fast path: a base learner's forward pass and support-loss gradient in closed form.

:class:`FastModel` has the interface of :class:`~alfa.engine.functional.FunctionalModel` (``apply``
and ``support_grads``) and computes the inner loop's gradient with the layers' own backward formulas
(:mod:`alfa.engine.fast.layers`) instead of ``torch.autograd.grad``. Why this is the design:

* a second-order meta-gradient needs the inner gradients as differentiable functions of the
  weights. Autograd provides them with ``create_graph=True`` and pays for it with double-backward
  kernels (BatchNorm's is a long composite) and a graph of the graph; written out, the inner
  gradient is a handful of ordinary operations per layer and the whole meta-iteration is one
  ordinary graph, differentiated once;
* there is no ``vmap`` and no ``functional_call`` dispatch: the tasks of a group are one
  batched matrix product or one grouped convolution per layer;
* first order (and evaluation) runs the closed form under ``no_grad``: no graph at all;
* nothing needs a double backward, which ``torch.compile`` cannot differentiate; compiling
  is not used, though: in a first trial it did not speed up the sinusoid workload on the CPU.

Tasks are processed in groups of ``group`` tasks (all at once by default). On the CPU a grouped
convolution over per-task weights is several times slower than the same work as ``G``
dense convolutions, so convolutional programs default to one task per group there; the
benchmark ``benchmarks/speed.py --group`` measures both forms. On a GPU the default stays one
grouped convolution for the whole meta-batch (one launch per layer instead of ``G``); it has
not been compared there with one task per group, which ``scripts/gpu_check.sh`` measures
(``--group 1``) for the default to follow.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alfa.engine.fast.fused import ConvBlock
from alfa.engine.fast.layers import run_backward, run_forward
from alfa.engine.fast.program import Program, compile_program
from alfa.engine.functional import FunctionalModel
from alfa.engine.losses import cross_entropy, mse
from alfa.typing import Params

__all__ = ["FastModel", "fast_model"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def _mse_grad(pred: Tensor, target: Tensor, loss: bool) -> tuple[Tensor | None, Tensor]:
    """Per-task mean squared error ``[G]`` (if ``loss``) and its gradient w.r.t. ``pred``."""
    diff = pred - target
    count = diff[0].numel()
    return (diff.pow(2).flatten(1).mean(1) if loss else None), diff * (2.0 / count)


def _cross_entropy_grad(logits: Tensor, labels: Tensor, loss: bool) -> tuple[Tensor | None, Tensor]:
    """Per-task mean cross-entropy ``[G]`` (if ``loss``) and its gradient
    ``(softmax - onehot) / B`` w.r.t. the logits."""
    log_p = F.log_softmax(logits, -1)
    losses = -log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1).mean(1) if loss else None
    onehot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return losses, (log_p.exp() - onehot) / labels.shape[1]


_CLOSED_FORM: dict[LossFn, Callable[[Tensor, Tensor, bool], tuple[Tensor | None, Tensor]]] = {
    mse: _mse_grad,
    cross_entropy: _cross_entropy_grad,
}


class FastModel(FunctionalModel):
    """``FunctionalModel`` of a module that :func:`~alfa.engine.fast.program.compile_program` knows.

    Args:
        module: the base learner.
        program: its fast layers.
        group: tasks per group: an int, None (all tasks of the meta-batch in one group) or
            ``"auto"``: one task per group for convolutional programs on the CPU (dense
            convolutions beat grouped ones there, see the module docstring), else all.
    """

    def __init__(
        self, module: nn.Module, program: Program, group: int | str | None = "auto"
    ) -> None:
        super().__init__(module)
        if not (group is None or group == "auto" or (isinstance(group, int) and group > 0)):
            raise ValueError(f"group must be a positive int, None or 'auto', got {group!r}")
        self.program = program
        self.group = group
        # Images in NHWC memory layout: True/False as asked (``train.channels_last``), None
        # (default) where the fused blocks run on the CPU, whose kernels are written for it.
        self.channels_last: bool | None = None
        self._fused = any(isinstance(layer, ConvBlock) for layer in program.layers)

    def _chunks(self, x: Tensor) -> list[tuple[int, int]]:
        tasks, size = x.shape[0], self.group
        if size == "auto":
            size = 1 if self.program.images and x.device.type == "cpu" else None
        size = tasks if size is None else size
        return [(i, min(i + size, tasks)) for i in range(0, tasks, size)]

    @staticmethod
    def _part(tensors: dict[str, Tensor], a: int, b: int, tasks: int) -> dict[str, Tensor]:
        """Tasks ``a:b`` of every tensor (the tensors themselves when that is all of them)."""
        if a == 0 and b == tasks:
            return dict(tensors)
        return {n: t[a:b] for n, t in tensors.items()}

    def _layout(self, x: Tensor) -> Tensor:
        """``[G, B, ...]`` inputs in the program's layout (tasks side by side on channels)."""
        if not self.program.images:
            return x
        g, b = x.shape[:2]
        x = x[0] if g == 1 else x.transpose(0, 1).reshape(b, g * x.shape[2], *x.shape[3:])
        nhwc = self.channels_last
        if nhwc is None:
            nhwc = self._fused and self.program.kernels.channels_last(x.device)
        return x.contiguous(memory_format=torch.channels_last) if nhwc else x

    def _forward(self, params: Params, x: Tensor, split: int | None):
        return run_forward(self.program.layers, params, self._layout(x), split)

    def apply(self, params: Params, x: Tensor, reference: Tensor | None = None) -> Tensor:
        outs, tasks = [], x.shape[0]
        for a, b in self._chunks(x):
            p = self._part(params, a, b, tasks)
            if reference is not None and self.program.support_norm:
                n_ref = reference.shape[1]
                both = torch.cat([reference[a:b], x[a:b]], 1)
                outs.append(self._forward(p, both, n_ref)[0][:, n_ref:])
            else:
                outs.append(self._forward(p, x if b - a == tasks else x[a:b], None)[0])
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def support_grads(
        self,
        params: Params,
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn,
        create_graph: bool,
        *,
        losses: bool = True,
    ) -> tuple[Tensor | None, Params]:
        closed = _CLOSED_FORM.get(loss_fn)
        if closed is None:  # a loss of the user's: autograd over the fast forward
            return super().support_grads(params, x, y, loss_fn, create_graph)
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            parts, grads, tasks = [], [], x.shape[0]
            for a, b in self._chunks(x):
                p = self._part(params, a, b, tasks)
                xy = self._part({"x": x, "y": y}, a, b, tasks)
                out, saved = self._forward(p, xy["x"], None)
                loss, d_out = closed(out, xy["y"], losses)
                g: Params = {}
                run_backward(self.program.layers, p, saved, d_out, g, need_dx=False)
                parts.append(loss)
                grads.append(g)
        result = torch.cat(parts) if losses else None  # type: ignore[arg-type]
        if len(grads) == 1:
            return result, {n: grads[0][n] for n in self.names}
        return result, {n: torch.cat([g[n] for g in grads]) for n in self.names}


def fast_model(module: nn.Module, group: int | str | None = "auto") -> FastModel | None:
    """The fast path for ``module``, or None when it has a layer the fast path does not know."""
    program = compile_program(module)
    return None if program is None else FastModel(module, program, group)
