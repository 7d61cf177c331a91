"""Open an existing run directory: its config, its checkpoint and a ready meta-learner."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import torch

from alfa.config import (
    Config,
    config_from_dict,
    config_to_dict,
    leaf_keys,
    parse_overrides,
    read_yaml,
)
from alfa.engine.meta_learner import MetaLearner
from alfa.errors import AlfaError, ConfigError
from alfa.runs.build import build_learner, configure_runtime, resolve_device
from alfa.runs.checkpoint import CheckpointError, latest_good_checkpoint, list_top, load_checkpoint
from alfa.runs.class_lists import read_run_class_lists, still_valid
from alfa.tasks.source import TaskSource, build_source

__all__ = [
    "RESUMABLE_KEYS",
    "changed_keys",
    "check_path_names",
    "check_weights_finite",
    "key_matches",
    "leaf_keys",
    "load_learner_state",
    "load_run",
    "load_run_config",
    "override_config",
    "read_run_checkpoint",
    "resumable",
    "resume_config",
]

RESUMABLE_KEYS = (
    "name",
    "data.workers",
    "train.iterations",
    "train.log_every",
    "train.val_every",
    "train.checkpoint_every",
    "train.keep_last",
    "train.threads",
    "train.device",
    "train.recompute",
    "train.engine",
    "train.task_group",
    "train.tf32",
    "train.compile",
    "train.cuda_graph",
    "train.channels_last",
    "train.kernels",
    "train.reuse_memory",
    "eval.*",
)
"""Config keys that may change between the invocations of a run (``eval.*``: the whole section):
they change how long it runs, what it logs and keeps, and where and how fast it computes, not
what it learns (``data.workers``: the episode stream is the same for any number of decoding
processes)."""


def key_matches(key: str, patterns: tuple[str, ...]) -> bool:
    """Whether the dotted config ``key`` is one of ``patterns`` (``section.*``: a whole section)."""
    return any(
        key == allowed or (allowed.endswith(".*") and key.startswith(allowed[:-1]))
        for allowed in patterns
    )


def resumable(key: str) -> bool:
    """Whether the dotted config ``key`` may change when a run is resumed."""
    return key_matches(key, RESUMABLE_KEYS)


def changed_keys(stored: dict[str, Any], config: Config) -> dict[str, tuple[Any, Any]]:
    """The dotted keys whose value differs between a checkpoint's stored config and ``config``,
    as ``{key: (stored value, value now)}`` (keys that only one of them has are not compared)."""
    with contextlib.suppress(ConfigError, TypeError, ValueError):  # canonical form, if valid
        stored = config_to_dict(config_from_dict(stored))
    old, new = leaf_keys(stored), leaf_keys(config_to_dict(config))
    return {k: (old[k], new[k]) for k in old if k in new and old[k] != new[k]}


def check_path_names(path: Path, what: str = "run directory") -> None:
    """Refuse a path with a component longer than the file system allows (255 bytes, usually).

    Raises:
        AlfaError: naming the component's length and the limit.
    """
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > 255:
            raise AlfaError(
                f"{what} '{part[:40]}...' has a name of {size} bytes; file names may have at "
                "most 255 bytes"
            )


def override_config(
    config: Config, overrides: list[str], allowed: tuple[str, ...], refused: str
) -> Config:
    """``config`` with ``key=value`` overrides, validated as a new config is; a key that does not
    match ``allowed`` (see :func:`key_matches`) is refused with one line ending in ``refused``.

    Raises:
        ConfigError: an override is malformed, unknown, invalid, or of a key not allowed.
    """
    if not overrides:
        return config
    given = leaf_keys(parse_overrides(overrides))
    data = config_to_dict(config)
    for key, value in given.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{key}': '{part}' is not a section")
        node[leaf] = value
    changed = config_from_dict(data)  # unknown keys and bad values first, with their messages
    fixed = sorted(key for key in given if not key_matches(key, allowed))
    if fixed:
        raise ConfigError(f"config key '{fixed[0]}' cannot change {refused}")
    return changed


def resume_config(run_dir: Path, overrides: list[str]) -> Config:
    """The config of a run to resume, with ``key=value`` overrides of keys that may change.

    Raises:
        ConfigError: an override is unknown, invalid, or of a key that may not change in a run.
    """
    return override_config(
        load_run_config(run_dir),
        overrides,
        RESUMABLE_KEYS,
        f"when resuming a run; '--resume' accepts overrides of {', '.join(RESUMABLE_KEYS)} "
        "(start a new run to change others)",
    )


def load_run_config(run_dir: Path) -> Config:
    """The resolved config of a run, or an error saying the folder is not a run directory."""
    run_dir = Path(run_dir)
    check_path_names(run_dir)
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
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint '{path}' does not fit the run's config.yaml (was it edited?): {first}"
        ) from exc


def check_weights_finite(learner: MetaLearner, path: Path) -> None:
    """Refuse a checkpoint whose meta-learned weights hold NaN or inf (nothing can be scored).

    Raises:
        CheckpointError: naming the file and the first non-finite tensor.
    """
    for name, tensor in learner.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"checkpoint '{path}' holds non-finite (NaN or inf) weights in '{name}'; "
                "it cannot be evaluated"
            )


def read_run_checkpoint(
    run_dir: Path, checkpoint: str = "best"
) -> tuple[Config, dict[str, Any], Path]:
    """The config of a run and one of its checkpoints, read and verified (no data is loaded).

    Args:
        checkpoint: ``"best"`` (by validation; the newest periodic one when there is none),
            ``"last"`` (the newest periodic one that is intact), or the path of a checkpoint
            file (as given, or a name inside the run's ``checkpoints/`` folder).

    Returns:
        The config, the checkpoint's content and the file it was read from.

    Raises:
        AlfaError: the folder is not a run directory, holds no checkpoint yet, or the named
            checkpoint file does not exist.
        CheckpointError: the chosen checkpoint (or every periodic one) is damaged.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    folder = run_dir / "checkpoints"
    best = folder / "best.pt"
    if checkpoint not in ("best", "last"):
        path = Path(checkpoint)
        if not path.is_file() and (folder / checkpoint).is_file():
            path = folder / checkpoint
        if not path.is_file():
            raise AlfaError(
                f"checkpoint '{checkpoint}' is not a file; use best, last or the path of a "
                f"checkpoint (e.g. {folder / 'step-0000100.pt'})"
            )
        return config, load_checkpoint(path), path
    if checkpoint == "best" and best.is_file():
        try:
            return config, load_checkpoint(best), best
        except CheckpointError as exc:
            raise CheckpointError(
                f"{exc}; '--checkpoint last' uses the newest periodic one"
            ) from exc
    found = latest_good_checkpoint(folder)
    if found is None:
        raise AlfaError(
            f"run directory '{run_dir}' has no checkpoint yet; "
            f"train it further with 'alfa train --resume {run_dir}'"
        )
    path, state = found
    return config, state, path


def load_run(
    run_dir: Path,
    *,
    checkpoint: str = "best",
    config: Config | None = None,
    splits: tuple[str, ...] = ("test",),
) -> tuple[Config, MetaLearner, TaskSource, dict[str, Any]]:
    """Config, meta-learner (weights loaded), task source and checkpoint state of a run.

    The source reads only ``splits`` (the test classes by default: no training data is
    needed), with the class lists kept in the run (:mod:`alfa.runs.class_lists`), so a run
    that was moved works from any folder.

    Args:
        checkpoint: ``"best"`` (by validation; the last one when there is none), ``"last"``,
            or a checkpoint file (see :func:`read_run_checkpoint`).
        config: the run's config with evaluation overrides (default: its ``config.yaml``).
        splits: the splits the task source reads (``val`` and/or ``test``).

    Returns:
        The state holds, besides the checkpoint's content, ``"path"``: the file it was read
        from (``best.pt``, or the newest periodic checkpoint).

    Raises:
        AlfaError: the folder is not a run directory or holds no checkpoint yet.
        CheckpointError: the chosen checkpoint (or every periodic one) is damaged, or its weights
            are not finite; the message names the file.
    """
    saved, state, path = read_run_checkpoint(Path(run_dir), checkpoint)
    config = saved if config is None else config
    lists = still_valid(saved, config, read_run_class_lists(Path(run_dir)))
    source = build_source(config, splits=splits, class_lists=lists)
    learner = build_learner(config, task=source.task, in_channels=source.in_channels)
    load_learner_state(learner, state, path)
    check_weights_finite(learner, path)
    learner.to(configure_runtime(config))
    learner.eval()
    return config, learner, source, {**state, "path": str(path)}


def load_ensemble(run_dir: Path, k: int, config: Config, source: TaskSource) -> list[MetaLearner]:
    """The ``k`` best checkpoints of a run by validation (``train.keep_best`` >= k), as learners.

    A run trained with ``train.keep_best: 1`` keeps its best checkpoint as ``best.pt`` only; it
    counts as its one top checkpoint.

    Raises:
        AlfaError: the run kept fewer than ``k`` top checkpoints (the message says how many,
            and which).
        CheckpointError: a top checkpoint is damaged or holds no finite validation score.
    """
    folder = Path(run_dir) / "checkpoints"
    ranked = []
    for iteration, path in sorted(list_top(folder).items()):
        state = load_checkpoint(path)
        score = state.get("score")
        number = isinstance(score, int | float) and not isinstance(score, bool)
        if not number or not math.isfinite(score):
            raise CheckpointError(
                f"top-k checkpoint '{path}' holds no finite validation score (it was not written "
                "by a validation of this run); move it out of the folder"
            )
        ranked.append((float(score), iteration, path, state))
    best = folder / "best.pt"
    if not ranked and best.is_file():  # keep_best 1: the best checkpoint is the only top one
        state = load_checkpoint(best)
        score = state.get("best")
        ranked.append((float(score) if score is not None else 0.0, 0, best, state))
    ranked.sort(key=lambda e: e[0], reverse=source.metric != "mse")
    if len(ranked) < k:
        kept = ", ".join(entry[2].name for entry in ranked) or "none"
        raise AlfaError(
            f"--ensemble {k} needs {k} top checkpoints by validation but '{folder}' holds "
            f"{len(ranked)} ({kept}; the run kept train.keep_best={config.train.keep_best}); "
            f"train with train.keep_best={k} (or more)"
        )
    device = resolve_device(config.train.device)
    learners = []
    for _, _, path, state in ranked[:k]:
        learner = build_learner(config, task=source.task, in_channels=source.in_channels)
        load_learner_state(learner, state, path)
        check_weights_finite(learner, path)
        learners.append(learner.to(device).eval())
    return learners
