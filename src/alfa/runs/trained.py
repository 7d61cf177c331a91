"""A trained model to evaluate or adapt: a run directory (one of its checkpoints) or an export.

Both give the same learner: built from the stored config alone (no training data is read) and
loaded with the meta-learned weights, on the run's device with its thread count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from alfa.config import Config
from alfa.engine.meta_learner import MetaLearner
from alfa.errors import AlfaError
from alfa.runs.build import build_learner_for, configure_runtime
from alfa.runs.export import read_export
from alfa.runs.preprocessing import Preprocessing, preprocessing_for
from alfa.runs.reopen import (
    check_path_names,
    check_weights_finite,
    load_learner_state,
    load_run_config,
    read_run_checkpoint,
)

__all__ = ["Trained", "is_export", "open_trained", "trained_config"]


@dataclass
class Trained:
    """A meta-learner ready to adapt (eval mode) and where it came from."""

    config: Config
    learner: MetaLearner
    preprocessing: Preprocessing | None
    iteration: int
    origin: Path  # the checkpoint or export file that was read
    is_export: bool


def is_export(path: Path) -> bool:
    """Whether ``path`` names a file (an export) rather than a run directory.

    Raises:
        AlfaError: a path component is longer than file names may be.
    """
    check_path_names(Path(path))
    return Path(path).is_file()


def trained_config(path: Path) -> Config:
    """The config of a run directory or an export file (before its weights are needed)."""
    return read_export(path).config if is_export(path) else load_run_config(path)


def open_trained(path: Path, *, checkpoint: str | None = None, norm: str | None = None) -> Trained:
    """The meta-learner of a run (``checkpoint``: best, last or a file) or of an export file.

    Args:
        norm: Batch-norm mode to use instead of the trained one (``transductive``/``support``).

    Raises:
        AlfaError: ``checkpoint`` given for an export, or any problem of the run or file.
    """
    path = Path(path)
    if is_export(path):
        if checkpoint is not None:
            raise AlfaError(
                f"--checkpoint selects a checkpoint of a run directory; '{path}' is an export "
                "file (it holds one model)"
            )
        e = read_export(path, norm=norm)
        return Trained(e.config, e.learner, e.preprocessing, e.iteration, path, True)
    config, state, file = read_run_checkpoint(path, checkpoint or "best")
    if norm is not None and config.model.norm != norm:
        config = replace(config, model=replace(config.model, norm=norm))
    learner = build_learner_for(config)
    load_learner_state(learner, state, file)
    check_weights_finite(learner, file)
    learner.to(configure_runtime(config))
    learner.eval()
    iteration = state.get("iteration")
    iteration = iteration if isinstance(iteration, int) else 0
    return Trained(config, learner, preprocessing_for(config), iteration, file, False)
