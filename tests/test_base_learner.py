"""A user's nn.Module as a base learner: standard BatchNorm and dropout work per task, and a
module that cannot run once per task is refused with one error naming it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from alfa import MetaLearner, TaskBatch
from alfa.engine.fast import FastModel
from alfa.errors import BatchError, ModelError
from alfa.models.batchnorm import MetaBatchNorm2d


def _images(tasks: int = 3, ways: int = 3, per_class: int = 2, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tasks, ways * per_class, 1, 8, 8, generator=g)
    y = torch.arange(ways).repeat_interleave(per_class).expand(tasks, -1).contiguous()
    return TaskBatch(x, y, x.flip(1), y.flip(1))


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 3),
    )


def _per_task(params: dict, x: torch.Tensor) -> dict:
    return {n: p.detach().unsqueeze(0).expand(x.shape[0], *p.shape) for n, p in params.items()}


def test_batchnorm2d_becomes_per_task_batch_statistics_and_keeps_the_fast_path():
    model = _cnn()
    original = copy.deepcopy(model).train()  # PyTorch's own layer, one task at a time
    learner = MetaLearner(model, rule="maml", steps=1, task="classification")
    assert learner.converted == ["1"] and type(model[1]) is MetaBatchNorm2d
    assert model[1].weight is learner.model[1].weight  # the same parameters, not copies
    assert learner.engine == "fast" and isinstance(learner.functional, FastModel)
    x = _images().support_x
    x[1] = 10 * x[1] + 3  # another task's statistics must not reach task 0
    params = _per_task(learner.functional.initial(), x)
    expected = torch.stack([original(x[t]) for t in range(x.shape[0])])
    with torch.no_grad():
        for engine in ("fast", "generic"):
            other = MetaLearner(copy.deepcopy(model), rule="maml", steps=1, engine=engine)
            got = other.functional.apply(params, x)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_batchnorm1d_drops_running_statistics_and_normalises_each_task_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    original = copy.deepcopy(model).train()
    learner = MetaLearner(model, rule="alfa", steps=2)
    assert learner.converted == ["1"] and model[1].running_mean is None
    assert learner.engine == "generic"
    x = torch.randn(2, 5, 1)
    x[1] = 100 * x[1]
    params = _per_task(learner.functional.initial(), x)
    with torch.no_grad():
        got = learner.functional.apply(params, x)
    expected = torch.stack([original(x[t]) for t in range(2)])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    batch = TaskBatch(x, x.sin(), x, x.sin())
    learner(batch).loss.backward()  # second-order meta-gradient through the layer
    assert all(torch.isfinite(p.grad).all() for p in learner.parameters() if p.grad is not None)


def test_dropout_draws_a_different_mask_for_every_task_and_is_off_in_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 64), nn.Dropout(0.5), nn.Linear(64, 1))
    learner = MetaLearner(model, rule="maml", steps=1)
    x = torch.ones(2, 3, 1)  # two identical tasks: only the masks can tell them apart
    params = _per_task(learner.functional.initial(), x)
    with torch.no_grad():
        train_out = learner.functional.apply(params, x)
        learner.eval()
        eval_out = learner.functional.apply(params, x)
    assert not torch.allclose(train_out[0], train_out[1])
    torch.testing.assert_close(eval_out[0], eval_out[1])
    learner.train()
    batch = TaskBatch(
        torch.randn(4, 5, 1), torch.randn(4, 5, 1), torch.randn(4, 5, 1), torch.randn(4, 5, 1)
    )
    out = learner(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)


class _Branch(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class _Item(nn.Module):
    def forward(self, x):
        return x * x.max().item()


class _Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(4))

    def forward(self, x):
        self.mean.mul_(0.9).add_(0.1 * x.mean(0))
        return x


@pytest.mark.parametrize(
    ("layer", "name", "reason"),
    [
        (_Branch(), "_Branch", "Python control flow on a tensor's value"),
        (_Item(), "_Item", ".item()"),
        (_Counter(), "_Counter", "updates a tensor shared by all tasks in place"),
    ],
)
def test_a_module_that_cannot_run_per_task_is_refused_before_any_update(layer, name, reason):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 4), nn.Sequential(nn.ReLU(), layer), nn.Linear(4, 1))
    learner = MetaLearner(model, rule="alfa", steps=2)
    before = [p.detach().clone() for p in learner.parameters()]
    batch = TaskBatch(*(torch.randn(3, 5, 1) for _ in range(4)))
    with pytest.raises(ModelError) as info:
        learner(batch)
    message = str(info.value)
    assert message.startswith(f"module '1.1' ({name}) cannot be part of a base learner")
    assert reason in message and "\n" not in message
    assert all(torch.equal(a, b) for a, b in zip(before, learner.parameters(), strict=True))


def test_an_uninitialised_lazy_module_is_refused_when_the_learner_is_built():
    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(ModelError, match=r"module '0' \(LazyLinear\) has uninitialised"):
        MetaLearner(model, rule="maml", steps=1)


def test_a_shape_error_inside_the_model_names_the_input_then_the_module():
    """Inputs the model cannot take fail without vmap too: the input is named first, then the
    module, not the module as one that cannot run per task."""
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    learner = MetaLearner(model, rule="maml", steps=1)
    batch = TaskBatch(*(torch.randn(3, 5, 1) for _ in range(4)))  # 1 feature, the model takes 2
    with pytest.raises(BatchError, match=r"^support_x .* does not fit .* module '0' \(Linear\)"):
        learner(batch)
