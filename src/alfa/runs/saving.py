"""Saving and loading learners from Python: ``alfa.save``, ``alfa.load``, ``alfa.export`` and
``alfa.pretrained``.

Two kinds of file, both `safetensors <https://huggingface.co/docs/safetensors>`_ (tensors and
text metadata, nothing that runs code when read), both checked by a SHA-256:

* :func:`export` writes the file ``alfa export`` writes (:mod:`alfa.runs.export`): the
  meta-learned tensors with the config that rebuilds the learner and the preprocessing of its
  images, so ``alfa eval``, ``alfa adapt`` and :func:`load` take it. It needs a
  :class:`~alfa.config.Config` that describes the learner (its backbone one of
  :mod:`alfa.models`, its rule and steps): the learner's tensors must be those that config
  builds.
* :func:`save` writes the tensors of any learner, your own ``nn.Module`` included, with what
  it is (rule, steps, task) but no config: :func:`load` puts them back into a learner of the
  same architecture (``into=``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from alfa.config import Config
from alfa.engine.meta_learner import MetaLearner
from alfa.errors import AlfaError, ArgumentError
from alfa.runs.build import build_learner_for
from alfa.runs.checkpoint import CheckpointError, atomic_write_bytes
from alfa.runs.class_lists import config_class_lists
from alfa.runs.export import FORMAT, _digest, _split, read_export, write_export
from alfa.runs.preprocessing import Preprocessing
from alfa.runs.pretrained import pretrained_path
from alfa.runs.trained import open_trained
from alfa.version import package_version

__all__ = ["WEIGHTS_FORMAT", "export", "load", "pretrained", "save"]

WEIGHTS_FORMAT = "alfa-weights"
"""The ``format`` metadata of a file written by :func:`save`."""


def _suffix(path: Path, what: str) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ArgumentError(f"{what} '{path}' must name a file ending in .safetensors")
    if path.is_dir():
        raise ArgumentError(f"{what} '{path}' is a directory; name the file to write")
    return path


def _tensors(learner: MetaLearner) -> dict[str, torch.Tensor]:
    if not isinstance(learner, MetaLearner):
        raise ArgumentError(f"expected an alfa.MetaLearner, got {type(learner).__name__}")
    return {k: v.detach().cpu().contiguous().clone() for k, v in learner.state_dict().items()}


def save(learner: MetaLearner, path: str | Path) -> Path:
    """Write the meta-learned tensors of ``learner`` (any base learner) to ``path``.

    The file also records the rule, the inner steps and the task; :func:`load` with
    ``into=`` a learner of the same architecture reads it back.

    Raises:
        ArgumentError: ``path`` does not end in ``.safetensors`` or ``learner`` is not a
            MetaLearner.
    """
    path = _suffix(Path(path), "path")
    tensors = _tensors(learner)
    metadata = {
        "format": WEIGHTS_FORMAT,
        "format_version": "1",
        "alfa_version": package_version(),
        "rule": type(learner.rule).__name__,
        "steps": str(learner.steps),
        "task": learner.task,
    }
    _, data = _split(safetensors.torch.save(tensors, metadata=metadata), path)
    metadata["sha256"] = _digest(data, metadata)
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))
    return path


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a :func:`save` or export file, verified."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    header, data = _split(raw, path)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, WEIGHTS_FORMAT):
        raise CheckpointError(
            f"'{path}' is a safetensors file but not one alfa wrote (alfa.save, alfa.export or "
            "alfa export)"
        )
    if meta.get("format") == FORMAT:
        exported = read_export(path)  # checks everything, config included
        return exported.learner.state_dict(), exported.metadata
    stored = meta.get("sha256")
    if _digest(data, {k: v for k, v in meta.items() if k != "sha256"}) != stored:
        raise CheckpointError(f"'{path}' is damaged: its SHA-256 does not match")
    return safetensors.torch.load(raw), dict(meta)


def load(path: str | Path, *, into: MetaLearner | None = None) -> MetaLearner:
    """A learner from a file or a run directory.

    Args:
        path: an export (:func:`export`, ``alfa export``), a run directory (its best checkpoint)
            or, with ``into``, a file written by :func:`save`.
        into: a learner of the same architecture to load the tensors into (returned); needed
            for a :func:`save` file, whose learner cannot be rebuilt without its code.

    Returns:
        Without ``into``: the learner rebuilt from the stored config, in eval mode, on the
        run's device (``train.device``; ``auto``: CUDA when present). Torch's thread count is
        left as it is.

    Raises:
        CheckpointError: the file is missing, damaged or not alfa's, or its tensors do not fit
            ``into`` (the first that differs named).
        AlfaError: a :func:`save` file without ``into``.
    """
    path = Path(path)
    if into is None:
        if path.is_file():
            with safetensors.safe_open(str(path), "pt") as handle:
                fmt = (handle.metadata() or {}).get("format")
            if fmt == WEIGHTS_FORMAT:
                raise AlfaError(
                    f"'{path}' holds the weights of a learner (alfa.save) but not how to build "
                    "it; build the same learner and pass it: alfa.load(path, into=learner)"
                )
        return _opened(path)
    if not isinstance(into, MetaLearner):
        raise ArgumentError(f"into must be an alfa.MetaLearner, got {type(into).__name__}")
    if path.is_dir():
        tensors = _opened(path).state_dict()
    else:
        tensors, _ = _read_tensors(path)
    _fit(into, tensors, path)
    into.load_state_dict(tensors)
    return into


def _opened(path: Path) -> MetaLearner:
    """The learner of a run or export, leaving torch's thread count as it was (``alfa eval``
    applies the run's ``train.threads``; a Python program keeps its own)."""
    threads = torch.get_num_threads()
    try:
        return open_trained(path).learner
    finally:
        torch.set_num_threads(threads)


