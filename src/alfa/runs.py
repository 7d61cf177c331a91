"""Open an existing run directory: its config, its checkpoint and a ready meta-learner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alfa.build import build_learner, configure_runtime, resolve_device
from alfa.checkpoint import CheckpointError, latest_good_checkpoint, list_top, load_checkpoint
from alfa.config import Config, config_from_dict, read_yaml
from alfa.errors import AlfaError, ConfigError
from alfa.meta_learner import MetaLearner
from alfa.tasks.source import TaskSource, build_source

__all__ = ["load_learner_state", "load_run", "load_run_config"]


def load_run_config(run_dir: Path) -> Config:
    """The resolved config of a run, or an error saying the folder is not a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise AlfaError(f"run directory '{run_dir}' does not exist")
    if not run_dir.is_dir():
        raise AlfaError(f"'{run_dir}' is not a directory; pass the folder that 'alfa train' wrote")
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise AlfaError(
            f"'{run_dir}' is not an alfa run directory (no config.yaml); "
            "pass the folder that 'alfa train' wrote"
        )
    data = read_yaml(path)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"'{path}': {exc}") from exc


def load_learner_state(learner: MetaLearner, state: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's meta-learner weights, naming the file if they do not fit."""
    try:
        learner.load_state_dict(state["learner"])
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint '{path}' does not fit the run's config.yaml (was it edited?): {first}"
        ) from exc


def load_run(
    run_dir: Path, *, checkpoint: str = "best"
) -> tuple[Config, MetaLearner, TaskSource, dict[str, Any]]:
    """Config, meta-learner (weights loaded), task source and checkpoint state of a run.

    Args:
        checkpoint: ``"best"`` (by validation; the last one when there is none) or ``"last"``.

    Raises:
        AlfaError: the folder is not a run directory or holds no checkpoint yet.
        CheckpointError: the chosen checkpoint (or every periodic one) is damaged; the message
            names the file.
    """
    if checkpoint not in ("best", "last"):
        raise AlfaError(f"checkpoint must be 'best' or 'last'; got {checkpoint!r}")
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    folder = run_dir / "checkpoints"
    best = folder / "best.pt"
    if checkpoint == "best" and best.is_file():
        try:
            path, state = best, load_checkpoint(best)
        except CheckpointError as exc:
            raise CheckpointError(
                f"{exc}; '--checkpoint last' uses the newest periodic one"
            ) from exc
    else:
        found = latest_good_checkpoint(folder)
        if found is None:
            raise AlfaError(
                f"run directory '{run_dir}' has no checkpoint yet; "
                f"train it further with 'alfa train --resume {run_dir}'"
            )
        path, state = found
    source = build_source(config)
    learner = build_learner(config, task=source.task, in_channels=source.in_channels)
    load_learner_state(learner, state, path)
    learner.to(configure_runtime(config))
    learner.eval()
    return config, learner, source, state


def load_ensemble(run_dir: Path, k: int, config: Config, source: TaskSource) -> list[MetaLearner]:
    """The ``k`` best checkpoints of a run by validation (``train.keep_best`` >= k), as learners.

    Raises:
        AlfaError: the run kept fewer than ``k`` top checkpoints.
    """
    folder = Path(run_dir) / "checkpoints"
    ranked = []
    for iteration, path in sorted(list_top(folder).items()):
        state = load_checkpoint(path)
        ranked.append((float(state["score"]), iteration, path, state))
    ranked.sort(key=lambda e: e[0], reverse=source.metric != "mse")
    if len(ranked) < k:
        raise AlfaError(
            f"--ensemble {k} needs {k} top checkpoints but '{folder}' holds {len(ranked)}; "
            f"train with train.keep_best={k} (or more)"
        )
    device = resolve_device(config.train.device)
    learners = []
    for _, _, path, state in ranked[:k]:
        learner = build_learner(config, task=source.task, in_channels=source.in_channels)
        load_learner_state(learner, state, path)
        learners.append(learner.to(device).eval())
    return learners
