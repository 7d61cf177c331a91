"""The outer (meta) optimiser: Adam in the fastest form the device offers, and its state put back
whatever form wrote it.

Adam's numbers are the same in every form; what differs is how a step runs:

* ``foreach`` (the CPU, and a compiled step): a few multi-tensor kernels for all parameters;
* ``fused`` (CUDA, step not compiled): one fused kernel for all parameters, instead of a dozen
  launches per step;
* ``capturable``: set by ``torch.compile`` on the optimiser step of a CUDA run
  (``train.compile``), so the step can run inside a graph; it keeps Adam's step counters on the
  GPU and asserts that they are there.

These flags are saved with the optimiser's state, and ``Optimizer.load_state_dict`` takes them
from the checkpoint: a compiled CUDA run resumed on the CPU would get ``capturable=True`` and
fail at its first step, a fused one resumed on the CPU would ask for a kernel it may not have.
:func:`load_optimizer_state` therefore keeps the flags of the optimiser being resumed (the one
built for this run's device and options) and takes only the numbers from the checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["EXECUTION_FLAGS", "adam", "load_optimizer_state"]

EXECUTION_FLAGS = ("foreach", "fused", "capturable", "differentiable")
"""Parameter-group keys that say how a step runs, not what it computes."""


def adam(params: Iterable[torch.nn.Parameter], lr: float, *, compiled: bool) -> torch.optim.Adam:
    """Adam over ``params``: fused on CUDA unless the step is compiled (``compiled``: the
    compiled multi-tensor form is one generated kernel already, and ``torch.compile`` does not
    take the fused one), multi-tensor (``foreach``) otherwise."""
    params = list(params)
    on_cuda = bool(params) and all(p.device.type == "cuda" for p in params)
    if on_cuda and not compiled:
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr, foreach=True)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping ``optimizer``'s own execution flags
    (:data:`EXECUTION_FLAGS`): the checkpoint gives the moments, step counts and
    hyperparameters, this run's device and options say how the steps run.

    Raises:
        ValueError, KeyError, TypeError: ``state`` does not fit ``optimizer`` (as
            ``load_state_dict`` raises them).
    """
    state = dict(state)
    saved = copy.copy(state["param_groups"])
    if len(saved) != len(optimizer.param_groups):
        raise ValueError(
            f"the saved optimiser has {len(saved)} parameter groups, this one "
            f"{len(optimizer.param_groups)}"
        )
    groups = []
    for old, own in zip(saved, optimizer.param_groups, strict=True):
        group = dict(old)
        for key in EXECUTION_FLAGS:
            if key in own:
                group[key] = own[key]
        groups.append(group)
    state["param_groups"] = groups
    optimizer.load_state_dict(state)
