"""Update rules: hand-computed single steps, switches, and a conformance suite over every rule."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alfa.rules import ALFA, L2F, MAML, HyperparameterGenerator, LearnedFixed, StepLayerTable

NAMES = ("w", "b")
SHAPES = (torch.Size([2, 3]), torch.Size([2]))


def _params(tasks: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        n: torch.randn((tasks, *s), generator=g, dtype=torch.float64)
        for n, s in zip(NAMES, SHAPES, strict=True)
    }


def test_maml_step_is_plain_sgd():
    rule = MAML(NAMES, SHAPES, steps=1, lr=0.1).double()
    params, grads = _params(seed=0), _params(seed=1)
    new, hyper = rule.update(0, params, grads)
    for n in NAMES:
        torch.testing.assert_close(new[n], params[n] - 0.1 * grads[n], rtol=0, atol=1e-15)
    assert torch.all(hyper.beta == 0)


def test_alfa_single_step_by_hand():
    """One ALFA step on tiny tensors equals the formula worked out by hand (Eqs. 4, 5, 7)."""
    rule = ALFA(NAMES, SHAPES, steps=2, lr=0.5, weight_decay=0.2, generator_init="official")
    rule = rule.double()
    lin1, lin2 = rule.generator.net[0], rule.generator.net[2]
    with torch.no_grad():
        lin1.weight.copy_(torch.eye(4, dtype=torch.float64))
        lin1.bias.zero_()
        lin2.weight.copy_(torch.eye(4, dtype=torch.float64) * 2.0)
        lin2.bias.copy_(torch.tensor([1.0, 0.5, 0.25, -1.0], dtype=torch.float64))
        rule.alpha0.value.copy_(torch.tensor([[0.5, 0.25], [1.0, 1.0]]))
        rule.beta0.value.copy_(torch.tensor([[0.1, 0.2], [1.0, 1.0]]))
    w = torch.tensor([[[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]]], dtype=torch.float64)  # mean 1
    b = torch.tensor([[0.5, -0.5]], dtype=torch.float64)  # mean 0
    gw = torch.tensor([[[0.6, 0.6, 0.6], [0.6, 0.6, 0.6]]], dtype=torch.float64)  # mean 0.6
    gb = torch.tensor([[-0.2, -0.6]], dtype=torch.float64)  # mean -0.4
    new, hyper = rule.update(0, {"w": w, "b": b}, {"w": gw, "b": gb})
    # state = [1, 0, 0.6, -0.4]; relu -> [1, 0, 0.6, 0]; out = 2*h + bias = [3, 0.5, 1.45, -1]
    alpha = [0.5 * 3.0, 0.25 * 0.5]
    beta = [0.1 * 1.45, 0.2 * -1.0]
    torch.testing.assert_close(hyper.alpha[0], torch.tensor(alpha, dtype=torch.float64))
    torch.testing.assert_close(hyper.beta[0], torch.tensor(beta, dtype=torch.float64))
    torch.testing.assert_close(new["w"], (1 - beta[0]) * w - alpha[0] * gw)
    torch.testing.assert_close(new["b"], (1 - beta[1]) * b - alpha[1] * gb)


def test_unit_init_starts_at_post_multipliers():
    gen = HyperparameterGenerator(6, 6, 6, init="unit")
    out = gen(torch.randn(5, 6))
    assert torch.equal(out, torch.ones(5, 6))
    rule = ALFA(NAMES, SHAPES, steps=3).double()
    hyper = rule.hyperparameters(1, _params(), _params(seed=2))
    torch.testing.assert_close(hyper.alpha, torch.full((2, 2), 0.01, dtype=torch.float64))
    torch.testing.assert_close(hyper.beta, torch.full((2, 2), 0.01 * 0.0005, dtype=torch.float64))


def test_official_init_is_pytorch_default():
    torch.manual_seed(3)
    gen = HyperparameterGenerator(4, 4, 4, init="official")
    torch.manual_seed(3)
    ref = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4))
    for a, b in zip(gen.parameters(), ref.parameters(), strict=False):
        assert torch.equal(a, b)


def test_generator_layers_match_paper_and_code_counts():
    n = 10
    two = HyperparameterGenerator(2 * n, 2 * n, 2 * n, layers=2)
    three = HyperparameterGenerator(2 * n, 2 * n, 2 * n, layers=3)
    assert sum(p.numel() for p in two.parameters()) == 8 * n * n + 4 * n  # official code
    assert sum(p.numel() for p in three.parameters()) == 12 * n * n + 6 * n  # paper's count


def test_generator_clip_bounds_outputs():
    gen = HyperparameterGenerator(3, 3, 3, init="official", clip=(0.0, 0.5))
    out = gen(torch.randn(100, 3) * 10)
    assert out.min() >= 0.0 and out.max() <= 0.5


@pytest.mark.parametrize("inputs, width", [("both", 4), ("weights", 2), ("gradients", 2)])
def test_generator_input_switch(inputs, width):
    rule = ALFA(NAMES, SHAPES, steps=1, generator_input=inputs).double()
    assert rule.learning_state(_params(), _params(seed=1)).shape == (2, width)
    assert rule.generator.net[0].in_features == width


@pytest.mark.parametrize("detach", [True, False])
def test_learning_state_detaches_only_gradients(detach):
    rule = ALFA(NAMES, SHAPES, steps=1, detach_gradient_state=detach).double()
    params = {n: t.requires_grad_() for n, t in _params().items()}
    grads = {n: t * 2 for n, t in params.items()}  # a graph back to params
    state = rule.learning_state(params, grads)
    (d_w,) = torch.autograd.grad(state[:, 0].sum(), [params["w"]], retain_graph=True)
    assert torch.allclose(d_w, torch.full_like(d_w, 1 / 6))  # the weight mean has a gradient
    (d_g,) = torch.autograd.grad(state[:, 2].sum(), [params["w"]])
    expected = 0.0 if detach else 2 / 6  # the gradient mean has one only when not detached
    assert torch.allclose(d_g, torch.full_like(d_g, expected))


@pytest.mark.parametrize("generate", [("alpha",), ("beta",), ()])
def test_generate_switch_fixes_the_other(generate):
    rule = ALFA(NAMES, SHAPES, steps=2, generate=generate, generator_init="official").double()
    hyper = rule.hyperparameters(0, _params(), _params(seed=1))
    if "alpha" not in generate:
        torch.testing.assert_close(hyper.alpha, torch.full((2, 2), 0.01, dtype=torch.float64))
    if "beta" not in generate:
        torch.testing.assert_close(hyper.beta, torch.full((2, 2), 5e-6, dtype=torch.float64))
    assert (rule.generator is None) == (generate == ())


@pytest.mark.parametrize(
    "per_step, per_layer, shape",
    [
        (True, True, (3, 2)),
        (True, False, (3, 1)),
        (False, True, (1, 2)),
        (False, False, (1, 1)),
    ],
)
def test_post_multiplier_layout(per_step, per_layer, shape):
    table = StepLayerTable(3, 2, 0.5, per_step=per_step, per_layer=per_layer)
    assert tuple(table.value.shape) == shape
    assert table(7).shape == (2,)  # steps past training reuse the last row


def test_learned_fixed_can_freeze_either_table():
    rule = LearnedFixed(NAMES, SHAPES, 2, learn_alpha=False)
    assert [n for n, _ in rule.named_parameters()] == ["beta0.value"]


def test_random_init_per_element_decay():
    rule = ALFA(NAMES, SHAPES, steps=1, lr=0.1, weight_decay=0.5, per_element_decay=True).double()
    with torch.no_grad():
        rule.decays["0"].copy_(torch.arange(6, dtype=torch.float64).view(2, 3))
    params, grads = _params(), _params(seed=1)
    new, hyper = rule.update(0, params, grads)
    assert torch.allclose(hyper.beta, torch.ones_like(hyper.beta))  # beta0 starts at 1
    decay = torch.arange(6, dtype=torch.float64).view(2, 3)
    torch.testing.assert_close(new["w"], (1 - decay) * params["w"] - 0.1 * grads["w"])
    torch.testing.assert_close(new["b"], (1 - 0.05) * params["b"] - 0.1 * grads["b"])


def test_l2f_attenuates_initial_weights():
    rule = L2F(MAML(NAMES, SHAPES, 1)).double()
    params = _params()
    out = rule.init(params, lambda p: {n: t * 3 for n, t in p.items()})
    ratio = out["w"] / params["w"]
    assert torch.all((ratio > 0) & (ratio < 1))
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio))  # one gamma per tensor


def _rule(kind: str):
    if kind == "maml":
        return MAML(NAMES, SHAPES, 3)
    if kind == "learned_fixed":
        return LearnedFixed(NAMES, SHAPES, 3)
    if kind == "alfa":
        return ALFA(NAMES, SHAPES, 3, generator_init="official")
    if kind == "alfa_random":
        return ALFA(NAMES, SHAPES, 3, per_element_decay=True)
    return L2F(ALFA(NAMES, SHAPES, 3))


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["maml", "learned_fixed", "alfa", "alfa_random", "l2f"]),
    tasks=st.integers(1, 4),
    step=st.integers(0, 5),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_every_rule_is_eq4_per_task_and_step(kind, tasks, step, scale, seed):
    """Every rule: shapes and finiteness; the update is Eq. (4) with the hyperparameters it
    returns, tensor by tensor; each task's result depends on that task alone; steps past the
    trained number reuse the last step's hyperparameters."""
    rule = _rule(kind).double()
    with torch.no_grad():  # distinct per-step, per-layer tables and a non-trivial generator
        g = torch.Generator().manual_seed(seed)
        for p in rule.parameters():
            p.mul_(0.5 + torch.rand(p.shape, generator=g, dtype=p.dtype))
    params = {n: t * scale for n, t in _params(tasks, seed).items()}
    grads = _params(tasks, seed + 1)
    params = rule.init(params, lambda p: grads)
    new, hyper = rule.update(step, params, grads)
    assert hyper.alpha.shape == hyper.beta.shape == (tasks, 2)
    for k, n in enumerate(NAMES):
        assert new[n].shape == params[n].shape
        assert torch.isfinite(new[n]).all()
        view = (-1,) + (1,) * (params[n].dim() - 1)
        decay = rule.decay(n)
        beta = hyper.beta[:, k].reshape(view) * (1.0 if decay is None else decay)
        step_term = hyper.alpha[:, k].reshape(view) * grads[n]
        expected = params[n] - beta * params[n] - step_term
        # The rule computes (1 - beta) * theta - alpha * grad: rounding is relative to the terms,
        # not to their difference (which may cancel).
        bound = 1e-12 * float((params[n].abs() + step_term.abs()).max().detach())
        torch.testing.assert_close(new[n], expected, rtol=1e-12, atol=bound)
    assert math.isfinite(float((hyper.alpha.sum() + hyper.beta.sum()).detach()))
    last = tasks - 1
    alone, alone_hyper = rule.update(
        step, {n: t[last:] for n, t in params.items()}, {n: t[last:] for n, t in grads.items()}
    )
    torch.testing.assert_close(alone_hyper.alpha, hyper.alpha[last:], rtol=1e-12, atol=0)
    torch.testing.assert_close(alone_hyper.beta, hyper.beta[last:], rtol=1e-12, atol=0)
    for n in NAMES:
        bound = 1e-12 * float((params[n].abs().max() + grads[n].abs().max()).detach())
        torch.testing.assert_close(alone[n], new[n][last:], rtol=1e-12, atol=bound)
    if step >= rule.steps:
        clamped = rule.hyperparameters(rule.steps - 1, params, grads)
        torch.testing.assert_close(clamped.alpha, hyper.alpha, rtol=1e-12, atol=0)
        torch.testing.assert_close(clamped.beta, hyper.beta, rtol=1e-12, atol=0)
    if step > 0 and kind != "maml":  # per-step tables: another step, other hyperparameters
        other = rule.hyperparameters(0, params, grads)
        assert not torch.equal(other.alpha, hyper.alpha)
