"""Validation during training: score the fixed validation tasks, log and print the result, and
keep the best checkpoint (``best.pt``) and the top-k list (``train.keep_best``).

A non-finite validation score is logged and reported but never counted as the best. In a
distributed job every rank evaluates its share of the validation tasks
(:func:`~alfa.runs.evaluate.evaluate`) and gets the same result; only rank 0 writes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from alfa.config import Config
from alfa.engine.meta_learner import MetaLearner
from alfa.runs.checkpoint import save_checkpoint, top_name
from alfa.runs.distributed import World
from alfa.runs.divergence import meta_parameters_finite
from alfa.runs.evaluate import evaluate
from alfa.runs.rundir import run_paths
from alfa.runs.runlog import ConsoleLog, RunLog
from alfa.runs.train_state import Window, better, update_top
from alfa.tasks.source import TaskSource

__all__ = ["validate"]


def validate(
    config: Config,
    run_dir: Path,
    learner: MetaLearner,
    source: TaskSource,
    device: torch.device,
    iteration: int,
    *,
    best: float | None,
    top: list[tuple[float, int]],
    window: Window,
    log: RunLog,
    console: ConsoleLog,
    checkpoint_state: Callable[[int, float | None, list[tuple[float, int]]], dict[str, Any]],
    here: World,
) -> tuple[float | None, list[tuple[float, int]]]:
    """Validate at ``iteration``; the best score and top-k list afterwards.

    ``checkpoint_state(iteration, best, top)`` builds the state saved to ``best.pt`` (with the
    new best score and the previous top-k list) and to the top-k files (with the new list).
    """
    t = config.train
    paths = run_paths(run_dir)
    result = evaluate(
        learner,
        source,
        split="val",
        tasks=t.val_tasks,
        seed=config.eval.seed,
        batch=config.eval.batch,
        first_order=config.eval.first_order,
        device=device,
        world=here,
    )
    metric, mean = result["metric"], result["mean"]
    log.log("val", iteration, {metric: mean, "ci95": result["ci95"]})
    partial = window.values().get("train_accuracy") if window.count else None
    console.validation(
        iteration,
        metric,
        mean,
        result["ci95"],
        partial if console.train_accuracy is None else None,
    )
    if not math.isfinite(mean):
        if here.main:
            print(
                f"alfa: warning: iteration {iteration}: validation {metric} is {mean}; "
                "not counted as the best",
                file=sys.stderr,
            )
    elif better(metric, mean, best):
        meta_parameters_finite(learner, iteration)
        best = mean
        if here.main:
            save_checkpoint(paths["best"], checkpoint_state(iteration, best, top))
    if math.isfinite(mean) and t.keep_best > 1:
        top = update_top(top, metric, mean, iteration, t.keep_best)
        if here.main and any(i == iteration for _, i in top):
            state = checkpoint_state(iteration, best, top) | {"score": mean}
            save_checkpoint(paths["checkpoints"] / top_name(iteration), state)
    return best, top
