"""The checkpointed training state besides the meta-learner, and finding where to resume.

A checkpoint holds everything needed to continue bit for bit: the meta-learner (with the update
rule's meta-parameters), the optimiser, every random generator (torch, CUDA, Python, NumPy and
the task sampler's own), the iteration, the best validation score, the top-k list and the partial
logging window (:class:`Window`). :func:`resume_point` makes every check that can refuse a
resume before anything is built or written.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from alfa.config import Config, config_to_dict
from alfa.engine.meta_learner import MetaLearner
from alfa.errors import AlfaError, ConfigError
from alfa.runs.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    latest_good_checkpoint,
    remove_temporaries,
)
from alfa.runs.last_good import set_aside_if_damaged
from alfa.runs.reopen import changed_keys, load_learner_state, load_run_config, resumable
from alfa.runs.rundir import run_paths
from alfa.runs.runlog import read_metrics
from alfa.tasks.source import TaskSource

__all__ = [
    "ResumePoint",
    "Window",
    "better",
    "check_config_unchanged",
    "record_config",
    "refuse_lost_checkpoints",
    "restore",
    "resume_point",
    "rng_state",
    "set_rng_state",
    "training_state",
    "update_top",
]


@dataclass
class Window:
    """Running sums between two log lines (checkpointed, so a resumed log is identical).

    ``accuracy`` sums the training query accuracy of the ``accuracy_count`` classification
    iterations of the window (regression has none)."""

    loss: float = 0.0
    count: int = 0
    alpha: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    accuracy: float = 0.0
    accuracy_count: int = 0

    def add(
        self, loss: float, alpha: list[float], beta: list[float], accuracy: float | None = None
    ) -> None:
        if self.count == 0:
            self.alpha, self.beta = [0.0] * len(alpha), [0.0] * len(beta)
        self.loss += loss
        self.count += 1
        self.alpha = [a + b for a, b in zip(self.alpha, alpha, strict=True)]
        self.beta = [a + b for a, b in zip(self.beta, beta, strict=True)]
        if accuracy is not None:
            self.accuracy += accuracy
            self.accuracy_count += 1

    def values(self) -> dict[str, float]:
        out = {"loss": self.loss / self.count}
        if self.accuracy_count:
            out["train_accuracy"] = self.accuracy / self.accuracy_count
        for j, (a, b) in enumerate(zip(self.alpha, self.beta, strict=True)):
            out[f"alpha_step{j}"] = a / self.count
            out[f"beta_step{j}"] = b / self.count
        return out

    def state(self) -> dict[str, Any]:
        """The checkpointed form (the accuracy sums only when the window holds any, so a
        regression window is stored as before)."""
        state: dict[str, Any] = {
            "loss": self.loss,
            "count": self.count,
            "alpha": list(self.alpha),
            "beta": list(self.beta),
        }
        if self.accuracy_count:
            state |= {"accuracy": self.accuracy, "accuracy_count": self.accuracy_count}
        return state


ResumePoint = tuple[Path, dict[str, Any], tuple[int, float | None, Window, list[tuple[float, int]]]]
"""A checkpoint's path, its state, and its checked (iteration, best, window, top-k list)."""


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every global generator's state as tensors and plain data (``weights_only`` loads it)."""
    numpy = np.random.get_state(legacy=False)  # the MT19937 key is the one array: a tensor here
    numpy["state"]["key"] = torch.from_numpy(numpy["state"]["key"].astype(np.int64))
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": numpy,
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "python" in state:
        random.setstate(state["python"])
    numpy = state.get("numpy")
    if isinstance(numpy, dict):  # as rng_state stores it (a tuple in old checkpoints)
        key = np.asarray(numpy["state"]["key"], dtype=np.int64).astype(np.uint32)
        numpy = {**numpy, "state": {**numpy["state"], "key": key}}
    if numpy is not None:
        np.random.set_state(numpy)
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def update_top(
    top: list[tuple[float, int]], metric: str, score: float, iteration: int, k: int
) -> list[tuple[float, int]]:
    """The ``k`` best (score, iteration) pairs after adding this validation."""
    ranked = sorted([*top, (score, iteration)], key=lambda e: e[0], reverse=metric != "mse")
    return ranked[:k]


def better(metric: str, new: float, best: float | None) -> bool:
    if not math.isfinite(new):
        return False
    if best is None:
        return True
    return new < best if metric == "mse" else new > best


def restore(
    path: Path,
    state: dict[str, Any],
    learner: MetaLearner,
    optimizer: torch.optim.Optimizer,
    source: TaskSource,
) -> None:
    """Put a checkpoint's training state back, naming the file if it does not fit."""
    load_learner_state(learner, state, path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        source.load_state_dict(state["source"])
        set_rng_state(state["rng"] if "rng" in state else {"torch": state["torch_rng"]})
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' cannot be resumed with the run's config.yaml: {exc}"
        ) from exc


