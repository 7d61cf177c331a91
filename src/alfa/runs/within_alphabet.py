"""Within-alphabet one-shot evaluation of an Omniglot model (``alfa eval --episodes
within-alphabet``).

Every episode's classes are characters of one alphabet (Lake et al.'s one-shot classification
task; the episodes and their rules: :mod:`alfa.data.within_group`,
:class:`~alfa.tasks.within_alphabet.WithinAlphabetSource`). Each part of the episodes is scored
by :func:`alfa.runs.evaluate.evaluate`, so an ensemble, a distributed job and the eval-mode
rule work as in the standard protocol. The report holds:

* the accuracy of the main part (``ways``-way episodes of the alphabets with at least ``ways``
  characters): mean, 95% CI over episodes, standard deviations, as
  :func:`~alfa.runs.evaluate.evaluate` reports them;
* the same for each of those alphabets (``"alphabets"``), over its own episodes;
* the accuracy of every episode (``"per_task"``) and its alphabet (``"task_alphabets"``), in
  the order of the fixed episodes, for paired comparisons of models tested on the same ones;
* each alphabet with fewer characters than ``ways`` apart (``"separate"``): its episodes hold
  all its characters (e.g. 17-way for Tagalog), scored on those outputs only, and are never
  averaged with the main part;
* the alphabets skipped (one character), under ``"skipped"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alfa.engine.meta_learner import MetaLearner
from alfa.runs.distributed import World
from alfa.runs.evaluate import evaluate, summarise
from alfa.tasks.within_alphabet import PartSource, WithinAlphabetSource

__all__ = ["evaluate_within_alphabet", "report_lines"]

PROTOCOL = "within-alphabet"


def _score(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, 95% CI and standard deviation of some episodes' accuracies (None for none: fewer
    episodes than alphabets leave some without)."""
    if not values:
        return {"mean": None, "ci95": None, "std": None}
    mean, ci95, std = summarise(torch.tensor(values, dtype=torch.float64))
    return {"mean": mean, "ci95": ci95, "std": std}


def _part(
    learners: list[MetaLearner], source: PartSource, tasks: int, options: dict[str, Any]
) -> dict[str, Any]:
    result = evaluate(
        learners, source, tasks=tasks, per_task=True, classes=source.part.ways, **options
    )
    return {
        "ways": source.part.ways,
        "tasks": result["tasks"],
        "mean": result["mean"],
        "ci95": result["ci95"],
        "std": result["std"],
        "per_prediction_std": result["per_prediction_std"],
        "per_task": result["per_task"],
        "steps": result["steps"],
    }


def evaluate_within_alphabet(
    learner: MetaLearner | Sequence[MetaLearner],
    source: WithinAlphabetSource,
    *,
    tasks: int = 600,
    seed: int = 1234,
    batch: int = 100,
    steps: int | None = None,
    first_order: bool = True,
    device: torch.device | str = "cpu",
    progress: bool = False,
    world: World | None = None,
) -> dict[str, Any]:
    """Adapt to and score ``tasks`` fixed within-alphabet episodes of each part of ``source``.

    Args:
        learner: a meta-learner, or several whose outputs are averaged (an ensemble).
        source: the episodes, e.g. those of a run's test classes,
            :meth:`~alfa.tasks.within_alphabet.WithinAlphabetSource.from_config`.
        tasks: episodes of the main part, and of each smaller alphabet's part.
        seed: the episodes' seed (``eval.seed``, 1234 by default); the same seed gives the
            same episodes.
        batch, steps, first_order, device, progress, world: as for
            :func:`~alfa.runs.evaluate.evaluate`.

    Returns:
        The report described in the module docstring (JSON-serialisable); ``mean``, ``ci95``,
        ``std`` and ``per_prediction_std`` are None when no alphabet has ``ways`` characters.
    """
    learners = [learner] if isinstance(learner, MetaLearner) else list(learner)
    parts = source.parts
    options = {
        "seed": seed,
        "batch": batch,
        "steps": steps,
        "first_order": first_order,
        "device": device,
        "progress": progress,
        "world": world,
    }
    report: dict[str, Any] = {
        "protocol": PROTOCOL,
        "metric": "accuracy",
        "ways": parts.ways,
        "shots": parts.shots,
        "query": parts.query,
        "tasks": 0,
        "seed": seed,
        "steps": learners[0].steps if steps is None else steps,
        "ensemble": len(learners),
        "mean": None,
        "ci95": None,
        "std": None,
        "per_prediction_std": None,
        "alphabets": {},
        "per_task": [],
        "task_alphabets": [],
        "separate": {},
        "skipped": dict(parts.skipped),
    }
    for part_source in source.sources:
        part = part_source.part
        scored = _part(learners, part_source, tasks, options)
        if part.separate:
            report["separate"][part.name] = {"characters": part.classes[0], **scored}
            continue
        per_task = scored.pop("per_task")
        alphabets = [part.group_of(i) for i in range(len(per_task))]
        for name in ("tasks", "mean", "ci95", "std", "per_prediction_std"):
            report[name] = scored[name]
        report["per_task"] = per_task
        report["task_alphabets"] = alphabets
        for group, characters in zip(part.groups, part.classes, strict=True):
            mine = [v for v, g in zip(per_task, alphabets, strict=True) if g == group]
            report["alphabets"][group] = {
                "characters": characters,
                "tasks": len(mine),
                **_score(mine),
            }
    return report


def _percent(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "no episode"
    return f"{entry['mean']:.4f} +- {entry['ci95']:.4f}"


def report_lines(report: dict[str, Any], suffix: str = "") -> list[str]:
    """The lines ``alfa eval --episodes within-alphabet`` prints for a report of
    :func:`evaluate_within_alphabet` (``suffix``: more to say in the first line's brackets,
    e.g. the iteration)."""
    ways, shots, query = report["ways"], report["shots"], report["query"]
    lines = [
        f"within-alphabet episodes: {ways}-way {shots}-shot, {query} queries per class, "
        "the characters of one alphabet each (unrotated)"
    ]
    if report["mean"] is None:
        lines.append(f"accuracy: none (no test alphabet has {ways} characters)")
    else:
        lines.append(
            f"accuracy: {_percent(report)} (95% CI, {report['tasks']} tasks, "
            f"{report['steps']} steps{suffix})"
        )
    for name, entry in report["alphabets"].items():
        lines.append(
            f"  {name} ({entry['characters']} characters): {_percent(entry)} "
            f"({entry['tasks']} tasks)"
        )
    for name, entry in report["separate"].items():
        lines.append(
            f"  {name} ({entry['characters']} characters, fewer than {ways}): "
            f"{entry['ways']}-way episodes of all its characters, reported apart, not in the "
            f"accuracy above: {_percent(entry)} ({entry['tasks']} tasks)"
        )
    for name, count in report["skipped"].items():
        lines.append(f"  {name} ({count} character): skipped, a one-way episode tests nothing")
    return lines
