"""The closed-form fast path computes what the generic vmap + autograd path computes.

Float64 throughout: meta-loss and every meta-gradient agree to 1e-10 (relative to the largest
entry) for every rule, first and second order, each backbone and each BatchNorm mode, and every
grouping of the tasks.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alfa.engine.fast import FastModel, compile_program
from alfa.engine.functional import FunctionalModel
from alfa.engine.meta_learner import MetaLearner
from alfa.models import MLP
from alfa.models.batchnorm import MetaBatchNorm2d
from alfa.models.conv4 import Conv4
from alfa.models.resnet12 import ResNet12
from alfa.rules import ALFA, L2F, MAML, LearnedFixed, UpdateRule
from alfa.typing import TaskBatch

TOL = 1e-10


pytestmark = pytest.mark.usefixtures("float64")


def _rule(kind: str, names, shapes, steps: int) -> UpdateRule:
    if kind == "maml":
        return MAML(names, shapes, steps, lr=0.1)
    if kind == "maml_decay":
        return MAML(names, shapes, steps, lr=0.1, weight_decay=0.5)
    if kind == "learned_fixed":
        return LearnedFixed(names, shapes, steps, lr=0.1, weight_decay=0.1)
    if kind == "learned_fixed_tied":
        return LearnedFixed(names, shapes, steps, per_step=False, per_layer=False, lr=0.1)
    options = {
        "alfa": {},
        "alfa_weights": {"generator_input": "weights"},
        "alfa_gradients": {"generator_input": "gradients", "generator_layers": 3},
        "alfa_alpha_only": {"generate": ("alpha",)},
        "alfa_beta_only": {"generate": ("beta",), "clip": (0.0, 2.0)},
        "alfa_undetached": {"detach_gradient_state": False},
        "alfa_random_init": {"per_element_decay": True},
    }[kind.removeprefix("l2f_")]
    rule: UpdateRule = ALFA(names, shapes, steps, lr=0.1, generator_init="official", **options)
    return L2F(rule) if kind.startswith("l2f_") else rule


def _learner(make_model, rule: str, engine: str, *, task="classification", **kw) -> MetaLearner:
    torch.manual_seed(0)
    model = make_model()
    functional = FunctionalModel(model)
    shapes = [p.shape for p in functional.initial().values()]
    r = _rule(rule, functional.names, shapes, 2)
    with torch.no_grad():  # non-trivial meta-parameters: perturb every table and layer
        g = torch.Generator().manual_seed(1)
        for p in r.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g) * p.abs().mean().clamp(min=0.1))
    learn_init = rule != "alfa_random_init"
    return MetaLearner(model, r, task=task, steps=2, engine=engine, learn_init=learn_init, **kw)


def _images(tasks=3, ways=3, channels=1, size=12, shots=2, query=3) -> TaskBatch:
    g = torch.Generator().manual_seed(2)

    def split(k):
        x = torch.randn(tasks, ways * k, channels, size, size, generator=g)
        y = torch.stack([torch.randperm(ways, generator=g).repeat(k) for _ in range(tasks)])
        return x, y

    return TaskBatch(*split(shots), *split(query))


def _sinusoid(tasks=4) -> TaskBatch:
    g = torch.Generator().manual_seed(3)
    return TaskBatch(*(torch.randn(tasks, 5, 1, generator=g) for _ in range(4)))


def _meta(learner: MetaLearner, batch: TaskBatch, **kw):
    loss = learner(batch, **kw).loss
    params = [p for p in learner.parameters() if p.requires_grad]
    return loss, torch.autograd.grad(loss, params, allow_unused=True)


def _assert_same(make_model, rule, batch, task="classification", **kw):
    generic = _learner(make_model, rule, "generic", task=task, **kw)
    fast = _learner(make_model, rule, "fast", task=task, **kw)
    assert generic.engine == "generic" and fast.engine == "fast"
    loss_g, grads_g = _meta(generic, batch)
    loss_f, grads_f = _meta(fast, batch)
    assert abs(loss_g.item() - loss_f.item()) <= TOL * abs(loss_g.item())
    # Relative to each tensor's largest entry; tensors whose gradient is zero in exact
    # arithmetic (a conv bias before BatchNorm) hold rounding noise, so the floor is relative
    # to the largest meta-gradient entry of all.
    overall = max(a.abs().max().item() for a in grads_g if a is not None)
    assert overall > 0
    for a, b in zip(grads_g, grads_f, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            bound = TOL * a.abs().max().item() + 1e-13 * overall
            assert (a - b).abs().max().item() <= bound


def conv4(norm="transductive"):
    return lambda: Conv4(3, in_channels=1, filters=4, image_size=16, norm=norm)


def resnet12(norm="transductive"):
    return lambda: ResNet12(3, in_channels=1, channels=(3, 4, 4, 5), norm=norm)


RULES = [
    "maml",
    "maml_decay",
    "learned_fixed",
    "learned_fixed_tied",
    "alfa",
    "alfa_weights",
    "alfa_gradients",
    "alfa_alpha_only",
    "alfa_beta_only",
    "alfa_undetached",
    "alfa_random_init",
    "l2f_alfa",
]


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("rule", RULES)
def test_every_rule_on_a_conv4(rule, first_order):
    _assert_same(conv4(), rule, _images(size=16), first_order=first_order)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("rule", ["maml", "alfa", "l2f_alfa", "alfa_random_init"])
def test_mlp_regression(rule, first_order):
    _assert_same(lambda: MLP((6, 5)), rule, _sinusoid(), "regression", first_order=first_order)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("norm", ["transductive", "support"])
@pytest.mark.parametrize("model", ["conv4", "resnet12"])
def test_backbones_in_both_norm_modes(model, norm, first_order):
    make = conv4(norm) if model == "conv4" else resnet12(norm)
    size = 16 if model == "conv4" else 12
    _assert_same(make, "alfa", _images(size=size), first_order=first_order)


@pytest.mark.parametrize("group", [1, 2, None])
@pytest.mark.parametrize("norm", ["transductive", "support"])
def test_task_groups(group, norm):
    _assert_same(conv4(norm), "alfa", _images(tasks=3, size=16), group=group)


def test_l2f_on_resnet12_support_mode():
    _assert_same(resnet12("support"), "l2f_alfa", _images(size=12))


def test_multi_step_loss():
    _assert_same(conv4(), "alfa", _images(size=16), multi_step_loss=True)


def test_a_plain_sequential_takes_the_fast_path():
    def make():
        return nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            MetaBatchNorm2d(3),
            nn.LeakyReLU(0.2),
            nn.MaxPool2d(2),
            nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 3 * 3, 3),
        )

    _assert_same(make, "alfa", _images(size=12))


@pytest.mark.parametrize("inputs", ["images", "vectors"])
def test_a_flatten_first_model_takes_the_fast_path_on_images_and_vectors(inputs):
    """``Flatten`` then ``Linear``: images are flattened per task, flat inputs pass through."""

    def make():
        features = 1 * 6 * 6 if inputs == "images" else 1
        outputs = 3 if inputs == "images" else 1
        return nn.Sequential(nn.Flatten(), nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, outputs))

    if inputs == "images":
        _assert_same(make, "alfa", _images(size=6))
    else:
        _assert_same(make, "maml", _sinusoid(), task="regression")


def test_evaluation_without_graph_matches():
    batch = _images(size=16)
    generic = _learner(conv4(), "alfa", "generic")
    fast = _learner(conv4(), "alfa", "fast")
    out_g = generic(batch, keep_graph=False)
    out_f = fast(batch, keep_graph=False)
    assert not out_f.outputs.requires_grad
    torch.testing.assert_close(out_f.outputs, out_g.outputs, rtol=1e-10, atol=1e-12)
    for hg, hf in zip(out_g.hyperparameters, out_f.hyperparameters, strict=True):
        torch.testing.assert_close(hf.alpha, hg.alpha, rtol=1e-10, atol=1e-14)


def test_first_order_drops_the_second_order_terms():
    """First order: the support gradients carry no graph, so the meta-gradient of the
    initialisation through MAML is exactly the query gradient at the adapted weights."""
    batch = _sinusoid(tasks=1)
    learner = _learner(lambda: MLP((6, 5)), "maml", "fast", task="regression", first_order=True)
    loss = learner(batch).loss
    init = list(learner.model.parameters())
    meta = torch.autograd.grad(loss, init)
    params, _ = learner.adapt(batch.support_x, batch.support_y)
    adapted = {n: t.detach().requires_grad_(True) for n, t in params.items()}
    query = learner.loss_fn(learner.predict(adapted, batch.query_x), batch.query_y).mean()
    expected = torch.autograd.grad(query, list(adapted.values()))
    for a, b in zip(meta, expected, strict=True):
        torch.testing.assert_close(a, b[0], rtol=1e-12, atol=1e-14)


def test_a_users_loss_function_runs_autograd_over_the_fast_forward():
    def l1(pred, target):
        return (pred - target).abs().flatten(1).mean(1)

    batch = _sinusoid()
    results = []
    for engine in ("generic", "fast"):
        learner = _learner(lambda: MLP((6, 5)), "alfa", engine, task="regression")
        learner.loss_fn = l1
        results.append(_meta(learner, batch))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-10, atol=0)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def forward(self, x):
        return torch.tanh(self.layer(x))


def test_unknown_modules_use_the_generic_path():
    assert compile_program(_Custom()) is None
    assert compile_program(nn.Sequential(nn.Linear(1, 2), nn.Tanh())) is None
    assert compile_program(nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2))) is None
    learner = _learner(_Custom, "maml", "auto", task="regression")
    assert learner.engine == "generic"
    with pytest.raises(ValueError, match="does not know a layer of _Custom"):
        _learner(_Custom, "maml", "fast", task="regression")
    with pytest.raises(ValueError, match="engine must be"):
        _learner(_Custom, "maml", "vmap", task="regression")


def test_backbones_take_the_fast_path_by_default():
    for make in (lambda: MLP((4,)), conv4(), resnet12()):
        model = make()
        learner = MetaLearner(model, MAML(FunctionalModel(model).names, [], 1), steps=1)
        assert learner.engine == "fast"
        assert isinstance(learner.functional, FastModel)


def test_a_subclass_that_overrides_forward_is_not_taken_for_its_base():
    class Doubled(MLP):
        def forward(self, x):
            return 2 * super().forward(x)

    assert compile_program(Doubled((4,))) is None


@pytest.mark.parametrize("engine", ["generic", "fast"])
def test_recomputing_the_inner_steps_changes_nothing(engine):
    batch = _images(size=16)
    plain = _learner(conv4(), "l2f_alfa", engine)
    recomputed = _learner(conv4(), "l2f_alfa", engine, recompute=True)
    loss_a, grads_a = _meta(plain, batch)
    loss_b, grads_b = _meta(recomputed, batch)
    assert loss_a.item() == loss_b.item()
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-15)
