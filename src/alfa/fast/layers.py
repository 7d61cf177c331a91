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

``G = 1`` is the plain per-task form (a dense convolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alfa.typing import Params

__all__ = [
    "BatchNorm",
    "Conv",
    "Flatten",
    "GlobalAvgPool",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool",
    "ReLU",
    "Residual",
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
        grads = {self.weight: torch.bmm(dy.transpose(1, 2), x)}
        if self.bias is not None:
            grads[self.bias] = dy.sum(1)
        return (torch.bmm(dy, params[self.weight]) if need_dx else None), grads


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
        dx, dw, _ = torch.ops.aten.convolution_backward(
            dy,
            x,
            self._flat(w),
            None,
            [self.stride] * 2,
            [self.padding] * 2,
            [1, 1],
            False,
            [0, 0],
            groups,
            [need_dx, True, False],
        )
        grads = {self.weight: dw.reshape(w.shape)}
        if self.bias is not None:
            grads[self.bias] = dy.sum((0, 2, 3)).view(groups, -1)
        return dx, grads


_DIMS = (0, 2, 3)


def _channel(t: Tensor) -> Tensor:
    return t.view(1, -1, 1, 1)


class _BatchNormInputGrad(torch.autograd.Function):
    """``dx = gamma * r * (g - mean(g) - xhat * mean(g * xhat))``: the input gradient of batch
    normalisation with whole-batch statistics (``r = 1 / sqrt(var + eps)``, per-channel means
    over ``B, H, W``), with its own derivative written out.

    Autograd could differentiate the formula itself, but it would keep every intermediate
    (the centred input, ``xhat``, their products) for each BatchNorm of each inner step; this
    keeps only ``x``, ``g`` and per-channel values, and recomputes ``xhat``. With
    ``P(v) = v - mean(v) - xhat * mean(xhat * v)`` (self-adjoint) and an upstream gradient
    ``u``, the derivative is::

        d/dg     = gamma * r * P(u)
        d/dgamma = r * sum(u * P(g))
        d/dx     = -gamma * r^2 * (mean(u * P(g)) * xhat + P(b * u + mean(u * xhat) * g))

    where ``b = mean(g * xhat)`` (``xhat = (x - mean(x)) * r`` varies with ``x`` through the
    mean and through ``r``). ``tests/test_fast_layers.py`` checks both orders against
    autograd.
    """

    @staticmethod
    def forward(ctx, x: Tensor, g: Tensor, gamma: Tensor, eps: float) -> Tensor:
        inv_n = 1.0 / (x.shape[0] * x.shape[2] * x.shape[3])
        mean = x.sum(_DIMS, keepdim=True) * inv_n
        centred = x - mean
        invstd = torch.rsqrt((centred * centred).sum(_DIMS, keepdim=True) * inv_n + eps)
        xhat = centred * invstd
        a = g.sum(_DIMS, keepdim=True) * inv_n
        b = (g * xhat).sum(_DIMS, keepdim=True) * inv_n
        scale = invstd * _channel(gamma)
        ctx.save_for_backward(x, g, gamma, mean, invstd, a, b)
        ctx.inv_n = inv_n
        return torch.addcmul(torch.addcmul(-a * scale, g, scale), xhat, -b * scale)

    @staticmethod
    def backward(ctx, u: Tensor):
        x, g, gamma, mean, invstd, a, b = ctx.saved_tensors
        inv_n = ctx.inv_n
        xhat = (x - mean) * invstd
        su = u.sum(_DIMS, keepdim=True)
        su_xhat = (u * xhat).sum(_DIMS, keepdim=True)
        su_g = (u * g).sum(_DIMS, keepdim=True)
        scale = invstd * _channel(gamma)
        # sum(u * P(g)) = sum(u g) - a sum(u) - b sum(u xhat)
        su_pg = su_g - a * su - b * su_xhat
        grad_g = torch.addcmul(
            torch.addcmul(-su * inv_n * scale, u, scale), xhat, -su_xhat * inv_n * scale
        )
        grad_gamma = (invstd * su_pg).reshape(-1)
        k = -scale * invstd  # -gamma * r^2
        c0 = -k * (b * su + su_xhat * a) * inv_n  # the mean of b * u + mean(u xhat) * g
        cx = k * (su_pg - 2.0 * b * su_xhat) * inv_n
        grad_x = torch.addcmul(
            torch.addcmul(torch.addcmul(c0, u, k * b), g, k * su_xhat * inv_n), xhat, cx
        )
        return grad_x, grad_g, grad_gamma, None


@dataclass
class BatchNorm(Layer):
    """Batch normalisation with batch statistics (a ``MetaBatchNorm2d``, whose affine parameters
    are shared by the tasks and never adapted).

    The statistics come from the first ``split`` rows (support mode) or from every row. The
    forward output of the whole-batch case is PyTorch's fused kernel; the backward is the
    chain rule through the mean and the biased variance, written out,
    ``dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))`` for the whole batch: its
    derivative is a few elementwise operations, where differentiating PyTorch's own
    ``native_batch_norm_backward`` costs a long composite (it dominated the 84px profile).
    """

    module: nn.Module

    def forward(self, params, x, split):
        m = self.module
        groups = x.shape[1] // m.num_features
        weight = bias = None
        if m.weight is not None:
            weight, bias = m.weight.repeat(groups), m.bias.repeat(groups)
        if split is None:
            y = F.batch_norm(x, None, None, weight, bias, True, 0.0, m.eps)
            return y, (x, weight)
        var, mean = torch.var_mean(x[:split], dim=(0, 2, 3), correction=0, keepdim=True)
        invstd = torch.rsqrt(var + m.eps)
        scale = invstd if weight is None else invstd * weight.view(1, -1, 1, 1)
        shift = -mean * scale if bias is None else bias.view(1, -1, 1, 1) - mean * scale
        return x * scale + shift, (x, weight, mean, invstd, split)

    def backward(self, params, saved, dy, need_dx=True):
        if len(saved) == 2:
            x, weight = saved
            ones = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
            gamma = ones if weight is None else weight
            return _BatchNormInputGrad.apply(x, dy, gamma, self.module.eps), {}
        x, weight, mean, invstd, split = saved
        scale = invstd if weight is None else invstd * weight.view(1, -1, 1, 1)
        g = dy * scale  # gradient through the normalised value, all rows
        count = split * x.shape[2] * x.shape[3]
        centred = x[:split] - mean
        # d/dmean and d/dvar of sum(dy * (x - mean) * invstd * gamma) over every row.
        d_mean = -g.sum((0, 2, 3), keepdim=True)
        d_var = -0.5 * invstd.pow(2) * (g * (x - mean)).sum((0, 2, 3), keepdim=True)
        head = g[:split] + (d_mean + 2.0 * d_var * centred) / count
        return torch.cat([head, g[split:]]), {}


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
        return _pool_backward(g, x, index, ctx.padding), None, None, None


def _pool_backward(dy: Tensor, x: Tensor, index: Tensor, padding: int) -> Tensor:
    return torch.ops.aten.max_pool2d_with_indices_backward(
        dy, x, [2, 2], [2, 2], [padding] * 2, [1, 1], False, index
    )


@dataclass
class MaxPool(Layer):
    """Max-pooling (floor mode, padding with -inf).

    For 2x2 windows with stride 2, the backbones' case, the forward takes elementwise maxima of
    the four strided quarter planes and derives the indices from them (on the CPU an order of
    magnitude faster than the pooling kernel on ``[B, C, H, W]``); the backward is PyTorch's
    own pooling backward with those indices, whose derivative is its own. Other shapes use the
    pooling kernel throughout.
    """

    kernel: int
    stride: int
    padding: int

    def forward(self, params, x, split):
        if self.kernel != 2 or self.stride != 2:
            k, st, p = [self.kernel] * 2, [self.stride] * 2, [self.padding] * 2
            y, index = torch.ops.aten.max_pool2d_with_indices(x, k, st, p)
            return y, (x, index)
        with torch.no_grad():
            top, index = _pool_2x2(x, self.padding)
        return _Select.apply(x, top, index, self.padding), (x, index)

    def backward(self, params, saved, dy, need_dx=True):
        x, index = saved
        k, st, p = [self.kernel] * 2, [self.stride] * 2, [self.padding] * 2
        dx = torch.ops.aten.max_pool2d_with_indices_backward(dy, x, k, st, p, [1, 1], False, index)
        return dx, {}


class Flatten(Layer):
    """Image layout ``[B, G*C, H, W]`` -> vector layout ``[G, B, C*H*W]``."""

    def forward(self, params, x, split):
        b, gc, h, w = x.shape
        groups = _groups(params)
        y = x.reshape(b, groups, (gc // groups) * h * w).transpose(0, 1)
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
