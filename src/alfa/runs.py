"""Open an existing run directory: its config, its checkpoint and a ready meta-learner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alfa.build import build_learner, resolve_device
from alfa.checkpoint import latest_good_checkpoint, load_checkpoint
from alfa.config import Config, config_from_dict, read_yaml
from alfa.errors import AlfaError
from alfa.meta_learner import MetaLearner
from alfa.tasks.source import TaskSource, build_source

__all__ = ["load_run", "load_run_config"]


def load_run_config(run_dir: Path) -> Config:
    """The resolved config of a run, or an error saying the folder is not a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AlfaError(f"run directory '{run_dir}' does not exist")
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise AlfaError(
            f"'{run_dir}' is not an alfa run directory (no config.yaml); "
            "pass the folder that 'alfa train' wrote"
        )
    return config_from_dict(read_yaml(path))


def load_run(
    run_dir: Path, *, checkpoint: str = "best"
) -> tuple[Config, MetaLearner, TaskSource, dict[str, Any]]:
    """Config, meta-learner (weights loaded), task source and checkpoint state of a run.

    Args:
        checkpoint: ``"best"`` (by validation; the last one when there is none) or ``"last"``.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    folder = run_dir / "checkpoints"
    state = None
    if checkpoint == "best" and (folder / "best.pt").is_file():
        state = load_checkpoint(folder / "best.pt")
    if state is None:
        found = latest_good_checkpoint(folder)
        if found is None:
            raise AlfaError(f"run directory '{run_dir}' has no usable checkpoint yet")
        state = found[1]
    source = build_source(config)
    learner = build_learner(config, task=source.task, in_channels=source.in_channels)
    learner.load_state_dict(state["learner"])
    learner.to(resolve_device(config.train.device))
    learner.eval()
    return config, learner, source, state
