"""The fused 4-CONV block (``alfa.engine.fast.fused``) computes what the separate layers compute.

Float64: the block's output, its written-out gradients and their derivatives (what a
second-order meta-gradient differentiates) equal autograd's through PyTorch's own layers, for
leaky ReLU and ReLU, odd and even sizes, ties in the pooling windows, tasks side by side on the
channels, with and without BatchNorm's affine parameters; whole meta-iterations agree whatever
``train.kernels`` says; the compiled kernels equal the eager ones.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alfa.config import TrainConfig
from alfa.engine.execution import meta_step, reuse_host_memory
from alfa.engine.fast import kernels
from alfa.engine.fast.batchnorm import BatchNorm
from alfa.engine.fast.fused import ConvBlock, KernelSettings
from alfa.engine.fast.layers import Conv, LeakyReLU, ReLU
from alfa.engine.fast.pooling import MaxPool
from alfa.engine.functional import FunctionalModel
from alfa.engine.meta_learner import MetaLearner
from alfa.models.batchnorm import MetaBatchNorm2d
from alfa.models.conv4 import Conv4
from alfa.rules import ALFA
from alfa.typing import TaskBatch

CPU = torch.device("cpu")


def _block(slope: float, affine: bool = True, mode: str = "eager", channels: int = 4):
    norm = MetaBatchNorm2d(channels, affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    act = LeakyReLU(slope) if slope else ReLU()
    conv = Conv("w", "b", 1, 1)
    return ConvBlock(conv, BatchNorm(norm), act, slope, MaxPool(2, 2, 0), KernelSettings(mode))


def _autograd(block: ConvBlock, params, x):
    """The block through PyTorch's own layers."""
    w, b = params["w"], params["b"]
    groups = w.shape[0]
    z = F.conv2d(x, w.reshape(-1, *w.shape[2:]), b.reshape(-1), 1, 1, 1, groups)
    m = block.norm.module
    gamma = m.weight.repeat(groups) if m.weight is not None else None
    beta = m.bias.repeat(groups) if m.bias is not None else None
    y = F.batch_norm(z, None, None, gamma, beta, True, 0.0, m.eps)
    return F.max_pool2d(F.leaky_relu(y, block.slope), 2, 2)


