"""ALFA's generator switches beyond the paper: ``rule.state_encoding: log_sign`` and
``rule.generator_output: bounded`` (src/alfa/rules/state_encoding.py, generator.py)."""

from __future__ import annotations

import math

import pytest
import torch

from alfa.rules import ALFA, HyperparameterGenerator
from alfa.rules.base import FlatParams, layer_rms
from alfa.rules.state_encoding import encode_state, encoded_width, log_sign

F64 = torch.float64
NAMES = ("w", "b")
SHAPES = (torch.Size([2, 3]), torch.Size([2]))


def test_log_sign_by_hand():
    x = torch.tensor([2.0, -0.5, 1e-6, 0.0, -1e-5], dtype=F64)
    e10 = math.exp(10)
    magnitude = [math.log(2) / 10, math.log(0.5) / 10, -1.0, -1.0, -1.0]
    sign = [1.0, -1.0, 1e-6 * e10, 0.0, -1e-5 * e10]
    torch.testing.assert_close(log_sign(x), torch.tensor(magnitude + sign, dtype=F64))


def test_log_sign_is_continuous_at_the_threshold():
    edge = math.exp(-10)
    below = log_sign(torch.tensor([edge * (1 - 1e-9)], dtype=F64))
    above = log_sign(torch.tensor([edge * (1 + 1e-9)], dtype=F64))
    torch.testing.assert_close(below, above, rtol=0, atol=1e-8)
    torch.testing.assert_close(above, torch.tensor([-1.0, 1.0], dtype=F64))


