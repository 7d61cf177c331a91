"""Each fast layer's written-out backward equals autograd's gradient of its forward, and its
derivative (what a second-order meta-gradient differentiates) equals autograd's too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alfa.engine.fast.batchnorm import BatchNorm
from alfa.engine.fast.layers import Conv, LeakyReLU, Linear, ReLU
from alfa.engine.fast.pooling import MaxPool
from alfa.models.batchnorm import MetaBatchNorm2d

pytestmark = pytest.mark.usefixtures("float64")


def _check(layer, params, x, split=None, atol=1e-12, shared=()):
    """Backward vs autograd for the input and every adapted tensor, and the second derivative
    of a random functional of the written-out gradients vs autograd's double backward, also
    with respect to the ``shared`` tensors (BatchNorm's affine parameters)."""
    x = x.clone().requires_grad_(True)
    params = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    y, saved = layer.forward(params, x, split)
    dy = torch.randn_like(y)
    expected = torch.autograd.grad((y * dy).sum(), [x, *params.values()], create_graph=True)
    dx, grads = layer.backward(params, saved, dy)
    got = [dx, *(grads[n] for n in params)]
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=atol)
    # Second order: differentiate a random functional of the gradients.
    probes = [torch.randn_like(e) for e in expected]
    inputs = [x, *params.values(), *shared]

    def second(grads):
        total = sum((a * p).sum() for a, p in zip(grads, probes, strict=True))
        out = torch.autograd.grad(total, inputs, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(i) if o is None else o for o, i in zip(out, inputs, strict=True)]

    for w, h in zip(second(expected), second(got), strict=True):
        torch.testing.assert_close(h, w, rtol=1e-9, atol=atol)


def test_linear():
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(3, 4, 5, generator=g), "b": torch.randn(3, 4, generator=g)}
    _check(Linear("w", "b"), params, torch.randn(3, 6, 5, generator=g))


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 1), (1, 0)])
def test_conv(groups, stride, padding):
    g = torch.Generator().manual_seed(1)
    params = {"w": torch.randn(groups, 4, 3, 3, 3, generator=g), "b": torch.randn(groups, 4)}
    _check(Conv("w", "b", stride, padding), params, torch.randn(5, 3 * groups, 7, 7, generator=g))


@pytest.mark.parametrize("split", [None, 3])
@pytest.mark.parametrize("groups", [1, 2])
def test_batch_norm(split, groups):
    module = MetaBatchNorm2d(3)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
    x = torch.randn(5, 3 * groups, 4, 4) * 2 + 1
    _check(BatchNorm(module), {}, x, split, shared=(module.weight, module.bias))


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(0.1)])
def test_activations(layer):
    _check(layer, {}, torch.randn(4, 3, 5, 5))


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (5, 4)])
def test_max_pool_matches_pytorch_including_ties(size, padding):
    """Windows full of equal values (ReLU zeros, integers): the gradient goes to the first
    maximum in row-major order, as PyTorch's own pooling sends it."""
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 3, (3, 2, *size), generator=g).double()
    layer = MaxPool(2, 2, padding)
    y, _ = layer.forward({}, x, None)
    torch.testing.assert_close(y, F.max_pool2d(x, 2, 2, padding), rtol=0, atol=0)
    _check(layer, {}, x)
    _check(layer, {}, torch.randn(3, 2, *size, generator=g))


def test_max_pool_other_shapes_use_the_kernel():
    _check(MaxPool(3, 2, 1), {}, torch.randn(2, 2, 9, 9))
