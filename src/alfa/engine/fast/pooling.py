"""Max-pooling on the fast path (see :class:`MaxPool`; the layer protocol is
:class:`alfa.engine.fast.layers.Layer`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alfa.engine.fast.layers import Layer

__all__ = ["MaxPool"]


def _quarters(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four strided planes of the 2x2 windows of ``x`` (top-left, top-right, ...)."""
    h, w = x.shape[2] // 2, x.shape[3] // 2
    r0, c0, r1, c1 = slice(0, 2 * h, 2), slice(0, 2 * w, 2), slice(1, 2 * h, 2), slice(1, 2 * w, 2)
    return x[:, :, r0, c0], x[:, :, r0, c1], x[:, :, r1, c0], x[:, :, r1, c1]


def _pool_2x2(x: Tensor, padding: int) -> tuple[Tensor, Tensor]:
    """2x2 stride-2 max-pooling of ``x`` (no graph) and the flat index in ``x``'s plane of each
    window's maximum: the first one in row-major order, as PyTorch's pooling picks it."""
    width = x.shape[3]
    if padding:
        x = F.pad(x, [padding] * 4, value=float("-inf"))
    q00, q01, q10, q11 = _quarters(x)
    top = torch.maximum(torch.maximum(q00, q01), torch.maximum(q10, q11))
    first = q00 == top
    right = (q01 == top) & ~first  # top-right is the first maximum
    lower = ~(first | right)  # the maximum lies in the bottom row
    right = right | (lower & (q10 != top))  # ... or bottom-right
    h, w = top.shape[2], top.shape[3]
    rows = torch.arange(h, device=x.device).view(h, 1) * 2 - padding
    cols = torch.arange(w, device=x.device) * 2 - padding
    index = (rows + lower.long()) * width + cols + right.long()
    return top, index


class _Select(torch.autograd.Function):
    """The window maxima (already computed) as a function of the input: the backward sends
    each gradient to its window's maximum with PyTorch's pooling backward."""

    @staticmethod
    def forward(ctx, x: Tensor, top: Tensor, index: Tensor, padding: int) -> Tensor:
        ctx.save_for_backward(x, index)
        ctx.padding = padding
        return top

    @staticmethod
    def backward(ctx, g: Tensor):
        x, index = ctx.saved_tensors
        return _pool_backward(g, x, index, 2, 2, ctx.padding), None, None, None


def _pool_backward(
    dy: Tensor, x: Tensor, index: Tensor, kernel: int, stride: int, padding: int
) -> Tensor:
    """PyTorch's pooling backward: each gradient to its window's maximum, given by ``index``."""
    return torch.ops.aten.max_pool2d_with_indices_backward(
        dy, x, [kernel] * 2, [stride] * 2, [padding] * 2, [1, 1], False, index
    )


@dataclass
class MaxPool(Layer):
    """Max-pooling (floor mode, padding with -inf).

    On the CPU, for 2x2 windows with stride 2 (the backbones' case), the forward takes
    elementwise maxima of the four strided quarter planes and derives the indices from them (an
    order of magnitude faster than the CPU's pooling kernel on ``[B, C, H, W]``); the backward
    is PyTorch's own pooling backward with those indices, whose derivative is its own. On a GPU
    that shortcut is about fifteen kernel launches where the GPU's pooling kernel is one, so
    every other device, and other window shapes, use the pooling kernel throughout (the same
    maxima and the same indices: the first maximum of each window).
    """

    kernel: int
    stride: int
    padding: int

    def forward(self, params, x, split):
        if self.kernel != 2 or self.stride != 2 or x.device.type != "cpu":
            k, st, p = [self.kernel] * 2, [self.stride] * 2, [self.padding] * 2
            y, index = torch.ops.aten.max_pool2d_with_indices(x, k, st, p)
            return y, (x, index)
        with torch.no_grad():
            top, index = _pool_2x2(x, self.padding)
        return _Select.apply(x, top, index, self.padding), (x, index)

    def backward(self, params, saved, dy, need_dx=True):
        x, index = saved
        return _pool_backward(dy, x, index, self.kernel, self.stride, self.padding), {}