def test_log_sign_gradient_is_finite_and_exact():
    x = torch.tensor([[0.3, -2.0, 1e-7, 0.0]], dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_sign(x).sum(), x)
    expected = [1 / (10 * 0.3), 1 / (10 * -2.0), math.exp(10), math.exp(10)]
    torch.testing.assert_close(grad, torch.tensor([expected], dtype=F64))
    away = torch.tensor([[0.4, -3.0, 2e-6]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(log_sign, (away,))


def test_encoding_width_and_refusal():
    assert encoded_width(6, "raw") == 6 and encoded_width(6, "log_sign") == 12
    state = torch.randn(3, 6, dtype=F64)
    assert encode_state(state, "raw") is state
    with pytest.raises(ValueError, match="'log'"):
        encoded_width(6, "log")  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", ["raw", "log_sign"])
def test_bounded_unit_init_starts_at_post_multipliers(encoding):
    gen = HyperparameterGenerator(4, 4, 4, init="unit", output="bounded", encoding=encoding)
    assert torch.equal(gen(torch.randn(5, 4)), torch.ones(5, 4))
    rule = ALFA(NAMES, SHAPES, steps=2, generator_output="bounded", state_encoding=encoding)
    params = {n: torch.randn(3, *s, dtype=F64) for n, s in zip(NAMES, SHAPES, strict=True)}
    hyper = rule.double().hyperparameters(0, params, params)
    torch.testing.assert_close(hyper.alpha, torch.full((3, 2), 0.01, dtype=F64))


def test_bounded_output_stays_in_zero_two_whatever_the_weights():
    gen = HyperparameterGenerator(4, 6, 8, init="official", output="bounded").double()
    with torch.no_grad():
        for p in gen.parameters():
            p.mul_(1000.0)
    out = gen(torch.randn(64, 4, dtype=F64) * 100)
    assert out.min() >= 0 and out.max() <= 2
    assert out.min() < 0.01 and out.max() > 1.99  # the weights are large enough to reach both
    linear = HyperparameterGenerator(4, 6, 8, init="official").double()
    linear.load_state_dict(gen.state_dict())
    state = torch.randn(7, 4, dtype=F64)
    torch.testing.assert_close(gen(state), 2 * torch.sigmoid(linear(state)))


def test_log_sign_generator_reads_the_encoded_state():
    gen = HyperparameterGenerator(4, 4, 4, init="official", encoding="log_sign").double()
    assert gen.net[0].in_features == 8
    state = torch.tensor([[0.5, -1e-3, 3.0, 0.0]], dtype=F64)
    first = gen.net[0]
    expected = gen.net[2](torch.relu(first(log_sign(state))))
    torch.testing.assert_close(gen(state), expected)


def test_rules_with_the_switches_differ_from_the_paper_rule():
    torch.manual_seed(0)
    params = {n: torch.randn(3, *s, dtype=F64) for n, s in zip(NAMES, SHAPES, strict=True)}
    grads = {n: torch.randn(3, *s, dtype=F64) for n, s in zip(NAMES, SHAPES, strict=True)}
    outs = {}
    for options in ({}, {"generator_output": "bounded"}, {"state_encoding": "log_sign"}):
        torch.manual_seed(1)
        rule = ALFA(NAMES, SHAPES, steps=2, generator_init="official", **options).double()
        outs[str(options)] = rule.hyperparameters(0, params, grads).alpha
    values = list(outs.values())
    assert not torch.allclose(values[0], values[1]) and not torch.allclose(values[0], values[2])


def test_layer_rms_by_hand_and_on_flat_buffers():
    w = torch.tensor([[[3.0, -4.0, 0.0], [0.0, 0.0, 0.0]]], dtype=F64)  # mean square 25/6
    b = torch.tensor([[0.0, 0.0]], dtype=F64)
    want = torch.tensor([[math.sqrt(25 / 6 + 1e-12), math.sqrt(1e-12)]], dtype=F64)
    torch.testing.assert_close(layer_rms({"w": w, "b": b}, NAMES), want, rtol=1e-14, atol=0)
    flat = FlatParams(torch.cat([w.flatten(1), b], 1), NAMES, SHAPES)
    torch.testing.assert_close(layer_rms(flat, NAMES), want, rtol=1e-14, atol=0)
    zero = torch.zeros(1, 2, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(
        layer_rms({"w": zero.view(1, 2, 1), "b": zero}, NAMES).sum(), zero
    )
    assert torch.isfinite(grad).all()


def test_rms_statistics_double_the_state_and_keep_the_paper_part():
    torch.manual_seed(0)
    params = {n: torch.randn(3, *s, dtype=F64) for n, s in zip(NAMES, SHAPES, strict=True)}
    grads = {n: torch.randn(3, *s, dtype=F64) for n, s in zip(NAMES, SHAPES, strict=True)}
    paper = ALFA(NAMES, SHAPES, steps=1).double().learning_state(params, grads)
    rule = ALFA(NAMES, SHAPES, steps=1, state_statistics=("mean", "rms")).double()
    state = rule.learning_state(params, grads)
    assert rule.generator.net[0].in_features == 8 and state.shape == (3, 8)
    torch.testing.assert_close(state[:, [0, 1, 4, 5]], paper)
    torch.testing.assert_close(state[:, 2:4], layer_rms(params, NAMES))
    torch.testing.assert_close(state[:, 6:8], layer_rms(grads, NAMES))
    with pytest.raises(ValueError, match="rms"):
        ALFA(NAMES, SHAPES, steps=1, state_statistics=("rms",))


def test_the_stable_preset_builds_the_three_switches_and_yields_to_a_given_one():
    from alfa import MetaLearner
    from alfa.errors import ArgumentError
    from alfa.models import MLP
    from alfa.rules import make_rule

    stable = make_rule("alfa", NAMES, SHAPES, 2, generator="stable")
    assert stable.state_statistics == ("mean", "rms")
    assert stable.generator.encoding == "log_sign" and stable.generator.output == "bounded"
    mixed = make_rule("alfa", NAMES, SHAPES, 2, generator="stable", generator_output="linear")
    assert mixed.generator.output == "linear" and mixed.generator.encoding == "log_sign"
    paper = make_rule("alfa", NAMES, SHAPES, 2, generator="paper")
    assert paper.state_statistics == ("mean",) and paper.generator.encoding == "raw"
    learner = MetaLearner(MLP((4,)), rule="alfa", steps=2, generator="stable")
    assert learner.rule.generator.output == "bounded"
    with pytest.raises(ArgumentError, match="generator='steady' is not a preset"):
        make_rule("alfa", NAMES, SHAPES, 2, generator="steady")
    with pytest.raises(ArgumentError, match="no option 'generator'"):
        make_rule("maml", NAMES, SHAPES, 2, generator="stable")
