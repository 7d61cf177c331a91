"""Turn a :class:`~alfa.config.Config` into a meta-learner and its outer optimiser."""

from __future__ import annotations

import os

import torch
from torch import nn

from alfa.config import Config
from alfa.engine.functional import FunctionalModel
from alfa.engine.meta_learner import MetaLearner
from alfa.models import build_model
from alfa.rules import UpdateRule, build_rule, rule_options
from alfa.runs.distributed import check_gpu_per_process
from alfa.runs.outer_optimizer import adam

__all__ = [
    "build_learner",
    "build_learner_for",
    "build_model_and_rule",
    "build_optimizer",
    "configure_runtime",
    "cuda_settings",
    "default_threads",
    "resolve_device",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a clear error, and so is a
    ``torchrun`` job with more processes on this machine than it has GPUs
    (:func:`alfa.runs.distributed.check_gpu_per_process`)."""
    from alfa.errors import ConfigError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'train.device' is cuda but no CUDA device is available")
    if name == "cuda":
        check_gpu_per_process()
    return torch.device(name)


def default_threads(config: Config, device: torch.device) -> int:
    """CPU threads when ``train.threads`` is 0 (docs/engine.md, "Threads").

    One for the MLP, whose kernels last microseconds (more threads only add synchronisation).
    For convolutional networks, the cores that are idle when the run starts (the cores less
    the one-minute load average, at least one): a second thread helps on an idle machine and
    makes every kernel wait when another process holds the second core.
    """
    if device.type != "cpu":
        return torch.get_num_threads()
    if config.model.name == "mlp":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may run on
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # pragma: no cover - no load average on this system
        busy = 0
    return max(1, cores - busy)


def build_model_and_rule(config: Config, *, in_channels: int) -> tuple[nn.Module, UpdateRule]:
    """The base learner and the update rule for its adapted tensors (drawn from the global
    generator, on the current default device)."""
    model = build_model(config, in_channels=in_channels)
    functional = FunctionalModel(model)
    shapes = [p.shape for p in functional.initial().values()]
    rule = build_rule(config.rule, functional.names, shapes, config.meta.steps)
    return model, rule


def build_learner(config: Config, *, task: str, in_channels: int) -> MetaLearner:
    """Model and rule, initialised from ``config.seed`` (the same seed gives the same learner).

    The config's rule goes through the same construction as the Python API's
    ``MetaLearner(model, rule=name, steps=S, **options)``.
    """
    torch.manual_seed(config.seed)
    model = build_model(config, in_channels=in_channels)
    learner = MetaLearner(
        model,
        config.rule.name,
        task=task,  # type: ignore[arg-type]
        steps=config.meta.steps,
        first_order=config.meta.first_order,
        multi_step_loss=config.meta.multi_step_loss,
        multi_step_epochs=config.meta.multi_step_epochs,
        epoch_iterations=config.meta.epoch_iterations,
        learn_init=config.meta.init == "learned",
        engine=config.train.engine,
        group=config.train.task_group or "auto",
        recompute=config.train.recompute,
        **rule_options(config.rule),
    )
    if config.meta.head_init != "learned" or config.data.name == "metadataset":  # Proto-MAML
        from alfa.engine.proto_head import HeadInit

        # N-way episodes of one dataset: the ways are known, no per-batch read of the labels
        ways = None if config.data.name == "metadataset" else config.data.ways
        learner.head_init = HeadInit(model, config.meta.head_init, ways=ways)
    return learner


def build_learner_for(config: Config) -> MetaLearner:
    """:func:`build_learner` with the task and input channels the config implies (sinusoid:
    regression on one input; Omniglot: grey images; other datasets: RGB), without reading data.

    The config may come from a file of elsewhere (an export, a run's ``config.yaml``), so the
    memory its model needs is estimated first (on PyTorch's ``meta`` device, nothing allocated)
    and a model that cannot fit is refused before it is built.

    Raises:
        ConfigError: the model cannot fit in memory (with the estimate and what to lower).
    """
    from alfa.runs.memory import check_memory
    from alfa.runs.preprocessing import input_channels, task_of

    check_memory(config, torch.device("cpu"), tasks=1, batch=1)
    return build_learner(config, task=task_of(config), in_channels=input_channels(config))


def build_optimizer(config: Config, learner: MetaLearner) -> torch.optim.Optimizer:
    """Adam over every meta-parameter that requires a gradient (reference A.3), for the device
    the learner is on (:func:`alfa.runs.outer_optimizer.adam`): fused on CUDA unless the step
    is compiled, else multi-tensor (a few kernels for all parameters instead of several per
    parameter). Build it after moving the learner to its device."""
    params = [p for p in learner.parameters() if p.requires_grad]
    compiled = config.train.compile or config.train.cuda_graph
    return adam(params, config.meta.lr, compiled=compiled)


def configure_runtime(config: Config) -> torch.device:
    """The run's device, with its thread count and TF32 setting applied (``train.*``).

    Threads: ``train.threads``, or when 0 the automatic choice of :func:`default_threads`.
    TF32 (CUDA only) is on exactly when ``train.tf32`` is, for matrix products and cuDNN
    convolutions alike (PyTorch's own default enables it for convolutions only).
    """
    device = resolve_device(config.train.device)
    torch.set_num_threads(config.train.threads or default_threads(config, device))
    if device.type == "cuda":
        cuda_settings(tf32=config.train.tf32, fixed_shapes=config.data.name != "metadataset")
    return device


def cuda_settings(*, tf32: bool, fixed_shapes: bool) -> None:
    """The CUDA backend flags of a run (``benchmarks/speed.py`` sets the same ones, so that it
    measures what training runs).

    * TF32 on exactly when ``tf32`` is, for matrix products and cuDNN convolutions alike
      (PyTorch's own default enables it for convolutions only);
    * cuDNN's autotuner (``cudnn.benchmark``) when the shapes are fixed (N-way K-shot
      episodes, a fixed meta-batch): each convolution shape is timed once, at its first call,
      and its fastest algorithm kept. Meta-Dataset's episodes change shape every time, which
      would re-time every call, so it stays off there. The algorithm chosen may differ between
      processes, which changes float32 results in the last bits (a resumed run on a GPU
      matches an uninterrupted one to rounding, not bit for bit).
    """
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = fixed_shapes
