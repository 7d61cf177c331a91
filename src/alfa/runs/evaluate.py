"""The evaluation protocol: fixed seeded test tasks, mean with a 95% confidence interval.

For regression the metric is the query MSE per task (Table 8: 100 query points); for
classification the query accuracy per task, plus the per-prediction standard deviation that the
paper's tables print (reference A.4). ``ci95 = 1.96 * std / sqrt(tasks)`` over tasks.

In a distributed job (:mod:`alfa.runs.distributed`) rank ``r`` of ``N`` evaluates the chunks
``r, r + N, ...`` of ``batch`` fixed tasks and the per-task results are gathered in chunk order,
so every rank gets exactly the single-process values, mean and CI (a chunk is computed alike
whichever rank computes it). ``batch`` at most ``tasks / N`` keeps every rank busy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from tqdm import tqdm

from alfa.engine.losses import accuracy, mse
from alfa.engine.meta_learner import MetaLearner
from alfa.runs.distributed import World, gather
from alfa.tasks.source import TaskSource

__all__ = ["evaluate", "summarise"]


def summarise(per_task: torch.Tensor) -> tuple[float, float, float]:
    """Mean, 95% CI half-width and standard deviation of per-task values."""
    values = per_task.double()
    n = values.numel()
    std = float(values.std(unbiased=False)) if n > 1 else 0.0
    return float(values.mean()), 1.96 * std / math.sqrt(n), std


def evaluate(
    learner: MetaLearner | Sequence[MetaLearner],
    source: TaskSource,
    *,
    split: str = "test",
    tasks: int = 600,
    seed: int = 1234,
    batch: int = 100,
    steps: int | None = None,
    first_order: bool = True,
    device: torch.device | str = "cpu",
    progress: bool = False,
    per_task: bool = False,
    world: World | None = None,
    classes: int | None = None,
) -> dict[str, Any]:
    """Adapt to each fixed task's support set and score its query set.

    With several learners (the top-k checkpoints of a run), each adapts on its own and their
    query outputs (logits, or regression predictions) are averaged before scoring: the official
    code's checkpoint ensemble (reference A.4).

    With ``per_task`` the result also holds ``"per_task"``: each task's value (MSE or accuracy)
    in the order of the fixed tasks, for paired comparisons of runs tested on the same tasks.

    With ``world`` (a distributed job) the chunks are shared among its ranks and every rank
    returns the whole result.

    With ``classes`` (classification) only the first ``classes`` outputs are scored: tasks with
    fewer classes than the learner's output layer (labels ``0 .. classes - 1``, e.g. a 17-way
    episode for a 20-way model), whose other outputs stand for no class of the task and are
    never predicted. The adaptation still sees every output, as the learner was trained.

    The learners are put in eval mode while they are scored (and given back in the mode they
    were in), so random layers such as ``nn.Dropout`` are off and the same tasks give the same
    score every time: the fixed seeded protocol depends on nothing else.
    """
    learners = [learner] if isinstance(learner, MetaLearner) else list(learner)
    modes = [m.training for m in learners]
    for m in learners:
        m.eval()
    try:
        return _evaluate(
            learners,
            source,
            split,
            tasks,
            seed,
            batch,
            steps,
            first_order,
            device,
            progress,
            per_task,
            world,
            classes,
        )
    finally:
        for m, mode in zip(learners, modes, strict=True):
            m.train(mode)


def _evaluate(
    learners: list[MetaLearner],
    source: TaskSource,
    split: str,
    tasks: int,
    seed: int,
    batch: int,
    steps: int | None,
    first_order: bool,
    device: torch.device | str,
    progress: bool,
    per_task: bool,
    world: World | None,
    classes: int | None,
) -> dict[str, Any]:
    steps = learners[0].steps if steps is None else steps
    here = world if world is not None else World()
    chunks = source.fixed_chunks(split, tasks, seed, batch)
    mine = range(here.rank, len(chunks), here.size)
    shown = progress and here.main
    bar = tqdm(total=len(mine), desc=f"eval {split}", unit="chunk", disable=not shown, leave=False)
    done: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for index in mine:
        chunk = chunks[index].to(device)
        outputs = [
            m(chunk, steps=steps, first_order=first_order, keep_graph=False).outputs
            for m in learners
        ]
        mean_out = torch.stack(outputs).mean(0)
        if source.task == "classification":
            if classes is not None:
                mean_out = mean_out[..., :classes]
            hits = accuracy(mean_out, chunk.query_y).cpu()
            done[index] = (hits.mean(1), hits)
        else:
            done[index] = (mse(mean_out, chunk.query_y).cpu(), None)
        bar.update(1)
    bar.close()
    if here.distributed:
        done = {i: result for part in gather(done, here) for i, result in part.items()}
    ordered = [done[i] for i in range(len(chunks))]
    values = torch.cat([v for v, _ in ordered])
    correct = [c for _, c in ordered if c is not None]
    mean, ci95, std = summarise(values)
    result: dict[str, Any] = {
        "metric": source.metric,
        "mean": mean,
        "ci95": ci95,
        "std": std,
        "tasks": int(values.numel()),
        "steps": steps,
        "seed": seed,
        "split": split,
        "ensemble": len(learners),
    }
    if correct:
        flat = torch.cat([c.flatten() for c in correct]).double()
        result["per_prediction_std"] = float(flat.std(unbiased=False))
    if per_task:
        result["per_task"] = values.double().tolist()
    return result
