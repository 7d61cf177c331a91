"""A rough lower bound of the memory a run needs, to refuse before allocating what cannot fit.

The base learner is built on PyTorch's ``meta`` device (shapes only, no storage) to count its
parameters and the activations of one example. Training then holds, at least: the parameters
with their gradient and Adam's two moments; per task of the meta-batch, the adapted weights of
every inner step, the activations of the query set and (second order) of every step's support
set, kept for the meta-gradient; and the meta-batch's data. Evaluation (and validation) holds
two copies of the weights per task of an evaluation batch, one task's activations (no graph),
and for regression the fixed tasks, all drawn at once.
Everything is float32. The estimate leaves out much (the autograd graph's other buffers, the
optimiser's workspace, the data set itself), so a run refused by it could never fit, and a run it
accepts may still not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from alfa.config import Config
from alfa.errors import ConfigError
from alfa.limits import available_memory

__all__ = ["check_memory", "estimate", "host_memory"]

FLOAT = 4  # bytes


def host_memory() -> int | None:
    """The memory this process can use, in bytes: the machine's physical memory, or less where
    the address-space limit (``ulimit -v``), the cgroup's limit or the memory other processes
    hold leave less (:func:`alfa.limits.available_memory`); None where none can be read."""
    try:
        physical: int | None = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        physical = None
    found = [m for m in (physical, available_memory()) if m is not None]
    return min(found) if found else None


def device_memory(device: torch.device) -> int | None:
    """Memory of ``device`` in bytes: the GPU's for CUDA, else the machine's."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory)
    return host_memory()


@dataclass(frozen=True)
class _Model:
    parameters: int
    activations: int  # floats per example, summed over the layers
    inputs: int  # floats per example


def _model(config: Config) -> _Model:
    """Parameter and per-example activation counts of the base learner, built on ``meta``."""
    from alfa.models import build_model

    d = config.data
    channels = 1 if d.name in ("sinusoid", "omniglot", "folder") else 3  # a lower bound
    with torch.device("meta"):
        model = build_model(config, in_channels=channels)
        if d.name == "sinusoid":
            x = torch.empty(2, 1)
        else:
            x = torch.empty(2, channels, d.image_size, d.image_size)
    parameters = sum(p.numel() for p in model.parameters())
    counted = [0]

    def hook(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            counted[0] += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(x)
        activations = counted[0] // 2
    except Exception:  # a layer without a meta kernel: count the parameters only
        activations = 0
    finally:
        for h in handles:
            h.remove()
    return _Model(parameters, activations, x[0].numel())


def _examples(config: Config, *, evaluation: bool) -> tuple[int, int]:
    """Support and query examples per task."""
    d = config.data
    if d.name == "sinusoid":
        return d.shots, (d.eval_query if evaluation else d.query or d.shots)
    query = (d.test_query or d.query) if evaluation else d.query
    return d.ways * d.shots, d.ways * query


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def estimate(
    config: Config, *, tasks: int | None = None, batch: int | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """A lower bound of a run's memory, as ``(device parts, host parts)`` in bytes.

    Each part is keyed by what to lower to shrink it. With ``tasks`` (and ``batch``, default
    ``eval.batch``) the evaluation of ``tasks`` test tasks is estimated, else training (with its
    validations).
    """
    m = _model(config)
    d, meta, t = config.data, config.meta, config.train
    device: dict[str, int] = {}
    host: dict[str, int] = {}
    if config.model.name == "mlp":
        model_key = f"model.hidden={list(config.model.hidden)} ({m.parameters:.3g} parameters)"
    elif config.model.name == "conv4":
        model_key = f"model.filters={config.model.filters} ({m.parameters:.3g} parameters)"
    else:
        model_key = f"model.name={config.model.name} ({m.parameters:.3g} parameters)"
    eval_batch = batch or config.eval.batch
    support, query = _examples(config, evaluation=True)
    # without a graph: two copies of the weights per task, one task's activations at a time
    adapted = 2 * m.parameters + m.inputs * (support + query)
    evaluation = m.activations * max(support, query)
    if tasks is None:
        device[model_key] = 4 * m.parameters * FLOAT  # weights, gradients, Adam's two moments
        s, q = _examples(config, evaluation=False)
        # kept for the meta-gradient: every step's weights (and, second order, activations)
        # (with train.recompute, one step's activations at a time)
        kept = 0 if meta.first_order else s * (1 if t.recompute else meta.steps)
        per_task = (meta.steps + 1) * m.parameters + m.activations * (kept + q) + m.inputs * (s + q)
        train = meta.batch_size * per_task * FLOAT
        validate = (min(eval_batch, t.val_tasks) * adapted + evaluation) * FLOAT
        if not t.val_every or train >= validate:  # validation runs after the graph is freed
            device[f"meta.batch_size={meta.batch_size}"] = train
        else:
            device[f"eval.batch={eval_batch}"] = validate
        if t.val_every and d.name == "sinusoid":  # the fixed validation tasks, drawn at once
            host[f"train.val_tasks={t.val_tasks}"] = t.val_tasks * 2 * (support + query) * FLOAT
    else:
        device[model_key] = m.parameters * FLOAT
        device[f"eval.batch={eval_batch}"] = (min(eval_batch, tasks) * adapted + evaluation) * FLOAT
        if d.name == "sinusoid":  # the fixed test tasks, drawn at once
            host[f"--tasks {tasks}"] = tasks * 2 * (support + query) * FLOAT
    return device, host


def check_memory(
    config: Config,
    device: torch.device,
    *,
    tasks: int | None = None,
    batch: int | None = None,
) -> None:
    """Refuse a run (or, with ``tasks``, an evaluation) whose estimated memory cannot fit.

    Raises:
        ConfigError: with the estimate, the memory available and what to lower.
    """
    on_device, on_host = estimate(config, tasks=tasks, batch=batch)
    if device.type != "cuda":
        on_host = {**on_device, **on_host}
        on_device = {}
    what = "training" if tasks is None else "evaluation"
    for parts, limit, where in (
        (on_device, device_memory(device) if on_device else None, f"the {device.type} device"),
        (on_host, host_memory(), "this machine"),
    ):
        total = sum(parts.values())
        if limit is None or total <= limit:
            continue
        culprit = max(parts, key=lambda key: parts[key])
        model = next((key for key in parts if key.startswith("model.")), None)
        if model is not None and parts[model] > limit:  # nothing else can make it fit
            culprit = model
        knob = culprit.split("=")[0].split(" ")[0]
        advice = "a smaller model" if knob.startswith("model.") else f"a smaller {knob}"
        if tasks is None and not config.train.recompute and not config.meta.first_order:
            advice += " or train.recompute=true"
        raise ConfigError(
            f"{what} needs an estimated {_size(total)} of memory at least, more than the "
            f"{_size(limit)} of {where} ({culprit}: {_size(parts[culprit])}); use {advice}"
        )
