"""CUDA checks (skipped where no GPU is present, as in CI)."""

from __future__ import annotations

import copy

import pytest
import torch

from alfa.typing import TaskBatch
from metahelpers import make_batch, make_learner
from test_reference import (
    ENGINES,
    build_engine,
    image_batch,
    meta_gradients,
    randomise,
    reference_gradients,
    spec_for,
)

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("rule", ["maml", "alfa"])
def test_cuda_meta_gradient_equals_cpu(rule):
    learner = make_learner({"name": rule}, hidden=(16, 16), steps=3)
    batch = make_batch(tasks=5, shots=5)
    cuda = copy.deepcopy(learner).cuda()
    cpu_grads = torch.autograd.grad(learner(batch).loss, list(learner.parameters()))
    gpu_batch = TaskBatch(*(t.cuda() for t in batch))
    gpu_grads = torch.autograd.grad(cuda(gpu_batch).loss, list(cuda.parameters()))
    for a, b in zip(cpu_grads, gpu_grads, strict=True):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-7, atol=1e-9)


def test_cuda_conv4_training_step():
    from alfa.config import RuleConfig
    from alfa.engine.functional import FunctionalModel
    from alfa.engine.meta_learner import MetaLearner
    from alfa.models.conv4 import Conv4
    from alfa.rules import build_rule

    torch.manual_seed(0)
    model = Conv4(5, in_channels=3, filters=8, image_size=32)
    f = FunctionalModel(model)
    rule = build_rule(RuleConfig(name="alfa"), f.names, [p.shape for p in f.initial().values()], 2)
    cpu = MetaLearner(model, rule, task="classification", steps=2).double()
    learner = copy.deepcopy(cpu).cuda()
    g = torch.Generator().manual_seed(0)
    batch = TaskBatch(
        torch.randn(2, 5, 3, 32, 32, generator=g, dtype=torch.float64),
        torch.arange(5).repeat(2, 1),
        torch.randn(2, 10, 3, 32, 32, generator=g, dtype=torch.float64),
        torch.arange(5).repeat_interleave(2).repeat(2, 1),
    )
    out = learner(batch.to("cuda"))
    out.loss.backward()
    expected = cpu(batch)
    expected.loss.backward()
    # The same training step as on the CPU (float64: no TF32), every meta-gradient included.
    torch.testing.assert_close(out.loss.cpu(), expected.loss, rtol=1e-9, atol=0)
    scale = max(float(p.grad.abs().max()) for p in cpu.parameters() if p.grad is not None)
    for (name, p), q in zip(learner.named_parameters(), cpu.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        if q.grad is not None:
            torch.testing.assert_close(p.grad.cpu(), q.grad, rtol=1e-7, atol=1e-9 * scale)
    assert all(p.grad is not None for p in learner.rule.parameters() if p.requires_grad)


def conv4_against_reference(device: str, norm: str, engine: str | None) -> None:
    """The engine on ``device`` against the per-task reference on the CPU, float64 (TF32 and
    reduced-precision reductions do not apply): ALFA (official init) + L2F on a 4-CONV."""
    from alfa.models.conv4 import Conv4

    torch.manual_seed(0)
    model = Conv4(3, in_channels=1, filters=8, image_size=16, norm=norm)
    rule = {"name": "alfa", "generator_init": "official", "l2f": True}
    learner = build_engine(model, rule, task="classification", engine=engine)
    randomise(learner)
    batch = image_batch(size=16)
    ref, ref_grads = reference_gradients(learner, spec_for(rule, task="classification"), batch)
    loss, grads, _ = meta_gradients(learner.to(device), batch.to(device))
    torch.testing.assert_close(loss.cpu(), ref.loss.detach(), rtol=1e-9, atol=0)
    scale = max(float(g.abs().max()) for g in ref_grads.values())
    for name, expected in ref_grads.items():
        torch.testing.assert_close(grads[name].cpu(), expected, rtol=1e-7, atol=1e-9 * scale)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("norm", ["transductive", "support"])
def test_cuda_conv4_meta_gradient_equals_reference(norm, engine):
    conv4_against_reference("cuda", norm, engine)
