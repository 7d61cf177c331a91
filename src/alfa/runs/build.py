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

__all__ = [
    "build_learner",
    "build_learner_for",
    "build_model_and_rule",
    "build_optimizer",
    "configure_runtime",
    "default_threads",
    "resolve_device",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a clear error."""
    from alfa.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'train.device' is cuda but no CUDA device is available")
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

        learner.head_init = HeadInit(model, config.meta.head_init)
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
    """Adam over every meta-parameter that requires a gradient (reference A.3), in its
    multi-tensor form (a few kernels for all parameters instead of several per parameter)."""
    params = [p for p in learner.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=config.meta.lr, foreach=True)


def configure_runtime(config: Config) -> torch.device:
    """The run's device, with its thread count and TF32 setting applied (``train.*``).

    Threads: ``train.threads``, or when 0 the automatic choice of :func:`default_threads`.
    TF32 (CUDA only) is on exactly when ``train.tf32`` is, for matrix products and cuDNN
    convolutions alike (PyTorch's own default enables it for convolutions only).
    """
    device = resolve_device(config.train.device)
    torch.set_num_threads(config.train.threads or default_threads(config, device))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = config.train.tf32
        torch.backends.cudnn.allow_tf32 = config.train.tf32
    return device
