"""Does a trained ALFA learner adapt its hyperparameters to the task, and does that help?

ALFA's claim is that alpha and beta generated from each task's learning state (Eq. 5) beat
hyperparameters that are meta-learned but the same for every task (the ``learned_fixed`` rule,
Table 6's "fixed"). These diagnostics look inside a trained learner on fixed sinusoid tasks,
whose amplitude is known (the task variable that most changes how the inner loop should step):

- **spread**: how much the generated values differ across tasks, as the standard deviation
  over tasks divided by the absolute mean, median over steps and layers;
- **knock-out**: the same learner with the generated values replaced, at every step, by their
  mean over the tasks of the batch (a task-independent schedule with the learner's own average
  values), scored on the same tasks: the paired difference is what task adaptivity buys this
  learner;
- **task information**: how well the amplitude is predicted (cross-validated R^2 of a ridge
  regression) from the learning state at step 0, from the values generated from it, and from
  the layer-wise root mean squares of the step-0 gradients (log scale), which the paper's
  state (layer-wise means) leaves out;
- **scale**: the spread over tasks of each learning-state feature at step 0 that varies, and
  the ratio of the largest spread to the smallest, which motivates
  ``rule.state_encoding: log_sign`` (:mod:`alfa.rules.state_encoding`);
- **signs**: the share of negative learning rates over tasks, steps and layers, and the largest.

It uses the 200 fixed validation tasks (``split="val"``), not the test tasks.
``python scripts/adaptivity.py`` (:mod:`alfa.paper.adaptivity_report`) writes
``results/adaptivity.*`` for the ALFA cells shipped under ``results/table8/``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from alfa.engine.meta_learner import MetaLearner
from alfa.rules.base import Hyperparameters, layer_rms

__all__ = [
    "Record",
    "cv_r2",
    "diagnose",
    "diagnose_run",
    "record",
    "task_averaged",
    "validation_tasks",
]


@dataclass
class Record:
    """What the inner loop saw and produced on a batch of tasks."""

    states: list[Tensor]  # per step: [T, F] learning state (ALFA), else empty
    gradient_rms: list[Tensor]  # per step: [T, N] layer-wise root mean square of the gradients
    alpha: Tensor  # [S, T, N]
    beta: Tensor  # [S, T, N]
    mse: Tensor  # [T] query MSE after adaptation


def _mse(learner: MetaLearner, batch: Any, steps: int | None = None) -> Tensor:
    out = learner(batch, steps=steps, first_order=True, keep_graph=False, validate=False)
    return ((out.outputs - batch.query_y) ** 2).flatten(1).mean(1)


@contextlib.contextmanager
def _hyperparameters_replaced(rule: Any, make: Any) -> Iterator[None]:
    """Within the block, ``rule.hyperparameters`` is ``make(the current one)``; the previous
    one (a method, or an earlier replacement) is restored after it, so the blocks nest."""
    before = vars(rule).get("hyperparameters")
    rule.hyperparameters = make(rule.hyperparameters)
    try:
        yield
    finally:
        if before is None:
            del rule.hyperparameters
        else:
            rule.hyperparameters = before


def record(learner: MetaLearner, batch: Any) -> Record:
    """Adapt to ``batch`` and keep the learning states and the hyperparameters of every step."""
    rule = learner.rule
    states: list[Tensor] = []
    gradient_rms: list[Tensor] = []
    hypers: list[Hyperparameters] = []

    def keeping(inner: Any) -> Any:
        def kept(step: int, params: Any, grads: Any) -> Hyperparameters:
            hyper = inner(step, params, grads)
            if hasattr(rule, "learning_state"):
                states.append(rule.learning_state(params, grads).detach())
            gradient_rms.append(layer_rms(grads, rule.names).detach())
            hypers.append(Hyperparameters(hyper.alpha.detach(), hyper.beta.detach()))
            return hyper

        return kept

    with _hyperparameters_replaced(rule, keeping), torch.no_grad():
        mse = _mse(learner, batch)
    alpha = torch.stack([h.alpha for h in hypers])
    beta = torch.stack([h.beta for h in hypers])
    return Record(states, gradient_rms, alpha, beta, mse)


@contextlib.contextmanager
def task_averaged(learner: MetaLearner) -> Iterator[MetaLearner]:
    """Within the block, every step's alpha and beta are their mean over the batch's tasks."""

    def averaging(inner: Any) -> Any:
        def averaged(step: int, params: Any, grads: Any) -> Hyperparameters:
            hyper = inner(step, params, grads)
            return Hyperparameters(
                hyper.alpha.mean(0, keepdim=True).expand_as(hyper.alpha),
                hyper.beta.mean(0, keepdim=True).expand_as(hyper.beta),
            )

        return averaged

    with _hyperparameters_replaced(learner.rule, averaging):
        yield learner


def cv_r2(features: Tensor, target: Tensor, *, folds: int = 5, ridge: float = 1e-3) -> float:
    """Cross-validated R^2 of a ridge regression of ``target`` ``[T]`` on ``features``
    ``[T, F]`` (standardised on each training fold; contiguous folds). 1 is a perfect
    prediction, 0 no better than the training mean; it can be negative."""
    x, y = features.double(), target.double()
    n = x.shape[0]
    predicted = torch.empty_like(y)
    bounds = [round(i * n / folds) for i in range(folds + 1)]
    for lo, hi in itertools.pairwise(bounds):
        train = torch.ones(n, dtype=torch.bool)
        train[lo:hi] = False
        mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-12)
        xt = torch.cat([(x[train] - mean) / std, torch.ones(int(train.sum()), 1)], 1)
        gram = xt.T @ xt + ridge * train.sum() * torch.eye(xt.shape[1], dtype=x.dtype)
        w = torch.linalg.solve(gram, xt.T @ y[train])
        xs = torch.cat([(x[lo:hi] - mean) / std, torch.ones(hi - lo, 1)], 1)
        predicted[lo:hi] = xs @ w
    residual = ((y - predicted) ** 2).sum()
    return float(1 - residual / ((y - y.mean()) ** 2).sum())


def _spread(values: Tensor) -> float:
    """Median over steps and layers of std over tasks / |mean over tasks| (values [S, T, N])."""
    ratio = values.std(1) / values.mean(1).abs().clamp_min(1e-12)
    return float(ratio.median())


def diagnose(learner: MetaLearner, batch: Any, amplitude: Tensor) -> dict[str, Any]:
    """Every diagnostic of the module docstring for one learner on one batch of tasks."""
    learner.eval()
    rec = record(learner, batch)
    out: dict[str, Any] = {
        "tasks": int(rec.mse.numel()),
        "mse": float(rec.mse.mean()),
        "alpha_spread_over_tasks": _spread(rec.alpha),
        "beta_spread_over_tasks": _spread(rec.beta),
        "negative_alpha_share": float((rec.alpha < 0).double().mean()),
        "largest_abs_alpha": float(rec.alpha.abs().max()),
    }
    with task_averaged(learner), torch.no_grad():
        averaged = _mse(learner, batch)
    diff = rec.mse.double() - averaged.double()
    out |= {
        "mse_task_averaged": float(averaged.mean()),
        "adaptive_minus_averaged": float(diff.mean()),
        "adaptive_minus_averaged_ci95": 1.96
        * float(diff.std(unbiased=False))
        / math.sqrt(len(diff)),
        "share_tasks_adaptive_lower": float((diff < 0).double().mean()),
    }
    generated = torch.cat([rec.alpha[0], rec.beta[0]], 1)
    out["r2_amplitude_from_generated_step0"] = cv_r2(generated, amplitude)
    # What the paper's state leaves out: the magnitude of each layer's gradient (log scale).
    out["r2_amplitude_from_gradient_rms_step0"] = cv_r2(rec.gradient_rms[0].log(), amplitude)
    if rec.states:
        state = rec.states[0]
        # The weight means at step 0 are the same for every task (one initialisation); they
        # differ only by rounding, which the ridge's standardisation would blow up.
        varying = state.std(0) > 1e-6 * state.std(0).max()
        spread = state.std(0)[varying]
        out |= {
            "r2_amplitude_from_state_step0": cv_r2(state[:, varying], amplitude),
            "state_features_varying_step0": int(varying.sum()),
            "state_features_step0": int(state.shape[1]),
            "state_spread_min_step0": float(spread.min()),
            "state_spread_max_step0": float(spread.max()),
            "state_spread_ratio_step0": float(spread.max() / spread.min()),
        }
    return out


def validation_tasks(config: Any, tasks: int) -> tuple[Any, Tensor]:
    """The run's fixed validation tasks with their amplitudes (the same tasks as validation)."""
    from alfa.tasks.sinusoid import SinusoidTasks

    data = config.data
    sampler = SinusoidTasks(data.family, data.shots, data.eval_query, seed=config.eval.seed + 1)
    batch, parameters = sampler.sample_with_parameters(tasks)
    return batch, parameters["amplitude"]


def diagnose_run(run_dir: Path, tasks: int = 200) -> dict[str, Any]:
    """:func:`diagnose` of a run's (or shipped cell's) best checkpoint on its validation tasks."""
    from alfa.runs.reopen import load_run

    config, learner, _, state = load_run(run_dir)
    if config.data.name != "sinusoid":
        raise ValueError(f"'{run_dir}' is not a sinusoid run; the diagnostics need amplitudes")
    torch.manual_seed(0)
    batch, amplitude = validation_tasks(config, tasks)
    return {
        "cell": run_dir.name,
        "iteration": state["iteration"],
        **diagnose(learner, batch, amplitude),
    }
