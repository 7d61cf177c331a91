"""How a training meta-iteration executes: compiled or eager, precision, memory layout.

:func:`meta_step` wraps a :class:`~alfa.engine.meta_learner.MetaLearner`'s forward pass (inner loop
and outer loss, Eqs. 2 and 6) for the training loop; the numbers it computes are those of the eager
forward (up to floating-point reassociation, and bf16 rounding when asked for). Options
(``train.*`` keys):

* ``compile``: ``torch.compile`` the whole meta-iteration (and the outer optimiser's step,
  :func:`optimizer_step`). The fast path (:mod:`alfa.engine.fast`) writes the inner gradients as
  ordinary operations, so even a second-order meta-iteration is one graph that compiles without
  a break and is differentiated once by the compiled backward; the generic autograd path needs
  double backward, which ``torch.compile`` cannot differentiate, so compiling requires the fast
  path. Compiling takes tens of seconds once per run (its cost and
  the speed-up are measured by ``benchmarks/speed.py --compile``); evaluation stays eager.
* ``kernels``: how the fast path's fused 4-CONV blocks run (:mod:`alfa.engine.fast.fused`):
  ``auto`` (compiled kernels for large activations on the CPU), ``compiled``, ``eager``, or
  ``unfused`` (the separate layers).
* ``reuse_memory`` (CPU): :func:`reuse_host_memory`.
* ``cuda_graph`` (CUDA only): compile with ``mode="reduce-overhead"``, which replays the forward
  and backward as CUDA graphs: one launch per graph instead of one per kernel.
* ``channels_last``: convolution inputs in channels-last (NHWC) memory layout, usually the faster
  layout for cuDNN on tensor-core GPUs (fast path only).
* ``autocast`` (CUDA only): ``"bf16"`` runs matrix products and convolutions in bfloat16 under
  ``torch.autocast`` while the meta-parameters and the inner-loop weights stay float32. The fast
  path's convolution backward follows autocast's dtype (:mod:`alfa.engine.fast.layers`), and
  the update rule's arithmetic stays float32 (:meth:`alfa.rules.base.UpdateRule.update`), in
  eager and compiled mode alike.

Compiling the optimiser step on CUDA makes ``torch.compile`` set Adam's ``capturable=True``;
checkpoints keep the flag, and :func:`alfa.runs.outer_optimizer.load_optimizer_state` gives a
resumed run its own flags back (a CPU resume would otherwise fail at its first step).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable

import torch

from alfa.config import TrainConfig
from alfa.engine.fast import FastModel
from alfa.engine.meta_learner import MetaLearner, MetaOutput
from alfa.errors import ConfigError
from alfa.typing import TaskBatch

__all__ = ["check_execution", "meta_step", "optimizer_step", "reuse_host_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


@functools.cache
def reuse_host_memory() -> bool:
    """Keep the memory of freed tensors in the process for the next ones (``train.reuse_memory``).

    glibc's ``malloc`` gives every block above 32 MB its own fresh mapping and returns it to the
    system when it is freed, so each new activation of that size is zeroed and mapped page by
    page by the kernel on first touch: on the project's CPU a fresh 64 MB tensor filled at
    2-4 GB/s against 11-25 GB/s for reused memory (``benchmarks/floor.py`` prints both). A
    4-CONV meta-iteration allocates gigabytes of such tensors. This turns those mappings off
    (``M_MMAP_MAX = 0``) and never trims the heap (``M_TRIM_THRESHOLD``), so freed blocks are
    reused; the process keeps its peak memory until it exits (what a training run reaches
    again at every iteration anyway). Linux with glibc only; returns
    whether it applied (once per process).
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # A trim threshold of -1 turns trimming off (mallopt(3)).
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))


MetaStep = Callable[[TaskBatch, int], MetaOutput]


def check_execution(train: TrainConfig, learner: MetaLearner, device: torch.device) -> None:
    """Refuse option combinations that cannot run, naming the key (before anything is written)."""
    fast = learner.engine == "fast"
    if (train.compile or train.cuda_graph) and not fast:
        key = "train.cuda_graph" if train.cuda_graph else "train.compile"
        raise ConfigError(
            f"{key}: the base learner {type(learner.model).__name__} is not on the fast path "
            "(alfa.engine.fast), and the generic path's double backward cannot be compiled"
        )
    if (train.compile or train.cuda_graph) and learner.multi_step_loss == "annealed":
        key = "train.cuda_graph" if train.cuda_graph else "train.compile"
        raise ConfigError(
            f"{key}: meta.multi_step_loss 'annealed' changes the outer loss every epoch and "
            "would recompile the meta-iteration; use true or false, or leave compiling off"
        )
    if train.cuda_graph and device.type != "cuda":
        raise ConfigError(f"train.cuda_graph: needs a CUDA device, the run uses {device.type}")
    if train.autocast != "none" and device.type != "cuda":
        raise ConfigError(
            f"train.autocast: {train.autocast} needs a CUDA device, the run uses {device.type} "
            "(bfloat16 convolutions are not available on every processor)"
        )
    if train.channels_last and not fast:
        raise ConfigError(
            f"train.channels_last: the base learner {type(learner.model).__name__} is not on "
            "the fast path (alfa.engine.fast)"
        )


def meta_step(learner: MetaLearner, train: TrainConfig, device: torch.device) -> MetaStep:
    """The training forward ``(batch, iteration) -> MetaOutput`` that ``train.*`` asks for.

    Raises:
        ConfigError: an option this learner or device cannot run (see :func:`check_execution`).
    """
    check_execution(train, learner, device)
    if train.channels_last:
        learner.functional.channels_last = True  # type: ignore[attr-defined]
    if isinstance(learner.functional, FastModel):
        learner.functional.program.kernels.mode = train.kernels
    if train.reuse_memory and device.type == "cpu":
        reuse_host_memory()
    precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    if train.autocast == "bf16":

        def precision() -> contextlib.AbstractContextManager:
            return torch.autocast(device.type, dtype=torch.bfloat16)

    def forward(batch: TaskBatch, iteration: int = 1) -> MetaOutput:
        # The training loop's own samplers draw valid batches: no per-batch host read of labels.
        with precision():
            return learner(batch, iteration=iteration, validate=False)

    if not (train.compile or train.cuda_graph):
        return forward
    mode = "reduce-overhead" if train.cuda_graph else "default"

    def graph(batch: TaskBatch) -> MetaOutput:
        return forward(batch)  # no iteration: the annealed weights are refused above

    # The meta-batch's shapes never change during training: one specialised graph.
    compiled = torch.compile(graph, mode=mode, dynamic=False)

    def run(batch: TaskBatch, iteration: int = 1) -> MetaOutput:
        if train.cuda_graph:
            # A new iteration: the previous replay's outputs (read by then) may be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
        return compiled(batch)

    return run


def optimizer_step(optimizer: torch.optim.Optimizer, train: TrainConfig) -> Callable[[], None]:
    """The outer update ``optimizer.step()``, compiled with ``train.compile`` (or
    ``train.cuda_graph``): the same Adam update, its per-parameter arithmetic fused."""
    if not (train.compile or train.cuda_graph):
        return optimizer.step  # type: ignore[return-value]
    return torch.compile(optimizer.step, dynamic=False)  # type: ignore[return-value]
