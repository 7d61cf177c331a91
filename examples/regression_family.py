"""ALFA on a regression family of your own: y = a * x^2 + b * x + c with random a, b, c per task.

    python examples/regression_family.py --iterations 500

A task family is a function that returns a :class:`alfa.TaskBatch`: support and query inputs and
targets with a leading task axis, ``[tasks, examples, features]``. Anything else (the learner,
the outer loop) is the same as for the paper's sinusoids.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import alfa


def quadratics(tasks: int, shots: int, query: int, generator: torch.Generator) -> alfa.TaskBatch:
    """``tasks`` quadratics with coefficients in [-1, 1], inputs in [-2, 2]."""
    coefficients = torch.rand(tasks, 3, 1, 1, generator=generator) * 2 - 1
    x = torch.rand(tasks, shots + query, 1, generator=generator) * 4 - 2
    a, b, c = coefficients.unbind(1)
    y = a * x**2 + b * x + c
    return alfa.TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args()
    torch.manual_seed(0)

    model = nn.Sequential(
        nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1)
    )
    learner = alfa.MetaLearner(model, rule="alfa", steps=5)
    optimiser = torch.optim.Adam(learner.parameters(), lr=1e-3)
    train = torch.Generator().manual_seed(0)
    test_tasks = quadratics(200, 5, 50, torch.Generator().manual_seed(1234))  # fixed test set

    def test_mse() -> float:
        return learner(test_tasks, first_order=True, keep_graph=False).query_losses.mean().item()

    before = test_mse()
    for _ in range(args.iterations):
        optimiser.zero_grad()
        learner(quadratics(25, 5, 5, train)).loss.backward()
        optimiser.step()
    print(f"engine: {learner.engine}")
    print(
        f"test MSE on 200 fixed 5-shot quadratics: {before:.3f} before, {test_mse():.3f} after "
        f"{args.iterations} iterations"
    )


if __name__ == "__main__":
    main()
