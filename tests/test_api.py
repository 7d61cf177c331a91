"""The Python API: one construction of a learner, the routes through it, and input checks
whose messages say what was expected."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import alfa
from alfa import ALFA, MAML, LearnedFixed, MetaLearner, SinusoidTasks, TaskBatch
from alfa.config import load_config
from alfa.engine.functional import FunctionalModel
from alfa.errors import ArgumentError, BatchError
from alfa.models import MLP
from alfa.rules import L2F, build_rule
from alfa.runs.build import build_learner


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _sinusoid(tasks: int = 3) -> TaskBatch:
    return SinusoidTasks("paper", 4, 4, seed=1).sample(tasks)


def test_one_line_builds_the_rule_for_the_model_with_the_steps_given_once():
    torch.manual_seed(0)
    learner = MetaLearner(MLP((8, 8)), rule="alfa", steps=3, lr=0.05, generator_layers=3)
    rule = learner.rule
    assert isinstance(rule, ALFA) and rule.steps == learner.steps == 3
    assert rule.names == FunctionalModel(learner.model).names
    assert rule.shapes == tuple(p.shape for p in learner.functional.initial().values())
    torch.testing.assert_close(rule.alpha0(0), torch.full((6,), 0.05))
    assert len([m for m in rule.generator.modules() if isinstance(m, nn.Linear)]) == 3
    assert isinstance(MetaLearner(MLP((4,)), rule=MAML, steps=2).rule, MAML)
    assert isinstance(MetaLearner(MLP((4,)), rule="learned_fixed").rule, LearnedFixed)
    wrapped = MetaLearner(MLP((4,)), rule="maml", steps=2, l2f=True).rule
    assert isinstance(wrapped, L2F) and isinstance(wrapped.inner, MAML)
    assert MetaLearner(MLP((4,))).steps == 5  # the paper's S when nothing says otherwise


def test_a_fixed_random_init_takes_the_per_element_decay_only_when_asked():
    plain = MetaLearner(MLP((4,)), rule="alfa", steps=2, learn_init=False)
    assert not plain.rule.per_element_decay
    assert not any(p.requires_grad for p in plain.model.parameters())
    official = MetaLearner(
        MLP((4,)), rule="alfa", steps=2, learn_init=False, per_element_decay=True
    )
    assert official.rule.per_element_decay and len(official.rule.decays) > 0


def test_the_config_route_builds_the_same_learner_as_the_rule_built_by_hand():
    config = load_config(
        None,
        [
            "rule.name=alfa",
            "rule.per_element_decay=true",
            "meta.init=random",
            "meta.steps=3",
            "model.hidden=[6,6]",
        ],
    )
    learner = build_learner(config, task="regression", in_channels=1)
    torch.manual_seed(config.seed)  # the previous construction, spelled out
    model = MLP((6, 6))
    names = FunctionalModel(model).names
    shapes = [p.shape for n, p in model.named_parameters() if n in names]
    rule = build_rule(config.rule, names, shapes, 3)
    manual = MetaLearner(model, rule, learn_init=False)
    assert manual.steps == 3  # taken from the built rule
    expected, got = _state(manual), _state(learner)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def test_step_counts_of_a_built_rule_and_the_learner_must_agree():
    model = MLP((4,))
    names = FunctionalModel(model).names
    shapes = [p.shape for n, p in model.named_parameters() if n in names]
    rule = ALFA(names, shapes, steps=5)
    with pytest.raises(ArgumentError, match="built for 5 inner steps but steps=8"):
        MetaLearner(model, rule, steps=8)
    with pytest.raises(ArgumentError, match=r"rule options \(lr\) go with a rule name"):
        MetaLearner(model, rule, lr=0.1)
    assert MetaLearner(model, rule, steps=5).steps == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "regresion"}, "task must be 'regression' or 'classification', got 'regresion'"),
        ({"rule": "alpha"}, "unknown rule 'alpha'; choose one of maml, learned_fixed, alfa"),
        ({"rule": "l2f"}, "L2F wraps another rule: pass l2f=True"),
        (
            {"rule": "alfa", "lrr": 0.1},
            "rule ALFA has no option 'lrr'; its options are lr, weight_decay",
        ),
        ({"steps": 0}, "steps must be a positive integer, got 0"),
        ({"steps": 2.5}, "steps must be a positive integer, got 2.5"),
        ({"engine": "vmap"}, "engine must be 'auto', 'fast' or 'generic', got 'vmap'"),
        ({"loss_fn": "l1"}, "loss_fn must be a function, got str"),
    ],
)
def test_wrong_arguments_are_refused_naming_the_value(kwargs, message):
    with pytest.raises(ArgumentError) as info:
        MetaLearner(MLP((4,)), **kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # catchable as a ValueError too


def test_a_loss_of_the_users_replaces_the_default_in_both_loops():
    def l1(pred, target):
        return (pred - target).abs().flatten(1).mean(1)

    torch.manual_seed(0)
    learner = MetaLearner(MLP((6,)), rule="maml", steps=1, lr=0.1, loss_fn=l1)
    batch = _sinusoid()
    out = learner(batch)
    # independent: one SGD step on the support L1 loss, then the query L1 loss, per task
    expected = []
    for t in range(batch.num_tasks):
        params = dict(learner.model.named_parameters())

        def run(p, x):
            return torch.func.functional_call(learner.model, p, (x,))

        support = (run(params, batch.support_x[t]) - batch.support_y[t]).abs().mean()
        grads = torch.autograd.grad(support, list(params.values()))
        adapted = {n: p - 0.1 * g for (n, p), g in zip(params.items(), grads, strict=True)}
        expected.append((run(adapted, batch.query_x[t]) - batch.query_y[t]).abs().mean())
    torch.testing.assert_close(out.query_losses, torch.stack(expected).detach())

    bad = MetaLearner(MLP((6,)), rule="maml", steps=1, loss_fn=lambda p, t: (p - t).abs().mean())
    with pytest.raises(ArgumentError, match=r"loss_fn must return one loss per task, shape \(3,\)"):
        bad(batch)


def _classes(tasks=2, ways=3, shots=2):
    x = torch.randn(tasks, ways * shots, 1, 6, 6)
    y = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()
    return x, y


def _conv_learner():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    return MetaLearner(model, rule="maml", steps=1, task="classification")


def test_a_single_task_without_its_task_axis_is_refused():
    batch = _sinusoid()
    learner = MetaLearner(MLP((4,)), rule="maml", steps=1)
    with pytest.raises(BatchError) as info:
        learner.adapt(batch.support_x[0], batch.support_y[0])
    assert str(info.value) == (
        "support_x has shape (4, 1); expected [tasks, examples, features...] with a leading "
        "task axis (for one task pass support_x.unsqueeze(0))"
    )
    params, _ = learner.adapt(batch.support_x[:1], batch.support_y[:1])  # the fix works
    assert params["net.0.weight"].shape[0] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda x, y: (x, y + 3),
            "support_y holds label 5 but the model has 3 outputs; labels must lie in 0..2",
        ),
        (lambda x, y: (x, y - 1), "support_y holds label -1 but the model has 3 outputs"),
        (
            lambda x, y: (x, y.float()),
            "support_y has dtype torch.float32; expected torch.int64 "
            "class indices for classification (e.g. y.long())",
        ),
        (
            lambda x, y: (x, y.unsqueeze(-1)),
            "support_y has shape (2, 6, 1); expected [tasks, examples] class indices",
        ),
        (
            lambda x, y: (x.to(torch.uint8), y),
            "support_x has dtype torch.uint8; expected a floating-point tensor",
        ),
        (lambda x, y: (x, y[:, :4]), "support_x holds 2 tasks x 6 examples but support_y 2 x 4"),
        (lambda x, y: (x, y.tolist()), "support_y must be a torch.Tensor, got list"),
    ],
)
def test_classification_batches_are_checked(change, message):
    learner = _conv_learner()
    x, y = _classes()
    sx, sy = change(x, y)
    with pytest.raises(BatchError) as info:
        learner(TaskBatch(sx, sy, x, y))
    assert message in str(info.value)


def test_support_and_query_sets_must_agree():
    learner = _conv_learner()
    x, y = _classes()
    with pytest.raises(BatchError, match="support set holds 2 tasks but the query set 1"):
        learner(TaskBatch(x, y, x[:1], y[:1]))
    with pytest.raises(BatchError, match=r"support input has shape \(1, 6, 6\) but a query input"):
        learner(TaskBatch(x, y, x[..., :5], y))
    with pytest.raises(BatchError, match=r"a meta-batch must be an alfa\.TaskBatch"):
        learner((x, y, x, y))
    assert TaskBatch(x, y, x, y).check("classification", classes=3).num_tasks == 2
    with pytest.raises(BatchError, match="query_y holds label 3"):
        TaskBatch(x, y, x, y + 1).check("classification", classes=3)


def test_regression_targets_must_match_the_model_outputs():
    batch = _sinusoid()
    learner = MetaLearner(MLP((4,)), rule="maml", steps=1)
    squeezed = TaskBatch(
        batch.support_x, batch.support_y[..., 0], batch.query_x, batch.query_y[..., 0]
    )
    with pytest.raises(BatchError, match=r"outputs shape \(1,\) per example but support_y has"):
        learner(squeezed)


def test_the_package_exports_resolve_lazily():
    for name in alfa.__all__:
        assert getattr(alfa, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        alfa.Nope  # noqa: B018