def _check(block: ConvBlock, x: torch.Tensor, groups: int = 1) -> None:
    g = torch.Generator().manual_seed(3)
    params = {
        "w": torch.randn(groups, 4, x.shape[1] // groups, 3, 3, generator=g).requires_grad_(),
        "b": torch.randn(groups, 4, generator=g).requires_grad_(),
    }
    x = x.clone().requires_grad_()
    shared = [p for p in block.norm.module.parameters()]
    y, saved = block.forward(params, x, None)
    expected_y = _autograd(block, params, x)
    torch.testing.assert_close(y, expected_y, rtol=1e-12, atol=1e-12)
    dy = torch.randn(y.shape, generator=g)
    inputs = [x, params["w"], params["b"]]
    expected = torch.autograd.grad((expected_y * dy).sum(), inputs, create_graph=True)
    dx, grads = block.backward(params, saved, dy)
    got = [dx, grads["w"], grads["b"]]
    for e, h in zip(expected, got, strict=True):
        torch.testing.assert_close(h, e, rtol=1e-10, atol=1e-11)
    # Second order: a functional of the gradients and of the output, differentiated.
    probes = [torch.randn(e.shape, generator=g) for e in expected]
    probe_y = torch.randn(y.shape, generator=g)
    wrt = [*inputs, *shared]

    def second(out, grads_):
        total = (out * probe_y).sum() + sum(
            (a * p).sum() for a, p in zip(grads_, probes, strict=True)
        )
        res = torch.autograd.grad(total, wrt, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(i) if r is None else r for r, i in zip(res, wrt, strict=True)]

    for e, h in zip(second(expected_y, expected), second(y, got), strict=True):
        torch.testing.assert_close(h, e, rtol=1e-9, atol=1e-10)


pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("slope", [0.01, 0.0, 0.3])
@pytest.mark.parametrize("size", [8, 7, 5])
def test_block_matches_autograd_through_the_layers(slope, size):
    g = torch.Generator().manual_seed(size)
    _check(_block(slope), torch.randn(5, 3, size, size, generator=g) * 2 + 0.5)


def test_block_with_ties_and_without_affine_parameters():
    """Integer inputs make many equal values in a window (and ReLU zeros): the gradient goes
    to the first maximum in row-major order, as PyTorch's pooling sends it."""
    g = torch.Generator().manual_seed(4)
    x = torch.randint(-2, 3, (4, 3, 6, 6), generator=g).double()
    _check(_block(0.0, affine=False), x)
    _check(_block(0.01), x)


def test_block_with_tasks_side_by_side():
    g = torch.Generator().manual_seed(5)
    _check(_block(0.01), torch.randn(4, 6, 6, 6, generator=g), groups=2)


def test_the_conv_bias_gradient_is_zero_under_batchnorm():
    block = _block(0.01)
    g = torch.Generator().manual_seed(6)
    params = {"w": torch.randn(1, 4, 3, 3, 3, generator=g), "b": torch.randn(1, 4, generator=g)}
    y, saved = block.forward(params, torch.randn(5, 3, 6, 6, generator=g), None)
    _, grads = block.backward(params, saved, torch.randn(y.shape, generator=g))
    assert torch.equal(grads["b"], torch.zeros(1, 4))


def _learner(kernels_mode: str, autograd_conv_grads: bool = False, loss_fn=None):
    torch.manual_seed(0)
    model = Conv4(3, in_channels=1, filters=4, image_size=16)
    functional = FunctionalModel(model)
    shapes = [p.shape for p in functional.initial().values()]
    rule = ALFA(functional.names, shapes, 2, lr=0.1, generator_init="official")
    learner = MetaLearner(model, rule, task="classification", steps=2, loss_fn=loss_fn)
    step = meta_step(learner, TrainConfig(kernels=kernels_mode), CPU)
    learner.functional.program.kernels.autograd_conv_grads = autograd_conv_grads
    return learner, step


def _batch() -> TaskBatch:
    g = torch.Generator().manual_seed(2)

    def split(k):
        x = torch.randn(2, 3 * k, 1, 16, 16, generator=g)
        return x, torch.arange(3).repeat(k).expand(2, -1).contiguous()

    return TaskBatch(*split(2), *split(3))


def _meta(learner, step, batch):
    loss = step(batch).loss
    params = [p for p in learner.parameters() if p.requires_grad]
    return loss, torch.autograd.grad(loss, params)


@pytest.mark.parametrize(
    ("mode", "autograd_conv_grads"),
    [
        ("eager", False),
        ("eager", True),
        pytest.param("compiled", False, marks=pytest.mark.slow),
    ],
)
def test_meta_gradients_equal_the_unfused_layers(mode, autograd_conv_grads):
    batch = _batch()
    ref_loss, ref_grads = _meta(*_learner("unfused"), batch)
    learner, step = _learner(mode, autograd_conv_grads)
    assert learner.functional.channels_last is None  # NHWC where the blocks are fused
    assert learner.functional._layout(batch.support_x).is_contiguous(
        memory_format=torch.channels_last
    )
    loss, grads = _meta(learner, step, batch)
    assert abs(loss.item() - ref_loss.item()) <= 1e-12 * abs(ref_loss.item())
    overall = max(g.abs().max().item() for g in ref_grads)
    for a, b in zip(grads, ref_grads, strict=True):
        assert (a - b).abs().max().item() <= 1e-10 * b.abs().max().item() + 1e-13 * overall


def test_a_users_loss_differentiates_the_fused_forward_twice():
    """A loss without a closed-form gradient: autograd differentiates the fast forward with
    ``create_graph``, so the block's backward is itself differentiated (second order)."""

    def smooth(logits, labels):
        return (F.softplus(logits).mean(-1) - logits.gather(-1, labels[..., None])[..., 0]).mean(1)

    batch = _batch()
    ref_loss, ref_grads = _meta(*_learner("unfused", loss_fn=smooth), batch)
    loss, grads = _meta(*_learner("eager", loss_fn=smooth), batch)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_compiled_kernels_equal_the_eager_ones():
    """The three kernels under ``torch.compile`` (float64, two sizes: one even, one odd, so
    both the padding and the cropped last row and column are exercised)."""
    torch._dynamo.reset()
    compiled = kernels.compiled()
    g = torch.Generator().manual_seed(7)
    for shape in [(6, 5, 8, 8), (5, 5, 7, 9)]:
        z = (torch.randn(shape, generator=g) * 2 + 1).contiguous(memory_format=torch.channels_last)
        gamma, beta = torch.rand(5, generator=g) + 0.5, torch.randn(5, generator=g)
        args = (z, gamma, beta, 1e-5, 0.01)
        fwd_e, fwd_c = kernels.forward(*args), compiled[0](*args)
        p, code, mean, invstd = fwd_e
        dp, u = torch.randn(p.shape, generator=g), torch.randn(shape, generator=g)
        grad_args = (z, dp, gamma, mean, invstd, code, 0.01)
        grad_e, grad_c = kernels.input_grad(*grad_args), compiled[1](*grad_args)
        gg_args = (u, *grad_args, grad_e[1], grad_e[2])
        gg_e, gg_c = kernels.input_grad_backward(*gg_args), compiled[2](*gg_args)
        assert torch.equal(fwd_c[1], code)
        for e, c in zip((*fwd_e, *grad_e, *gg_e), (*fwd_c, *grad_c, *gg_c), strict=True):
            torch.testing.assert_close(c, e, rtol=1e-10, atol=1e-12)
        assert grad_c[0].is_contiguous(memory_format=torch.channels_last)


def test_reusing_host_memory_applies_once():
    assert reuse_host_memory() is reuse_host_memory()
