"""The elementwise kernels of a fused ``BatchNorm -> (leaky) ReLU -> 2x2 max-pool`` block.

Three pure functions of tensors, written so that each is a few passes over memory once fused:

* :func:`forward`: the block's output ``p``, the per-channel statistics, and one code per
  pooling window (where its maximum lies and whether it is positive);
* :func:`input_grad`: the gradient with respect to the block's input, ``dz = J(z)^T dp``;
* :func:`input_grad_backward`: the derivative of :func:`input_grad` (what a second-order
  meta-gradient differentiates), with respect to ``z``, ``dp`` and ``gamma``.

The formulas are those of :mod:`alfa.engine.fast.batchnorm` with the gradient of the
activation and the pooling folded in: after pooling, the gradient ``g`` with respect to the
normalised value is zero except at each window's maximum, so every per-channel mean of the
chain rule is a sum over the (four times smaller) pooled grid, and ``g`` is never stored. The
computations run in the ``[B, H, W, C]`` order (channels innermost, the order of channels-last
memory) so that the per-channel sums and the 2x2 windows are contiguous vectors of channels.

Run eagerly they are ordinary differentiable tensor code (the float64 tests check them against
autograd through the unfused layers); :func:`compiled` returns them compiled with
``torch.compile`` (inductor's C++ code on the CPU, one loop nest per pass, shapes dynamic so
that one compilation serves every layer and batch size). Which one runs is the fast path's
choice, ``train.kernels`` (:class:`alfa.engine.fast.fused.NormActPool`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["compiled", "forward", "input_grad", "input_grad_backward"]

_POSITIVE = 4  # bit of the window code: the window's maximum is positive (the slope is 1)


def _nhwc(t: Tensor) -> Tensor:
    return t.permute(0, 2, 3, 1)


def _nchw(t: Tensor) -> Tensor:
    return t.permute(0, 3, 1, 2)


def _corner(t: Tensor, k: int) -> Tensor:
    """Entry ``k`` (0..3, row-major) of every 2x2 window of ``t`` ``[B, H, W, C]``:
    ``[B, H // 2, W // 2, C]`` (a strided view; an odd last row or column, which floor-mode
    pooling drops, is left out)."""
    h, w = t.shape[1] // 2, t.shape[2] // 2
    return t[:, k // 2 : 2 * h : 2, k % 2 : 2 * w : 2]


def _at_max(t: Tensor, where: Tensor) -> Tensor:
    """The entry of each window of ``t`` at position ``where`` (0..3), ``[B, h, w, C]``."""
    out = _corner(t, 3)
    for k in (2, 1, 0):
        out = torch.where(where == k, _corner(t, k), out)
    return out


def _spread(values: Tensor, where: Tensor, shape: torch.Size) -> Tensor:
    """``[B, h, w, C]`` window values -> ``[B, H, W, C]``, each at its window's position
    ``where`` and zero elsewhere (including a dropped odd row or column)."""
    positions = torch.arange(4, device=values.device, dtype=where.dtype).view(1, 1, 2, 1, 2, 1)
    full = (
        torch.where(
            where[:, :, None, :, None] == positions,
            values[:, :, None, :, None],
            values.new_zeros(()),
        )
        .flatten(3, 4)
        .flatten(1, 2)
    )
    # Always padded (by zero rows for even sizes): one compiled graph for every size.
    return F.pad(full, (0, 0, 0, shape[2] - full.shape[2], 0, shape[1] - full.shape[1]))


def _channel_sum(t: Tensor) -> Tensor:
    """Per-channel sum of ``[B, H, W, C]``: over each row first, then the rows, then the
    images. Compiled, every stage is a loop over contiguous channel vectors that the threads
    share by rows (channels alone are too few to share), and no stage is long enough to need
    inductor's slower compensated accumulation."""
    return t.sum(2).sum(1).sum(0)


