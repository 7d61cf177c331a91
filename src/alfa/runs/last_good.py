"""Which checkpoints of a run can be trusted.

A damaged ``best.pt`` found when a run resumes is moved out of the way of readers
(:func:`set_aside_if_damaged`), so the run goes on and ``alfa eval`` uses a periodic checkpoint
until a better validation writes a new one.

A checkpoint of a diverged run is good when it loads, its weights are finite and it scores a
finite validation metric. A run stops at the first NaN or inf without writing a checkpoint, but
the newest checkpoint on disk may still be unusable: copied in or edited with NaN weights, or
with finite weights that adapt to NaN or inf predictions. :func:`last_good_checkpoint` checks the
periodic checkpoints newest first, scoring each on the run's fixed validation tasks as a
validation during training does, and says why the newer ones were passed over.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from alfa.config import Config
from alfa.errors import AlfaError, DataError
from alfa.runs.build import build_learner
from alfa.runs.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from alfa.runs.evaluate import evaluate
from alfa.runs.reopen import check_weights_finite, load_learner_state
from alfa.tasks.source import TaskSource

__all__ = ["LastGood", "last_good_checkpoint", "set_aside_if_damaged"]


@dataclass
class LastGood:
    """The newest good checkpoint (None: none is good) and why each newer one is not."""

    path: Path | None = None
    iteration: int | None = None
    score: str = ""  # e.g. "validation mse 0.4213", or why no score could be computed
    rejected: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The clause a divergence message ends with."""
        passed = f" ({'; '.join(self.rejected)})" if self.rejected else ""
        if self.path is None:
            if not self.rejected:
                return "no checkpoint was written yet"
            return f"no checkpoint is good{passed}"
        return (
            f"the last good checkpoint '{self.path}' (iteration {self.iteration}: finite "
            f"weights, {self.score}) is kept{passed}"
        )


def _validation(
    config: Config, source: TaskSource, learner: torch.nn.Module, device: torch.device
) -> tuple[str, float]:
    """The validation metric and value of ``learner``, on the tasks a validation during training
    uses."""
    result = evaluate(
        learner,
        source,
        split="val",
        tasks=config.train.val_tasks,
        seed=config.eval.seed,
        batch=config.eval.batch,
        first_order=config.eval.first_order,
        device=device,
    )
    return result["metric"], float(result["mean"])


def last_good_checkpoint(
    config: Config, folder: Path, source: TaskSource, device: torch.device
) -> LastGood:
    """The newest periodic checkpoint in ``folder`` that loads, holds finite weights and gives a
    finite validation metric; the reasons the newer ones failed are collected."""
    found = LastGood()
    for path in reversed(list_checkpoints(folder)):
        try:
            state = load_checkpoint(path)
            learner = build_learner(config, task=source.task, in_channels=source.in_channels)
            load_learner_state(learner, state, path)
            check_weights_finite(learner, path)
        except CheckpointError as exc:
            reason = "non-finite weights" if "non-finite" in str(exc) else "does not load"
            found.rejected.append(f"'{path.name}': {reason}")
            continue
        try:
            metric, value = _validation(config, source, learner.to(device), device)
        except DataError as exc:  # e.g. no validation classes: the weights are all we can check
            score = f"not validated: {str(exc).splitlines()[0]}"
        except (AlfaError, RuntimeError) as exc:
            found.rejected.append(f"'{path.name}': validation failed ({exc})")
            continue
        else:
            if not math.isfinite(value):
                found.rejected.append(f"'{path.name}': validation {metric} {value}")
                continue
            score = f"validation {metric} {value:.4f}"
        found.path, found.iteration, found.score = path, int(state["iteration"]), score
        return found
    return found


def set_aside_if_damaged(path: Path) -> str | None:
    """Move a damaged checkpoint (e.g. ``best.pt``) to ``NAME.damaged``, out of the way of
    readers, and say what happened; None when it loads (or does not exist)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        aside = path.with_name(f"{path.name}.damaged")
        try:
            os.replace(path, aside)
        except OSError as move:
            return f"{exc}; it could not be moved aside ({move.strerror or move})"
        return f"{exc}; moved to '{aside.name}'"
    return None
