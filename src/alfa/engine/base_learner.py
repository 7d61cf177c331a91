"""A user's ``nn.Module`` as a base learner that runs once per task (the paper's f_theta).

The inner loop (Eq. 4) runs the base learner on every task of a meta-batch with that task's own
adapted weights, under ``torch.func.vmap``. A module must therefore not share state between
tasks. :func:`prepare_base_learner` makes the standard layers that do so safe, in place, before
anything is built:

* ``nn.BatchNorm2d`` becomes :class:`~alfa.models.batchnorm.MetaBatchNorm2d` (the same
  ``weight`` and ``bias`` parameters, no running statistics): every task is normalised with its
  own batch statistics, support and query alike (the official code's transductive mode), and
  the layer stays known to the closed-form fast path (:mod:`alfa.engine.fast`);
* every other batch or instance normalisation layer (``BatchNorm1d``, ``BatchNorm3d``,
  ``InstanceNorm*`` with ``track_running_stats``) drops its running statistics, as
  ``torch.func.replace_all_batch_norm_modules_`` does: it normalises with per-task batch
  statistics in ``train()`` and ``eval()`` mode alike;
* random layers (``nn.Dropout`` and friends) need nothing: the base learner runs under
  ``vmap(randomness="different")``, so each task draws its own mask (``eval()`` turns them off).

What cannot run per task is refused with one :class:`~alfa.errors.ModelError` naming the module:
lazy modules with uninitialised parameters when the learner is built, and, on the first forward
pass (before any meta-update), a module whose forward fails under ``vmap``: Python control flow
on a tensor's value (``if x.sum() > 0``, ``.item()``) or an in-place update of a buffer shared
by all tasks. :func:`failing_module` finds that module by re-running the forward pass with hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.lazy import LazyModuleMixin

from alfa.errors import ModelError
from alfa.models.batchnorm import MetaBatchNorm2d

__all__ = ["failing_module", "model_error", "prepare_base_learner"]


def _label(name: str, module: nn.Module) -> str:
    return f"module '{name or '<root>'}' ({type(module).__name__})"


def _to_meta_batch_norm(module: nn.BatchNorm2d) -> MetaBatchNorm2d:
    """The same layer without running statistics, sharing the affine parameters."""
    new = MetaBatchNorm2d(module.num_features, affine=module.affine, eps=module.eps)
    if module.affine:
        new.weight = module.weight
        new.bias = module.bias
    new.train(module.training)
    return new


def prepare_base_learner(model: nn.Module) -> list[str]:
    """Make ``model`` safe to run once per task, in place; the names of the layers changed.

    Raises:
        ModelError: a lazy module still has uninitialised parameters (run one forward pass
            first), naming the module.
    """
    for name, module in model.named_modules():
        if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
            raise ModelError(
                f"{_label(name, module)} has uninitialised parameters; run one forward pass "
                "on an example before building the meta-learner"
            )
    changed: list[str] = []
    for name, module in list(model.named_modules()):
        if name and type(module) is nn.BatchNorm2d:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, _to_meta_batch_norm(module))
            changed.append(name)
        elif isinstance(module, _NormBase) and module.track_running_stats:
            module.running_mean = None
            module.running_var = None
            module.num_batches_tracked = None
            module.track_running_stats = False
            changed.append(name)
    return changed


def failing_module(model: nn.Module, run: Callable[[], Any]) -> tuple[str, nn.Module] | None:
    """The innermost module whose forward was running when ``run()`` raised (None if none).

    Forward hooks record which modules have started and not finished; they are removed after.
    """
    active: list[tuple[str, nn.Module]] = []
    handles = []
    for name, module in model.named_modules():

        def enter(m: nn.Module, args: Any, name: str = name) -> None:
            active.append((name, m))

        def leave(m: nn.Module, args: Any, out: Any) -> None:
            active.pop()

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        run()
    except Exception:
        return active[-1] if active else None  # the modules that never finished, innermost last
    finally:
        for handle in handles:
            handle.remove()
    return None


_IN_PLACE = (
    "it updates a tensor shared by all tasks in place (a buffer such as running statistics); "
    "compute it without in-place updates or drop it"
)
_REASONS = (
    (
        "data-dependent control flow",
        "Python control flow on a tensor's value (if/while on a tensor) cannot run once per "
        "task; write it with tensor operations such as torch.where",
    ),
    (".item()", "reading a tensor's value with .item() cannot run once per task; keep it a tensor"),
    ("doesn't match the broadcast shape", _IN_PLACE),
    ("inplace", _IN_PLACE),
)
"""Known ``vmap`` failures: a phrase of PyTorch's message and what it means for the user."""


def model_error(model: nn.Module, exc: Exception, rerun: Callable[[], Any]) -> ModelError | None:
    """A :class:`ModelError` naming the module that raised ``exc`` under ``vmap``, or None when
    no module of ``model`` was running (the error is then not the base learner's)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return None
    found = failing_module(model, rerun)
    if found is None:
        return None
    name, module = found
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = next((why for key, why in _REASONS if key in message), None)
    if reason is None:
        reason = f"it failed when run once per task under torch.func.vmap: {message}"
    return ModelError(f"{_label(name, module)} cannot be part of a base learner: {reason}")