def _channel_var_mean(t: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel biased variance and mean of ``[B, H, W, C]`` in one pass, from sums of the
    values less one of them per channel (the shift keeps the difference of the two sums from
    cancelling when the mean is large against the spread; compiled, this is much cheaper than
    Welford's update)."""
    count = t.shape[0] * t.shape[1] * t.shape[2]
    shift = t[0, 0, 0]
    d = t - shift
    mean_d = _channel_sum(d) / count
    var = (_channel_sum(d * d) / count - mean_d * mean_d).clamp(min=0.0)
    return var, mean_d + shift


def _slopes(code: Tensor, slope: float, like: Tensor) -> tuple[Tensor, Tensor]:
    """Window position (0..3) and the activation's slope at each window's maximum (in the
    floating-point type of ``like``)."""
    positive = code >= _POSITIVE
    where = torch.where(positive, code - _POSITIVE, code)
    factor = torch.where(positive, like.new_ones(()), like.new_full((), slope))
    return where, factor


def forward(
    z: Tensor, gamma: Tensor, beta: Tensor, eps: float, slope: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``p = maxpool2x2(act(gamma * (z - mean) * invstd + beta))`` with whole-batch statistics.

    Args:
        z: ``[B, C, H, W]``.
        gamma, beta: ``[C]``.
        eps: BatchNorm's epsilon.
        slope: the activation's negative slope (0 for ReLU).

    Returns:
        ``p`` ``[B, C, H // 2, W // 2]``; ``code`` (same shape and type): the position of each
        window's first maximum in row-major order (PyTorch's tie rule), plus 4 when it is
        positive (a small integer in ``z``'s floating-point type: compiled, the kernels are
        then vector code throughout, where integer codes cost conversions); ``mean`` and
        ``invstd`` ``[C]``.
    """
    x = _nhwc(z)
    var, mean = _channel_var_mean(x)
    invstd = torch.rsqrt(var + eps)
    scale = invstd * gamma
    shift = beta - mean * scale
    act = [F.leaky_relu(_corner(x, k) * scale + shift, slope) for k in range(4)]
    top = torch.maximum(torch.maximum(act[0], act[1]), torch.maximum(act[2], act[3]))
    where = torch.where(
        act[0] == top, 0, torch.where(act[1] == top, 1, torch.where(act[2] == top, 2, 3))
    )
    code = (where + torch.where(top > 0, _POSITIVE, 0)).to(top.dtype)
    return _nchw(top), _nchw(code), mean, invstd


def input_grad(
    z: Tensor,
    dp: Tensor,
    gamma: Tensor,
    mean: Tensor,
    invstd: Tensor,
    code: Tensor,
    slope: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """``dz = gamma * invstd * (g - mean(g) - xhat * mean(g * xhat))`` for the gradient ``dp``
    of the block's output, where ``g`` is ``dp`` times the activation's slope at each window's
    maximum and zero elsewhere.

    Returns:
        ``dz`` ``[B, C, H, W]`` and the per-channel sums of ``g`` and ``g * xhat`` (the
        gradients of ``beta`` and ``gamma``).
    """
    x, dp = _nhwc(z), _nhwc(dp)
    where, factor = _slopes(_nhwc(code), slope, dp)
    count = x.shape[0] * x.shape[1] * x.shape[2]
    g = dp * factor
    xhat_max = (_at_max(x, where) - mean) * invstd
    sum_g = _channel_sum(g)
    sum_gx = _channel_sum(g * xhat_max)
    scale = invstd * gamma
    xhat = (x - mean) * invstd
    dz = scale * (_spread(g, where, x.shape) - (sum_g + xhat * sum_gx) / count)
    return _nchw(dz), sum_g, sum_gx


def input_grad_backward(
    u: Tensor,
    z: Tensor,
    dp: Tensor,
    gamma: Tensor,
    mean: Tensor,
    invstd: Tensor,
    code: Tensor,
    slope: float,
    sum_g: Tensor,
    sum_gx: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """The derivative of :func:`input_grad`'s ``dz`` along ``u`` (``[B, C, H, W]``).

    With ``r = invstd``, ``P(v) = v - mean(v) - xhat * mean(xhat * v)`` (self-adjoint),
    ``a = mean(g)`` and ``b = mean(g * xhat)`` (:class:`alfa.engine.fast.batchnorm`'s
    derivation)::

        d/dg     = gamma * r * P(u)          (then, per window: at its maximum, times the slope)
        d/dgamma = r * sum(u * P(g))
        d/dz     = -gamma * r^2 * (mean(u * P(g)) * xhat + P(b * u + mean(u * xhat) * g))

    The activation's slope and the pooling's choice are piecewise constant: they contribute
    nothing else.

    Returns:
        The derivatives with respect to ``z``, ``dp`` and ``gamma``.
    """
    ux, x, dp = _nhwc(u), _nhwc(z), _nhwc(dp)
    where, factor = _slopes(_nhwc(code), slope, dp)
    count = x.shape[0] * x.shape[1] * x.shape[2]
    g = dp * factor
    xhat = (x - mean) * invstd
    sum_u = _channel_sum(ux)
    sum_ux = _channel_sum(ux * xhat)
    u_max = _at_max(ux, where)
    xhat_max = (_at_max(x, where) - mean) * invstd
    sum_ug = _channel_sum(u_max * g)
    mean_u, mean_ux = sum_u / count, sum_ux / count
    a, b = sum_g / count, sum_gx / count
    sum_upg = sum_ug - a * sum_u - b * sum_ux  # sum(u * P(g))
    scale = invstd * gamma
    d_dp = factor * scale * (u_max - mean_u - xhat_max * mean_ux)
    d_gamma = invstd * sum_upg
    k = -scale * invstd
    # -gamma r^2 (mean(u P(g)) xhat + b u + c g - (b mean(u) + c a) - 2 b c xhat), c = mean(u xhat)
    cx = sum_upg / count - 2.0 * b * mean_ux
    d_z = k * (b * ux + cx * xhat - (b * mean_u + mean_ux * a)) + (k * mean_ux) * _spread(
        g, where, x.shape
    )
    return _nchw(d_z), _nchw(d_dp), d_gamma


Kernels = tuple[Callable[..., tuple[Tensor, ...]], ...]


@functools.cache
def compiled() -> Kernels:
    """:func:`forward`, :func:`input_grad` and :func:`input_grad_backward` under
    ``torch.compile`` (compiled on their first call; dynamic shapes: one compilation of each
    serves every layer, and a second for odd heights or widths)."""

    def compile_one(fn: Callable) -> Callable:
        return torch.compile(fn, dynamic=True, fullgraph=True)

    return tuple(compile_one(fn) for fn in (forward, input_grad, input_grad_backward))