def _fit(learner: MetaLearner, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse tensors that do not fit ``learner``, naming the first difference."""
    own = learner.state_dict()
    missing = [k for k in own if k not in tensors]
    extra = [k for k in tensors if k not in own]
    if missing or extra:
        which = f"lacks '{missing[0]}'" if missing else f"has '{extra[0]}' which the learner lacks"
        raise CheckpointError(f"'{path}' does not fit the learner: it {which}")
    for key, value in own.items():
        if value.shape != tensors[key].shape:
            raise CheckpointError(
                f"'{path}' does not fit the learner: '{key}' has shape "
                f"{tuple(tensors[key].shape)}, the learner's {tuple(value.shape)}"
            )


def export(
    learner: MetaLearner,
    path: str | Path,
    *,
    config: Config,
    preprocessing: Preprocessing | dict[str, Any] | None = None,
    iteration: int = 0,
) -> Path:
    """Write ``learner`` as the file ``alfa export`` writes, for ``alfa eval``, ``alfa adapt``
    and :func:`load`.

    Args:
        config: the config that builds this learner (``alfa.load_config(...)``): dataset,
            backbone, rule and steps; its class-list files are kept in the file where they
            can be read.
        preprocessing: how images are prepared for it (default: as ``config``'s dataset
            prepares them, :func:`~alfa.runs.preprocessing.preprocessing_for`); a
            :class:`~alfa.runs.preprocessing.Preprocessing` or its ``to_dict()``.
        iteration: the meta-iteration it was trained for (recorded).

    Raises:
        ArgumentError: ``path`` does not end in ``.safetensors``; ``learner``'s tensors are not
            those ``config`` builds (the first difference named); a bad preprocessing.
    """
    path = _suffix(Path(path), "path")
    tensors = _tensors(learner)
    reference = build_learner_for(config).state_dict()
    try:
        _fit(learner, reference, Path("the config"))
    except CheckpointError as exc:
        raise ArgumentError(
            f"the learner is not the one config describes ({str(exc).split(': ', 1)[1]}); "
            "export needs the config that builds it, or use alfa.save"
        ) from None
    if isinstance(preprocessing, dict):
        try:
            preprocessing = Preprocessing.from_dict(preprocessing)
        except AlfaError as exc:
            raise ArgumentError(f"preprocessing: {exc}") from exc
    del tensors
    write_export(
        path,
        config,
        learner,
        iteration=iteration,
        checkpoint="python",
        class_lists=config_class_lists(config, strict=False),
        preprocessing=preprocessing,
    )
    read_export(path)  # what alfa eval and alfa adapt will read, checked now
    return path


def pretrained(name: str) -> MetaLearner:
    """The shipped pretrained model ``name`` (``alfa models`` lists them), in eval mode.

    Raises:
        AlfaError: no such model (the message lists the available ones).
    """
    return load(pretrained_path(name))
