"""The meta-gradient: float64 gradcheck through the inner loop, vmap == reference, first order."""

from __future__ import annotations

import pytest
import torch

from alfa.typing import TaskBatch
from metahelpers import RULE_CASES, make_batch, make_learner
from test_reference import assert_matches_reference, randomise, spec_for


def _meta_loss_fn(learner, batch: TaskBatch, **kwargs):
    names = [n for n, p in learner.named_parameters() if p.requires_grad]
    values = [
        p.detach().clone().requires_grad_() for n, p in learner.named_parameters() if n in names
    ]

    def fn(*flat):
        params = dict(zip(names, flat, strict=True))
        return torch.func.functional_call(learner, params, (batch,), kwargs, strict=False).loss

    return fn, values


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_gradcheck_through_two_inner_steps(case):
    """Analytical meta-gradients equal finite differences, second order, two inner steps."""
    rule, init = RULE_CASES[case]
    # Differentiate through every path (the official detach of the gradient means is a choice
    # that finite differences cannot see; it has its own test below).
    if rule["name"] == "alfa":
        rule = {**rule, "detach_gradient_state": False}
    learner = make_learner(rule, init=init, hidden=(3,), steps=2)
    fn, values = _meta_loss_fn(learner, make_batch(tasks=2, shots=3))
    assert torch.autograd.gradcheck(fn, values, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_detached_gradient_state_drops_only_that_path():
    """With the official detach, the meta-gradient equals the one where tau's gradient means are
    constants; without it, it differs."""
    batch = make_batch(tasks=2, shots=3)
    grads = {}
    for detach in (True, False):
        rule = {"name": "alfa", "generator_init": "official", "detach_gradient_state": detach}
        learner = make_learner(rule, hidden=(3,), steps=2)
        loss = learner(batch).loss
        grads[detach] = torch.autograd.grad(loss, list(learner.rule.generator.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(grads[True], grads[False], strict=True))


@pytest.mark.parametrize("case", sorted(RULE_CASES))
@pytest.mark.parametrize("first_order", [False, True])
def test_vmapped_meta_batch_equals_per_task_loop(case, first_order):
    """The engine's meta-batch (4 tasks, 3 steps) equals the independent per-task loop of
    tests/reference_impl.py (no engine code; two gradient calls per step), loss and every
    meta-gradient, with the rule's parameters randomised so that every path carries weight."""
    rule, init = RULE_CASES[case]
    learner = make_learner(rule, init=init, hidden=(5, 5), steps=3, first_order=first_order)
    randomise(learner, seed=11)
    spec = spec_for(rule, init=init, steps=3, first_order=first_order)
    assert_matches_reference(learner, spec, make_batch(tasks=4, shots=5))


def _maml_one_task(steps: int):
    learner = make_learner({"name": "maml", "lr": 0.05}, hidden=(4,), steps=steps)
    batch = make_batch(tasks=1, shots=6)
    return learner, batch


@pytest.mark.parametrize("steps", [1, 3])
def test_first_order_drops_second_order_terms(steps):
    """First-order MAML's meta-gradient is the query gradient at the adapted weights (the
    Jacobian of the adapted weights w.r.t. the initialisation is the identity); second order
    differs from it by the Hessian terms."""
    learner, batch = _maml_one_task(steps)
    init = list(learner.model.parameters())
    fo = torch.autograd.grad(learner(batch, first_order=True).loss, init)
    so = torch.autograd.grad(learner(batch, first_order=False).loss, init)
    adapted, _ = learner.adapt(batch.support_x, batch.support_y, keep_graph=False)
    adapted = {n: t.detach().requires_grad_() for n, t in adapted.items()}
    query = learner.loss_fn(learner.predict(adapted, batch.query_x), batch.query_y).mean()
    expected = torch.autograd.grad(query, [adapted[n] for n in learner.functional.names])
    for a, e in zip(fo, expected, strict=True):
        torch.testing.assert_close(a, e[0], rtol=0, atol=1e-10)
    assert any((a - b).abs().max() > 1e-6 for a, b in zip(fo, so, strict=True))


def test_second_order_single_step_by_hand():
    """One MAML step: d L_q(theta - a g(theta)) / d theta = (I - a H) grad L_q(theta')."""
    learner, batch = _maml_one_task(1)
    names = learner.functional.names
    theta0 = torch.cat([p.detach().flatten() for p in learner.model.parameters()])
    sizes = [p.numel() for p in learner.model.parameters()]
    shapes = [p.shape for p in learner.model.parameters()]

    def unflat(v):
        return {n: c.view(1, *s) for n, c, s in zip(names, v.split(sizes), shapes, strict=True)}

    def support(v):
        return learner.loss_fn(learner.predict(unflat(v), batch.support_x), batch.support_y).sum()

    def query(v):
        return learner.loss_fn(learner.predict(unflat(v), batch.query_x), batch.query_y).sum()

    g = torch.autograd.functional.jacobian(support, theta0)
    hessian = torch.autograd.functional.hessian(support, theta0)
    adapted = theta0 - 0.05 * g
    gq = torch.autograd.functional.jacobian(query, adapted)
    expected = (torch.eye(len(theta0), dtype=theta0.dtype) - 0.05 * hessian) @ gq
    got = torch.autograd.grad(learner(batch).loss, list(learner.model.parameters()))
    torch.testing.assert_close(
        torch.cat([x.flatten() for x in got]), expected, rtol=1e-9, atol=1e-12
    )


def test_random_init_keeps_base_weights_fixed():
    learner = make_learner({"name": "alfa", "per_element_decay": True}, init="random")
    assert not any(p.requires_grad for p in learner.model.parameters())
    trainable = [n for n, p in learner.named_parameters() if p.requires_grad]
    assert any(n.startswith("rule.decays") for n in trainable)
    assert all(n.startswith("rule.") for n in trainable)


@pytest.mark.parametrize("rule", ["maml", "alfa"])
def test_tiny_regression_overfits(rule):
    """Meta-training on one fixed meta-batch drives its query loss far down."""
    learner = make_learner({"name": rule}, hidden=(20, 20), steps=2, dtype=torch.float32)
    batch = make_batch(tasks=2, shots=10, dtype=torch.float32)
    opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=3e-3)
    first = float(learner(batch).loss.detach())
    for _ in range(400):
        opt.zero_grad()
        loss = learner(batch).loss
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05 * first


def test_multi_step_loss_averages_every_step():
    learner = make_learner({"name": "maml"}, steps=3)
    batch = make_batch()
    learner.multi_step_loss = True
    losses = []
    for s in (1, 2, 3):
        learner.multi_step_loss = False
        losses.append(learner(batch, steps=s).loss)
    learner.multi_step_loss = True
    torch.testing.assert_close(learner(batch).loss, torch.stack(losses).mean())
