"""A 4-CONV block, ``conv -> BatchNorm -> (leaky) ReLU -> 2x2 max-pool``, as one fast layer.

Separately, the three layers after the convolution make about ten passes over the activations
in the forward, the inner backward and each of their derivatives (normalise, activate, pool,
the pooling's indices, unpool, the activation's gradient, the BatchNorm gradient's means and
products...), and each pass allocates a new activation-sized tensor. On the CPU that traffic,
not the convolutions, was most of a meta-iteration. :class:`ConvBlock` computes them as three
fused kernels (:mod:`alfa.engine.fast.kernels`): the forward, the input gradient, and the
input gradient's derivative, each two or three passes, with the pooling's choice kept as one
byte per window. Two more savings come from the algebra of BatchNorm with whole-batch
statistics:

* the gradient of the convolution's bias is exactly zero (the input gradient of BatchNorm sums
  to zero over each channel), so it is not computed and nothing flows back through it;
* the gradient of ``beta`` and ``gamma`` of the block's forward (the meta-gradient) are the
  per-channel sums the input gradient computes anyway.

Support-mode normalisation of the query set (``split``) and ``train.kernels: unfused`` run the
separate layers (:mod:`alfa.engine.fast.batchnorm`, :mod:`alfa.engine.fast.pooling`).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from alfa.engine.fast import kernels
from alfa.engine.fast.batchnorm import BatchNorm
from alfa.engine.fast.layers import Conv, Layer, run_backward, run_forward
from alfa.engine.fast.pooling import MaxPool

__all__ = ["COMPILE_MIN_ELEMENTS", "ConvBlock", "KernelMode", "KernelSettings"]

KernelMode = Literal["auto", "compiled", "eager", "unfused"]
Form = Literal["compiled", "eager", "unfused"]

COMPILE_MIN_ELEMENTS = 1 << 16
"""``train.kernels: auto`` runs the compiled kernels for a block whose activation has at least
this many elements (256 KB of float32), the separate layers below it: there the number of
operations, not the passes over memory, is the cost, and the test suite's tiny models never
wait for a compilation."""


@dataclass
class KernelSettings:
    """How the fused blocks of one program run (``train.kernels``), shared by its blocks.

    ``auto``: on the CPU, where a C++ compiler is present, the compiled kernels for
    activations of at least :data:`COMPILE_MIN_ELEMENTS` elements and the separate layers for
    smaller ones; elsewhere the separate layers (other devices: not measured yet).
    ``compiled`` and ``eager`` force one form of the kernels for every block, ``unfused`` the
    separate layers.

    ``autograd_conv_grads`` differentiates the convolution's gradients with autograd's own
    double backward instead of :class:`_ConvGrads` (the same numbers; for measuring what the
    written-out derivative saves, ``benchmarks/levers.py``).
    """

    mode: KernelMode = "auto"
    autograd_conv_grads: bool = False

    def form(self, device: torch.device, numel: int) -> Form:
        """How a block whose activation has ``numel`` elements runs."""
        if self.mode != "auto":
            return self.mode
        if device.type == "cpu" and numel >= COMPILE_MIN_ELEMENTS and _can_compile():
            return "compiled"
        return "unfused"

    def channels_last(self, device: torch.device) -> bool:
        """Whether the program keeps its images in channels-last memory: where fused blocks
        may run (their kernels are written for it)."""
        if self.mode == "auto":
            return device.type == "cpu" and _can_compile()
        return self.mode in ("compiled", "eager")


_EAGER: kernels.Kernels = (kernels.forward, kernels.input_grad, kernels.input_grad_backward)
_COMPILE_FAILED: list[str] = []


def _can_compile() -> bool:
    """A C++ compiler for inductor is on the PATH, and no compilation has failed here."""
    return not _COMPILE_FAILED and any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def _call(block: ConvBlock, form: Form, which: int, *args) -> tuple[Tensor, ...]:
    """Run kernel ``which`` in ``form``; a compiled kernel that fails to compile (no working
    compiler) falls back to the eager one, with one warning per process (``auto`` then runs
    the separate layers from the next block on)."""
    if form == "eager" or torch.compiler.is_compiling():
        return _EAGER[which](*args)
    # The compiled loops are written for channels-last memory; any other layout would be a
    # recompilation with strided loads (an NCHW tensor reaches them from Flatten's gradient).
    args = tuple(_channels_last(a) if isinstance(a, Tensor) and a.dim() == 4 else a for a in args)
    try:
        return kernels.compiled()[which](*args)
    except Exception as error:  # compilation needs a C++ toolchain; the eager form is exact
        if block.settings.mode == "compiled":
            raise
        _COMPILE_FAILED.append(f"{type(error).__name__}: {error}")
        warnings.warn(
            f"train.kernels auto: compiling the fused kernels failed ({_COMPILE_FAILED[0][:200]}); "
            "running the separate layers",
            RuntimeWarning,
            stacklevel=2,
        )
        return _EAGER[which](*args)


def _channels_last(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last)


class _Forward(torch.autograd.Function):
    """``p = pool(act(BatchNorm(z)))``; its backward (the meta-gradient) is the input-gradient
    kernel, which also yields the gradients of ``gamma`` and ``beta``."""

    @staticmethod
    def forward(ctx, z: Tensor, gamma: Tensor, beta: Tensor, block: ConvBlock, form: Form):
        eps = block.norm.module.eps
        p, code, mean, invstd = _call(block, form, 0, z, gamma, beta, eps, block.slope)
        ctx.save_for_backward(z, gamma, beta, mean, invstd, code)
        ctx.block, ctx.form = block, form
        ctx.mark_non_differentiable(code, mean, invstd)
        ctx.set_materialize_grads(False)  # no activation-sized zeros for the codes
        return p, code, mean, invstd

    @staticmethod
    def backward(ctx, dp: Tensor, *_):
        if dp is None:
            return None, None, None, None, None
        z, gamma, beta, mean, invstd, code = ctx.saved_tensors
        block = ctx.block
        if torch.is_grad_enabled():  # differentiated again (a user's loss, second order)
            return (*block.unfused_vjp(z, gamma, beta, dp), None, None)
        args = (z, dp, gamma, mean, invstd, code, block.slope)
        dz, sum_g, sum_gx = _call(block, ctx.form, 1, *args)
        return dz, sum_gx, sum_g, None, None


class _InputGrad(torch.autograd.Function):
    """``dz`` from the gradient ``dp`` of the block's output (the inner loop's backward), with
    its derivative written out (:func:`alfa.engine.fast.kernels.input_grad_backward`)."""

    @staticmethod
    def forward(ctx, z, dp, gamma, mean, invstd, code, block: ConvBlock, form: Form):
        args = (z, dp, gamma, mean, invstd, code, block.slope)
        dz, sum_g, sum_gx = _call(block, form, 1, *args)
        ctx.save_for_backward(z, dp, gamma, mean, invstd, code, sum_g, sum_gx)
        ctx.block, ctx.form = block, form
        return dz

    @staticmethod
    @once_differentiable
    def backward(ctx, u: Tensor):
        z, dp, gamma, mean, invstd, code, sum_g, sum_gx = ctx.saved_tensors
        args = (u, z, dp, gamma, mean, invstd, code, ctx.block.slope, sum_g, sum_gx)
        d_z, d_dp, d_gamma = _call(ctx.block, ctx.form, 2, *args)
        return d_z, d_dp, d_gamma, None, None, None, None, None


class _ConvGrads(torch.autograd.Function):
    """The gradients of a convolution's input and weight, ``(dx, dw)``, for output gradient
    ``dz``, with their derivative written as four ordinary convolution kernels.

    Autograd's own derivative of ``convolution_backward`` computes the weight term as a
    convolution with batch and channels swapped (an activation-sized kernel) after transposing
    copies of both operands; that ran at half the rate of the plain kernels and was a fifth of
    the convolution time of a 4-CONV meta-iteration. Both gradients are bilinear:
    ``dx = conv_transpose(dz, w)`` and ``dw = correlate(x, dz)``, so for upstream ``(u, v)``::

        d/ddz = conv(u, w) + conv(x, v)      (forward convolutions)
        d/dw  = correlate(u, dz)             (a weight-gradient kernel)
        d/dx  = conv_transpose(dz, v)        (an input-gradient kernel)
    """

    @staticmethod
    def forward(ctx, dz, x, w, stride: int, padding: int, groups: int, need_dx: bool):
        dx, dw, _ = _conv_backward(dz, x, w, stride, padding, groups, (need_dx, True))
        ctx.save_for_backward(dz, x, w)
        ctx.conv = (stride, padding, groups)
        return dx, dw

    @staticmethod
    @once_differentiable
    def backward(ctx, u, v):
        dz, x, w = ctx.saved_tensors
        stride, padding, groups = ctx.conv
        need_dz, need_x, need_w = ctx.needs_input_grad[:3]
        if dz.is_contiguous(memory_format=torch.channels_last):  # keep the outputs NHWC
            v = _channels_last(v)
        g_dz = g_x = g_w = None
        if need_dz:
            g_dz = F.conv2d(x, v, None, stride, padding, 1, groups)
            if u is not None:
                g_dz = g_dz.add_(F.conv2d(u, w, None, stride, padding, 1, groups))
            if dz.is_contiguous(memory_format=torch.channels_last):  # as the kernels take it
                g_dz = _channels_last(g_dz)
        if need_w and u is not None:
            g_w = _conv_backward(dz, u, w, stride, padding, groups, (False, True))[1]
        if need_x:
            g_x = _conv_backward(dz, x, v, stride, padding, groups, (True, False))[0]
        return g_dz, g_x, g_w, None, None, None, None


def _conv_backward(
    dz: Tensor, x: Tensor, w: Tensor, stride: int, padding: int, groups: int, mask
) -> tuple[Tensor, Tensor, Tensor]:
    return torch.ops.aten.convolution_backward(
        dz, x, w, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], groups, [*mask, False]
    )


@dataclass
class ConvBlock(Layer):
    """``conv -> BatchNorm -> LeakyReLU (or ReLU) -> MaxPool 2x2``, fused after the convolution.

    Args:
        conv: the convolution (its bias gradient is zero under whole-batch BatchNorm).
        norm: the BatchNorm (affine parameters shared by the tasks, never adapted).
        act: the activation layer (kept for the unfused path).
        slope: the activation's negative slope (0 for ReLU).
        pool: the 2x2 stride-2 max-pooling without padding.
        settings: the program's kernel settings (``train.kernels``).
    """

    conv: Conv
    norm: BatchNorm
    act: Layer
    slope: float
    pool: MaxPool
    settings: KernelSettings = field(default_factory=KernelSettings)

    def __post_init__(self) -> None:
        self.adapted = self.conv.adapted

    @property
    def parts(self) -> list[Layer]:
        return [self.conv, self.norm, self.act, self.pool]

    def _affine(self, z: Tensor) -> tuple[Tensor, Tensor]:
        m = self.norm.module
        groups = z.shape[1] // m.num_features
        if m.weight is None:
            ones = torch.ones(z.shape[1], dtype=z.dtype, device=z.device)
            return ones, torch.zeros_like(ones)
        return m.weight.repeat(groups), m.bias.repeat(groups)

    def _weight(self, params) -> tuple[Tensor, int]:
        """The convolution's ``[G*O, C, k, k]`` weight in channels-last memory: oneDNN then
        writes channels-last outputs even where the input is ambiguous (one channel)."""
        w = params[self.conv.weight]
        return _channels_last(self.conv._flat(w)), w.shape[0]

    def forward(self, params, x, split):
        conv = self.conv
        w = params[conv.weight]
        k = w.shape[-1]
        size = [(n + 2 * conv.padding - k) // conv.stride + 1 for n in x.shape[2:]]
        form = self.settings.form(x.device, x.shape[0] * w.shape[0] * w.shape[1] * math.prod(size))
        if split is not None or form == "unfused":
            z, x_saved = conv.forward(params, x, split)
            y, saved = run_forward(self.parts[1:], params, z, split)
            return y, (None, x_saved, saved)
        weight, groups = self._weight(params)
        bias = params[conv.bias].reshape(-1) if conv.bias is not None else None
        # channels-last already, except from one input channel, where oneDNN writes NCHW
        z = _channels_last(F.conv2d(x, weight, bias, conv.stride, conv.padding, 1, groups))
        gamma, beta = self._affine(z)
        p, code, mean, invstd = _Forward.apply(z, gamma, beta, self, form)
        return p, (form, x, (z, gamma, mean, invstd, code))

    def backward(self, params, saved, dy, need_dx=True):
        form, x_saved, inner = saved
        if form is None:
            dz = run_backward(self.parts[1:], params, inner, dy, {})
            return self.conv.backward(params, x_saved, dz, need_dx)
        z, gamma, mean, invstd, code = inner
        dz = _InputGrad.apply(z, dy, gamma, mean, invstd, code, self, form)
        conv, w = self.conv, params[self.conv.weight]
        if self.settings.autograd_conv_grads:
            dx, grads = dataclasses.replace(conv, bias=None).backward(params, x_saved, dz, need_dx)
        else:
            weight, groups = self._weight(params)
            args = (dz, x_saved, weight, conv.stride, conv.padding, groups, need_dx)
            dx, dw = _ConvGrads.apply(*args)
            grads = {conv.weight: dw.view(w.shape)}
        if conv.bias is not None:
            grads[conv.bias] = torch.zeros_like(params[conv.bias])
        return dx, grads

    def unfused_vjp(
        self, z: Tensor, gamma: Tensor, beta: Tensor, dp: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The gradient of the block after the convolution by autograd over PyTorch's own
        layers, differentiable again (used only when a backward is itself differentiated)."""
        eps = self.norm.module.eps
        p = F.max_pool2d(
            F.leaky_relu(F.batch_norm(z, None, None, gamma, beta, True, 0.0, eps), self.slope),
            2,
            2,
        )
        inputs = [t for t in (z, gamma, beta) if t.requires_grad]
        grads = iter(torch.autograd.grad(p, inputs, dp, create_graph=True))
        return tuple(next(grads) if t.requires_grad else None for t in (z, gamma, beta))  # type: ignore[return-value]
