"""The Python API: errors that name the real cause first (dtype, device, channels, tied
weights, what ``loss_fn`` and the model return), NaN hyperparameters and empty tasks refused.
Each case raises an :class:`alfa.errors.AlfaError` subclass with a one-line message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hostile_conftest import Case, check

PRELUDE = """
import torch
from torch import nn
import alfa
from alfa.models import MLP
batch = alfa.SinusoidTasks("paper", shots=5, query=5, seed=0).sample(2)
"""


def _python(code: str):
    def build(folder: Path) -> dict[str, Any]:
        return {"python": PRELUDE + code}

    return build


SHARED = """
class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.m, self.b = nn.Linear(1, 8), nn.Linear(8, 8), nn.Linear(8, 1)
        self.again = self.m  # the same module under a second name: tied weights
    def forward(self, x):
        return self.b(torch.relu(self.again(torch.relu(self.m(self.a(x))))))
alfa.MetaLearner(Shared(), rule="alfa", steps=2)(batch).loss.backward()
"""

ALIASED = """
class Aliased(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(1, 1)
        self.register_buffer("w", self.a.weight)
    def forward(self, x):
        return self.a(x) * self.w.sum()
alfa.MetaLearner(Aliased(), rule="maml", steps=1)(batch)
"""

TUPLE = """
class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(1, 1)
    def forward(self, x):
        return self.a(x), x
alfa.MetaLearner(Pair(), rule="maml", steps=1)(batch)
"""

CHANNELS = """
class Grey(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.f = nn.Conv2d(1, 2, 3), nn.Linear(2 * 6 * 6, 3)
    def forward(self, x):
        return self.f(self.c(x).flatten(1))
x, y = torch.randn(2, 3, 3, 8, 8), torch.randint(0, 3, (2, 3))
learner = alfa.MetaLearner(Grey(), rule="maml", steps=1, task="classification")
learner(alfa.TaskBatch(x, y, x, y))
"""

CASES: dict[str, Case] = {
    "a module shared under two names (tied weights)": Case(
        _python(SHARED),
        ("module 'm'", "'again'", "shared"),
        kind="raises",
        raises="alfa.errors.ModelError",
    ),
    "a parameter registered as a buffer too": Case(
        _python(ALIASED), ("'a.weight'", "'w'"), kind="raises", raises="alfa.errors.ModelError"
    ),
    "loss_fn returning a float": Case(
        _python(
            'alfa.MetaLearner(MLP((4,)), rule="maml", steps=1, loss_fn=lambda p, y: 1.0)(batch)'
        ),
        ("loss_fn returned a float",),
        kind="raises",
    ),
    "a model that is a plain function": Case(
        _python('alfa.MetaLearner(lambda x: x, rule="maml", steps=1)'),
        ("torch.nn.Module", "function"),
        kind="raises",
    ),
    "a model returning a tuple": Case(
        _python(TUPLE), ("returns a tuple",), kind="raises", raises="alfa.errors.ModelError"
    ),
    "float64 inputs": Case(
        _python(
            'alfa.MetaLearner(MLP((4,)), rule="maml", steps=1)'
            "(alfa.TaskBatch(*(t.double() for t in batch)))"
        ),
        ("support_x has dtype float64", "float32"),
        kind="raises",
        raises="alfa.errors.BatchError",
    ),
    "float16 inputs": Case(
        _python(
            'alfa.MetaLearner(MLP((4,)), rule="maml", steps=1)'
            "(alfa.TaskBatch(*(t.half() for t in batch)))"
        ),
        ("support_x has dtype float16",),
        kind="raises",
        raises="alfa.errors.BatchError",
    ),
    "a batch on the meta device": Case(
        _python(
            'alfa.MetaLearner(MLP((4,)), rule="maml", steps=1)'
            '(alfa.TaskBatch(*(t.to("meta") for t in batch)))'
        ),
        ("support_x is on device meta",),
        kind="raises",
        raises="alfa.errors.BatchError",
    ),
    "3-channel input for a 1-channel model": Case(
        _python(CHANNELS),
        ("support_x", "does not fit the model", "module 'c' (Conv2d)", "3 channels"),
        kind="raises",
        raises="alfa.errors.BatchError",
    ),
    "lr=nan": Case(
        _python('alfa.MetaLearner(MLP((4,)), rule="alfa", steps=1, lr=float("nan"))'),
        ("lr=nan", "finite"),
        kind="raises",
    ),
    "lr=inf for learned_fixed": Case(
        _python('alfa.MetaLearner(MLP((4,)), rule="learned_fixed", steps=1, lr=float("inf"))'),
        ("lr=inf", "finite"),
        kind="raises",
    ),
    "SinusoidTasks(shots=0)": Case(
        _python('alfa.SinusoidTasks("paper", shots=0, query=5, seed=0)'),
        ("shots", "at least 1", "got 0"),
        kind="raises",
    ),
    "SinusoidTasks(query=0)": Case(
        _python('alfa.SinusoidTasks("paper", shots=5, query=0, seed=0)'),
        ("query", "at least 1", "got 0"),
        kind="raises",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_api(hostile, name):
    check(CASES[name], hostile[name])
