"""Batch normalisation on the fast path: the forward and its input gradient written out.

See :class:`BatchNorm`; the layer protocol is :class:`alfa.engine.fast.layers.Layer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alfa.engine.fast.layers import Layer

__all__ = ["BatchNorm"]


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