_MISSING = object()


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def training_state(
    path: Path, state: dict[str, Any]
) -> tuple[int, float | None, Window, list[tuple[float, int]]]:
    """Iteration, best score, logging window and top-k list of a checkpoint, type-checked.

    Raises:
        CheckpointError: naming the file and the key that is missing or of the wrong type.
    """

    def bad(key: str, value: Any, expected: str) -> CheckpointError:
        got = "missing" if value is _MISSING else f"{value!r}"[:60]
        return CheckpointError(
            f"checkpoint '{path}' is not a valid training state: '{key}' is {got}, "
            f"expected {expected}"
        )

    iteration = state.get("iteration", _MISSING)
    if type(iteration) is not int or iteration < 0:
        raise bad("iteration", iteration, "an integer >= 0")
    best = state.get("best", _MISSING)
    if best is not None and not _number(best):
        raise bad("best", best, "a number or None")
    raw = state.get("window", _MISSING)
    fields = {"loss", "count", "alpha", "beta"}
    with_accuracy = fields | {"accuracy", "accuracy_count"}
    if (
        not isinstance(raw, dict)
        or set(raw) not in (fields, with_accuracy)
        or not _number(raw["loss"])
        or type(raw["count"]) is not int
        or raw["count"] < 0
        or not all(
            isinstance(raw[k], list) and all(_number(v) for v in raw[k]) for k in ("alpha", "beta")
        )
        or len(raw["alpha"]) != len(raw["beta"])
        or (
            "accuracy" in raw
            and (
                not _number(raw["accuracy"])
                or type(raw["accuracy_count"]) is not int
                or not 0 <= raw["accuracy_count"] <= raw["count"]
            )
        )
    ):
        raise bad("window", raw, "the logging window {loss, count, alpha, beta[, accuracy]}")
    top = state.get("top", [])
    if not isinstance(top, list) or not all(
        isinstance(e, (list, tuple)) and len(e) == 2 and _number(e[0]) and type(e[1]) is int
        for e in top
    ):
        raise bad("top", top, "a list of [score, iteration] pairs")
    window = Window(
        float(raw["loss"]),
        raw["count"],
        list(raw["alpha"]),
        list(raw["beta"]),
        float(raw.get("accuracy", 0.0)),
        int(raw.get("accuracy_count", 0)),
    )
    return iteration, best, window, [(float(v), int(i)) for v, i in top]


def check_config_unchanged(
    config: Config, run_dir: Path, path: Path, state: dict[str, Any]
) -> None:
    """Refuse a config that differs from the checkpoint's in a key that may not change."""
    stored = state.get("config")
    if not isinstance(stored, dict):
        return  # written before checkpoints held their config
    changed = {k: v for k, v in changed_keys(stored, config).items() if not resumable(k)}
    if changed:
        listed = ", ".join(
            f"{key} ({old!r} in the checkpoint, {new!r} now)" for key, (old, new) in changed.items()
        )
        raise ConfigError(
            f"the config of run '{run_dir}' differs from its checkpoint '{path.name}' in {listed}; "
            "only train.iterations, train.log_every and the like may change in a run: undo the "
            "change in config.yaml, or start a new run with it"
        )
    start = int(state["iteration"]) if type(state.get("iteration")) is int else 0
    if config.train.iterations < start:
        raise ConfigError(
            f"config key 'train.iterations' is {config.train.iterations}, below the iteration "
            f"{start} of checkpoint '{path}'; a run cannot be shortened"
        )


def refuse_lost_checkpoints(config: Config, run_dir: Path, records: list[dict[str, Any]]) -> None:
    """With no periodic checkpoint, refuse to restart a run whose log shows that one existed:
    restarting from iteration 0 would drop every record of ``metrics.jsonl``."""
    paths = run_paths(run_dir)
    last = max((int(r.get("iteration", 0)) for r in records), default=0)
    if last <= config.train.checkpoint_every:
        return  # killed before its first checkpoint: the records are written again, identically
    kept = [p.name for p in sorted(paths["checkpoints"].glob("*.pt"))]
    also = f" ({', '.join(kept)} left)" if kept else ""
    raise AlfaError(
        f"run directory '{run_dir}' has no periodic checkpoint (checkpoints/step-*.pt){also} but "
        f"its metrics.jsonl goes to iteration {last}; resuming would restart from iteration 0 "
        "and drop that log: restore the checkpoints, or start a new run"
    )


def record_config(config: Config, run_dir: Path) -> None:
    """Write ``config.yaml`` anew when a resumed run changed it (e.g. ``train.iterations``)."""
    try:
        same = load_run_config(run_dir) == config
    except AlfaError:
        same = False
    if not same:
        text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
        atomic_write_bytes(run_paths(run_dir)["config"], text.encode())


def resume_point(config: Config, run_dir: Path) -> ResumePoint | None:
    """The checkpoint to resume from with its checked training state (None: start at 0),
    after every check that can refuse the resume, before anything is built or written."""
    paths = run_paths(run_dir)
    records = read_metrics(paths["metrics"])  # a damaged log is refused before it is rewritten
    remove_temporaries(paths["checkpoints"])
    remove_temporaries(run_dir)
    found = latest_good_checkpoint(paths["checkpoints"])
    if found is None:
        refuse_lost_checkpoints(config, run_dir, records)
        report_damaged_best(paths["best"])
        return None
    path, state = found
    check_config_unchanged(config, run_dir, path, state)
    point = path, state, training_state(path, state)
    report_damaged_best(paths["best"])
    return point


def report_damaged_best(best: Path) -> None:
    """Say that ``best.pt`` is damaged (moved aside) and go on: a validation better than the
    run's recorded best writes a new one."""
    damaged = set_aside_if_damaged(best)
    if damaged:
        print(
            f"alfa: warning: {damaged}; the next validation better than the run's best writes "
            "a new best.pt ('alfa eval' uses the newest periodic checkpoint until then)",
            file=sys.stderr,
        )
