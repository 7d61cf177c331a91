"""``alfa export``: a trained model as one portable safetensors file.

The file is a plain `safetensors <https://huggingface.co/docs/safetensors>`_ file: a JSON header
and raw tensor bytes, nothing that runs code when read. Its tensors are the meta-learner's
``state_dict``: ``model.*`` is the meta-learned initialisation theta of the base learner (with the
batch-norm affine parameters and any buffers), ``rule.*`` the meta-learned update rule (ALFA's
generator g_phi of Eq. (5) and the initial alpha0/beta0, L2F's attenuation network, or learned
fixed hyperparameters; empty for MAML's fixed rule). The header's metadata (string values) holds
everything needed to rebuild the learner without the training data:

``format``        ``alfa-export``
``format_version`` ``1``
``alfa_version``  the version that wrote it
``config``        the run's resolved config as JSON (backbone, ways, image size, rule, steps ...)
``task``          ``classification`` or ``regression``
``in_channels``   input channels of the base learner
``preprocessing`` how images are prepared (JSON, see :mod:`alfa.runs.preprocessing`; ``null`` for
                  regression)
``iteration``     the meta-iteration of the checkpoint it came from
``checkpoint``    that checkpoint's file name
``sha256``        SHA-256 of the tensor bytes followed by the other metadata as sorted JSON, so
                  a damaged or edited file is refused by name
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import safetensors.torch

from alfa.config import Config, config_from_dict, config_to_dict
from alfa.engine.meta_learner import MetaLearner
from alfa.errors import AlfaError
from alfa.runs.build import build_learner_for, configure_runtime
from alfa.runs.checkpoint import CheckpointError, atomic_write_bytes
from alfa.runs.preprocessing import Preprocessing, input_channels, preprocessing_for, task_of
from alfa.runs.reopen import check_weights_finite, load_learner_state, read_run_checkpoint
from alfa.version import package_version

__all__ = ["FORMAT", "Exported", "export_run", "read_export", "write_export"]

FORMAT = "alfa-export"
FORMAT_VERSION = 1
_REQUIRED = ("format_version", "config", "task", "in_channels", "iteration", "sha256")


@dataclass
class Exported:
    """A model read from an export file: config, learner (weights loaded, eval mode) and more."""

    path: Path
    config: Config
    learner: MetaLearner
    preprocessing: Preprocessing | None
    iteration: int
    metadata: dict[str, str]


def _digest(data: bytes, metadata: dict[str, str]) -> str:
    h = hashlib.sha256(data)
    h.update(json.dumps(metadata, sort_keys=True).encode())
    return h.hexdigest()


def _split(raw: bytes, path: Path) -> tuple[dict[str, Any], bytes]:
    """A safetensors file's header (parsed) and its tensor bytes, or a one-line error."""
    size = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
    if size < 2 or 8 + size > len(raw):
        raise CheckpointError(
            f"'{path}' is not a safetensors file (or is truncated); export a run with "
            "'alfa export RUN --to FILE.safetensors'"
        )
    try:
        header = json.loads(raw[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{path}' has a damaged safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"'{path}' has a damaged safetensors header (not an object)")
    return header, raw[8 + size :]


def write_export(
    path: Path, config: Config, learner: MetaLearner, *, iteration: int, checkpoint: str
) -> None:
    """Write ``learner``'s meta-learned tensors and ``config`` to ``path`` (atomically)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in learner.state_dict().items()}
    prep = preprocessing_for(config)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "alfa_version": package_version(),
        "config": json.dumps(config_to_dict(config), sort_keys=True),
        "task": task_of(config),
        "in_channels": str(input_channels(config)),
        "preprocessing": json.dumps(prep.to_dict() if prep else None, sort_keys=True),
        "iteration": str(iteration),
        "checkpoint": checkpoint,
    }
    _, data = _split(safetensors.torch.save(tensors, metadata=metadata), path)
    metadata["sha256"] = _digest(data, metadata)
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))


def export_run(run_dir: Path, to: Path, *, checkpoint: str = "best") -> Exported:
    """Export a run's checkpoint (``best``, ``last`` or a checkpoint file) to ``to``.

    Raises:
        AlfaError: not a run, no checkpoint, ``to`` not a ``.safetensors`` file path.
        CheckpointError: the checkpoint is damaged, does not fit the config, or is not finite.
    """
    to = Path(to)
    if to.suffix != ".safetensors":
        raise AlfaError(f"--to '{to}' must name a file ending in .safetensors")
    if to.is_dir():
        raise AlfaError(f"--to '{to}' is a directory; name the file to write")
    config, state, source = read_run_checkpoint(Path(run_dir), checkpoint)
    learner = build_learner_for(config)
    load_learner_state(learner, state, source)
    check_weights_finite(learner, source)
    iteration = state.get("iteration")
    iteration = iteration if isinstance(iteration, int) else 0
    write_export(to, config, learner, iteration=iteration, checkpoint=source.name)
    return read_export(to)


def read_export(path: Path, *, norm: str | None = None) -> Exported:
    """Read and verify an export; rebuild its learner from the stored config alone.

    Args:
        norm: Use this batch-norm mode (``transductive`` or ``support``) instead of the one the
            model was trained with (``alfa adapt``).

    Raises:
        CheckpointError: the file is missing, not safetensors, not an alfa export, damaged
            (checksum), from a newer format, or its tensors do not fit its config; one line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    header, data = _split(raw, path)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is a safetensors file but not an alfa export (no '{FORMAT}' metadata); "
            "export a run with 'alfa export RUN --to FILE.safetensors'"
        )
    missing = [key for key in _REQUIRED if not isinstance(meta.get(key), str)]
    if missing:
        raise CheckpointError(f"alfa export '{path}' lacks metadata '{missing[0]}' (damaged)")
    stored = meta["sha256"]
    if _digest(data, {k: v for k, v in meta.items() if k != "sha256"}) != stored:
        raise CheckpointError(
            f"alfa export '{path}' is damaged: its SHA-256 does not match (re-export or "
            "download it again)"
        )
    if meta["format_version"] != str(FORMAT_VERSION):
        raise CheckpointError(
            f"alfa export '{path}' has format version {meta['format_version']}; this alfa "
            f"reads version {FORMAT_VERSION} (upgrade alfa)"
        )
    try:
        tensors = safetensors.torch.load(raw)
        config = config_from_dict(json.loads(meta["config"]))
        prep_data = json.loads(meta.get("preprocessing", "null"))
        prep = None if prep_data is None else Preprocessing.from_dict(prep_data)
        iteration = int(meta["iteration"])
    except (AlfaError, ValueError, TypeError, safetensors.SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"alfa export '{path}' is damaged: {first}") from exc
    if norm is not None and config.model.norm != norm:
        config = replace(config, model=replace(config.model, norm=norm))
    learner = build_learner_for(config)
    try:
        learner.load_state_dict(tensors)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"alfa export '{path}': its tensors do not fit its config: {first}"
        ) from exc
    check_weights_finite(learner, path)
    learner.to(configure_runtime(config))
    learner.eval()
    return Exported(path, config, learner, prep, iteration, dict(meta))
