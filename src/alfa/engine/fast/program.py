"""Recognise a base learner built from standard layers and write it as a list of fast layers.

:func:`compile_program` returns a :class:`Program` for the project's backbones (MLP, 4-CONV,
ResNet12) and for any ``nn.Sequential`` of Linear, Conv2d, MetaBatchNorm2d, ReLU, LeakyReLU,
MaxPool2d and Flatten; for anything else it returns None and the generic autograd path is used.
Classes are matched exactly (a subclass may override ``forward``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from alfa.engine.fast.batchnorm import BatchNorm
from alfa.engine.fast.fused import ConvBlock, KernelSettings
from alfa.engine.fast.layers import (
    Conv,
    Flatten,
    GlobalAvgPool,
    Layer,
    LeakyReLU,
    Linear,
    ReLU,
    Residual,
)
from alfa.engine.fast.pooling import MaxPool
from alfa.models.batchnorm import MetaBatchNorm2d
from alfa.models.conv4 import _LEAKY_SLOPE, Conv4
from alfa.models.mlp import MLP
from alfa.models.resnet12 import ResNet12

__all__ = ["Program", "compile_program", "unsupported"]


@dataclass
class Program:
    """A base learner as fast layers.

    Attributes:
        layers: the layers in order.
        images: True when the input is ``[B, C, H, W]`` images (else ``[B, F]`` vectors).
        support_norm: True when the query set is normalised with the support set's statistics.
        kernels: how its fused blocks run (``train.kernels``), shared by them.
    """

    layers: list[Layer]
    images: bool
    support_norm: bool = False
    kernels: KernelSettings = field(default_factory=KernelSettings)

    def __post_init__(self) -> None:
        for layer in self.layers:
            if isinstance(layer, ConvBlock):
                layer.settings = self.kernels


class _Unsupported(Exception):
    pass


def _prefix(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _linear(m: nn.Linear, prefix: str) -> Linear:
    bias = _prefix(prefix, "bias") if m.bias is not None else None
    return Linear(_prefix(prefix, "weight"), bias)


def _conv(m: nn.Conv2d, prefix: str) -> Conv:
    square = m.kernel_size[0] == m.kernel_size[1]
    stride, padding = m.stride, m.padding
    if (
        type(m) is not nn.Conv2d
        or not square
        or m.groups != 1
        or m.dilation != (1, 1)
        or m.padding_mode != "zeros"
        or isinstance(padding, str)
        or stride[0] != stride[1]
        or padding[0] != padding[1]
    ):
        raise _Unsupported(prefix)
    bias = _prefix(prefix, "bias") if m.bias is not None else None
    return Conv(_prefix(prefix, "weight"), bias, stride[0], padding[0])


def _norm(m: MetaBatchNorm2d) -> BatchNorm:
    return BatchNorm(m)  # reads the module's affine parameters at every call


def _pool(m: nn.MaxPool2d) -> MaxPool:
    def one(v):
        return v if isinstance(v, int) else (v[0] if v[0] == v[1] else None)

    kernel, stride, padding = one(m.kernel_size), one(m.stride), one(m.padding)
    if None in (kernel, stride, padding) or m.dilation not in (1, (1, 1)) or m.ceil_mode:
        raise _Unsupported("MaxPool2d")
    return MaxPool(kernel, stride, padding)


def _sequential(seq: nn.Sequential, prefix: str) -> tuple[list[Layer], bool]:
    layers: list[Layer] = []
    images = None
    for name, m in seq.named_children():
        path = _prefix(prefix, name)
        kind = type(m)
        if kind is nn.Linear:
            layers.append(_linear(m, path))
            images = False if images is None else images
        elif kind is nn.Conv2d:
            layers.append(_conv(m, path))
            images = True if images is None else images
        elif kind is MetaBatchNorm2d:
            layers.append(_norm(m))
        elif kind is nn.ReLU:
            layers.append(ReLU())
        elif kind is nn.LeakyReLU:
            layers.append(LeakyReLU(m.negative_slope))
        elif kind is nn.MaxPool2d:
            layers.append(_pool(m))
        elif kind is nn.Flatten and m.start_dim == 1 and m.end_dim == -1:
            layers.append(Flatten())
            images = True if images is None else images  # before any layer: image input
        else:
            raise _Unsupported(path)
    if images is None:
        raise _Unsupported(prefix)
    return layers, images


def _conv4(model: Conv4) -> list[Layer]:
    layers: list[Layer] = []
    for i, block in enumerate(model.blocks):
        conv, norm = _conv(block.conv, f"blocks.{i}.conv"), _norm(block.norm)
        act = LeakyReLU(_LEAKY_SLOPE)
        layers.append(ConvBlock(conv, norm, act, _LEAKY_SLOPE, MaxPool(2, 2, 0)))
    return [*layers, Flatten(), _linear(model.classifier, "classifier")]


def _resnet12(model: ResNet12) -> list[Layer]:
    layers: list[Layer] = []
    for i, b in enumerate(model.blocks):
        p = f"blocks.{i}"
        main = [
            _conv(b.conv1, f"{p}.conv1"),
            _norm(b.norm1),
            ReLU(),
            _conv(b.conv2, f"{p}.conv2"),
            _norm(b.norm2),
            ReLU(),
            _conv(b.conv3, f"{p}.conv3"),
            _norm(b.norm3),
        ]
        shortcut = [_conv(b.shortcut_conv, f"{p}.shortcut_conv"), _norm(b.shortcut_norm)]
        post: list[Layer] = [ReLU()]
        if b.pool_padding is not None:
            post.append(MaxPool(2, 2, b.pool_padding))
        layers.append(Residual(main, shortcut, post))
    return [*layers, GlobalAvgPool(), _linear(model.classifier, "classifier")]


def compile_program(model: nn.Module) -> Program | None:
    """The fast program of ``model``, or None when it has a layer the fast path does not know."""
    try:
        return _compile(model)
    except _Unsupported:
        return None


def _compile(model: nn.Module) -> Program | None:
    """:func:`compile_program`, raising ``_Unsupported(path)`` at the first unknown layer."""
    kind = type(model)
    if kind is MLP:
        layers, images = _sequential(model.net, "net")
        return Program(layers, images)
    if kind is Conv4:
        return Program(_conv4(model), True, model.norm_mode == "support")
    if kind is ResNet12:
        return Program(_resnet12(model), True, model.norm_mode == "support")
    if kind is nn.Sequential:
        layers, images = _sequential(model, "")
        return Program(layers, images)
    return None


def unsupported(model: nn.Module) -> str | None:
    """Why the fast path does not take ``model`` (the first module it does not know, named
    with its type), or None when it does."""
    kind = type(model)
    if kind not in (MLP, Conv4, ResNet12, nn.Sequential):
        return f"the model is a {kind.__name__}, not an nn.Sequential of the layers it knows"
    try:
        _compile(model)
    except _Unsupported as exc:
        path = str(exc.args[0]) if exc.args else ""
        try:
            module = model.get_submodule(path) if path else model
        except AttributeError:
            return f"it does not know the layer {path}"
        return f"it does not know the layer '{path or '(root)'}' ({type(module).__name__})"
    return None
