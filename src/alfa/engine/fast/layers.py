"""The standard layers with their backward pass written out as ordinary tensor operations.

Each layer's ``forward`` returns its output and what its ``backward`` needs; ``backward`` maps the
gradient of the output to the gradient of the input and of the layer's adapted tensors. Because
the backward is built from differentiable operations, the support-loss gradient of the inner
loop is an ordinary expression of the weights: a second-order meta-gradient is then one plain
``backward()`` through the whole meta-iteration (no ``create_graph``, no double backward).

Tensors of a *group* of ``G`` tasks share one layout so that a layer is one kernel call for
the whole group, whatever ``G`` is:

* image activations are ``[B, G*C, H, W]``: the tasks sit side by side along the channels, so a
  convolution over per-task weights is one grouped convolution (``groups=G``), and batch
  normalisation, pooling and activations are the plain kernels (their statistics are per
  channel, i.e. per task);
* vector activations are ``[G, B, F]`` and a linear layer is one batched matrix product.

``G = 1`` is the plain per-task form (a dense convolution). Batch normalisation and pooling,
which have more to them, have their own modules (:mod:`alfa.engine.fast.batchnorm`,
:mod:`alfa.engine.fast.pooling`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alfa.typing import Params

__all__ = [
    "Conv",
    "Flatten",
    "GlobalAvgPool",
    "Layer",
    "LeakyReLU",
    "Linear",
    "ReLU",
    "Residual",
    "run_backward",
    "run_forward",
]

Saved = Any


class Layer:
    """``forward(params, x, split) -> (y, saved)``; ``backward(params, saved, dy) -> (dx, grads)``.

    ``params`` maps adapted tensor names to ``[G, ...]`` tensors; ``grads`` holds the gradients of
    the layer's own adapted tensors, ``[G, ...]``; ``need_dx=False`` (the first layer) lets a
    layer skip the input gradient and return None. ``split`` is the number of leading rows whose
    statistics normalise the whole batch (support-mode BatchNorm), or None.
    """

    adapted: tuple[str, ...] = ()

    def forward(self, params: Params, x: Tensor, split: int | None) -> tuple[Tensor, Saved]:
        raise NotImplementedError

    def backward(
        self, params: Params, saved: Saved, dy: Tensor, need_dx: bool = True
    ) -> tuple[Tensor | None, Params]:
        raise NotImplementedError


@dataclass
class Linear(Layer):
    """``y = x W^T + b`` on ``[G, B, F]`` with per-task ``W`` ``[G, out, in]``."""

    weight: str
    bias: str | None

    def __post_init__(self) -> None:
        self.adapted = (self.weight,) if self.bias is None else (self.weight, self.bias)

    def forward(self, params, x, split):
        w = params[self.weight]
        if self.bias is None:
            return torch.bmm(x, w.transpose(1, 2)), x
        return torch.baddbmm(params[self.bias].unsqueeze(1), x, w.transpose(1, 2)), x

    def backward(self, params, x, dy, need_dx=True):
        w = params[self.weight]
        # Under autocast the products run in its precision; the gradients are returned in the
        # dtypes of the tensors they belong to (as autograd does).
        grads = {self.weight: torch.bmm(dy.transpose(1, 2), x).to(w.dtype)}
        if self.bias is not None:
            grads[self.bias] = dy.sum(1, dtype=params[self.bias].dtype)
        return (torch.bmm(dy, w).to(x.dtype) if need_dx else None), grads


@dataclass
class Conv(Layer):
    """A 2-D convolution with per-task weights: one grouped convolution over ``[B, G*C, H, W]``."""

    weight: str
    bias: str | None
    stride: int
    padding: int

    def __post_init__(self) -> None:
        self.adapted = (self.weight,) if self.bias is None else (self.weight, self.bias)

    @staticmethod
    def _flat(w: Tensor) -> Tensor:
        return w.reshape(-1, *w.shape[2:])  # [G, O, C, k, k] -> [G*O, C, k, k]

    def forward(self, params, x, split):
        w = params[self.weight]
        b = params[self.bias].reshape(-1) if self.bias is not None else None
        y = F.conv2d(x, self._flat(w), b, self.stride, self.padding, 1, w.shape[0])
        return y, x

    def backward(self, params, x, dy, need_dx=True):
        w = params[self.weight]
        groups = w.shape[0]
        # The convolution backward wants one dtype: the one the forward ran in (autocast's).
        low = _autocast_dtype(x)
        dx, dw, _ = torch.ops.aten.convolution_backward(
            dy.to(low or dy.dtype),
            x.to(low or x.dtype),
            self._flat(w).to(low or w.dtype),
            None,
            [self.stride] * 2,
            [self.padding] * 2,
            [1, 1],
            False,
            [0, 0],
            groups,
            [need_dx, True, False],
        )
        grads = {self.weight: dw.reshape(w.shape).to(w.dtype)}
        if self.bias is not None:
            bias = params[self.bias]
            grads[self.bias] = dy.sum((0, 2, 3), dtype=bias.dtype).view(groups, -1)
        return (dx.to(x.dtype) if dx is not None else None), grads


class ReLU(Layer):
    def forward(self, params, x, split):
        y = torch.relu(x)
        return y, y

    def backward(self, params, y, dy, need_dx=True):
        return torch.ops.aten.threshold_backward(dy, y, 0.0), {}


@dataclass
class LeakyReLU(Layer):
    slope: float

    def forward(self, params, x, split):
        return F.leaky_relu(x, self.slope), x

    def backward(self, params, x, dy, need_dx=True):
        return torch.ops.aten.leaky_relu_backward(dy, x, self.slope, False), {}


class Flatten(Layer):
    """Image layout ``[B, G*C, H, W]`` -> vector layout ``[G, B, C*H*W]`` (any trailing
    dimensions: a leading ``Flatten`` may also receive inputs that are flat already)."""

    def forward(self, params, x, split):
        b, gc = x.shape[:2]
        groups = _groups(params)
        y = x.reshape(b, groups, (gc // groups) * x[0, 0].numel()).transpose(0, 1)
        return y, x.shape

    def backward(self, params, shape, dy, need_dx=True):
        return dy.transpose(0, 1).reshape(shape), {}


class GlobalAvgPool(Layer):
    """Image layout ``[B, G*C, H, W]`` -> mean over ``H, W`` in vector layout ``[G, B, C]``."""

    def forward(self, params, x, split):
        b, gc = x.shape[:2]
        groups = _groups(params)
        y = x.mean((2, 3)).view(b, groups, gc // groups).transpose(0, 1)
        return y, x.shape

    def backward(self, params, shape, dy, need_dx=True):
        b, gc, h, w = shape
        dx = dy.transpose(0, 1).reshape(b, gc, 1, 1) / (h * w)
        return dx.expand(shape), {}


@dataclass
class Residual(Layer):
    """``post(main(x) + shortcut(x))``: a residual block with a projection shortcut."""

    main: list[Layer]
    shortcut: list[Layer]
    post: list[Layer]

    def __post_init__(self) -> None:
        self.adapted = tuple(
            n for layer in (*self.main, *self.shortcut, *self.post) for n in layer.adapted
        )

    def forward(self, params, x, split):
        a, saved_main = run_forward(self.main, params, x, split)
        b, saved_short = run_forward(self.shortcut, params, x, split)
        y, saved_post = run_forward(self.post, params, a + b, split)
        return y, (saved_main, saved_short, saved_post)

    def backward(self, params, saved, dy, need_dx=True):
        saved_main, saved_short, saved_post = saved
        grads: Params = {}
        d_sum = run_backward(self.post, params, saved_post, dy, grads)
        dx = run_backward(self.main, params, saved_main, d_sum, grads, need_dx)
        dx_short = run_backward(self.shortcut, params, saved_short, d_sum, grads, need_dx)
        return (dx + dx_short if need_dx else None), grads


def _autocast_dtype(x: Tensor) -> torch.dtype | None:
    """The lower precision that autocast runs convolutions in on ``x``'s device (None: off).

    Under ``torch.autocast`` the forward convolution casts its input and weight to it; the
    backward, an aten call that autocast does not cast, must do the same by hand (and return
    gradients in the dtypes of the tensors they belong to, as autograd would)."""
    kind = x.device.type
    if not torch.is_autocast_enabled(kind):
        return None
    return torch.get_autocast_dtype(kind)


def _groups(params: Params) -> int:
    return next(iter(params.values())).shape[0]


def run_forward(
    layers: list[Layer], params: Params, x: Tensor, split: int | None
) -> tuple[Tensor, list[Saved]]:
    """Run ``layers`` in order, keeping what each backward needs."""
    saved = []
    for layer in layers:
        x, s = layer.forward(params, x, split)
        saved.append(s)
    return x, saved


def run_backward(
    layers: list[Layer],
    params: Params,
    saved: list[Saved],
    dy: Tensor,
    grads: Params,
    need_dx: bool = True,
) -> Tensor | None:
    """Backpropagate ``dy`` through ``layers`` in reverse, adding their tensors' gradients to
    ``grads``; the input gradient is computed only with ``need_dx``."""
    last = len(layers) - 1
    for i, (layer, s) in enumerate(zip(reversed(layers), reversed(saved), strict=True)):
        dy, own = layer.backward(params, s, dy, need_dx or i < last)
        grads.update(own)
    return dy
