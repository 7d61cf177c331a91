"""The first batch a base learner sees, checked so that an error names its real cause first.

A base learner runs once per task under ``torch.func.vmap``; when the inputs do not suit it, the
error PyTorch raises names a layer (``Conv2d``, ``Linear``) and puts the cause after a colon, and
a model that returns a tuple or a ``loss_fn`` that returns a float fail later with an
``AttributeError``. :func:`probe` checks what it can before running anything (the inputs' dtype
and device against the parameters'), then runs the model on one task and tells an input that
does not fit the model (it fails without ``vmap`` too) from a module that cannot run per task
(it fails only under ``vmap``), and checks what the model and ``loss_fn`` return.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from alfa.engine.base_learner import failing_module
from alfa.engine.functional import FunctionalModel
from alfa.errors import ArgumentError, BatchError, ModelError

__all__ = ["check_model", "probe"]


def check_model(model: object) -> nn.Module:
    """``model`` itself when it is an ``nn.Module``.

    Raises:
        ArgumentError: anything else (a plain function has no parameters to adapt).
        ModelError: a module with parameters registered under two names (shared, so its
            weights are tied), or a parameter registered as a buffer too.
    """
    if not isinstance(model, nn.Module):
        raise ArgumentError(
            f"the base learner must be a torch.nn.Module, got {type(model).__name__}; a plain "
            "function has no parameters to adapt (wrap it in an nn.Module with parameters)"
        )
    seen: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        first = seen.setdefault(id(module), name)
        if first != name and any(True for _ in module.parameters()):
            raise ModelError(
                f"module '{first}' ({type(module).__name__}) is registered again as '{name}': "
                "a shared module ties its weights across two places of the model, which cannot "
                "be adapted once per task; register it once and call it twice in forward"
            )
    parameters = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    for name, buffer in model.named_buffers(remove_duplicate=False):
        if id(buffer) in parameters:
            raise ModelError(
                f"parameter '{parameters[id(buffer)]}' is also registered as the buffer "
                f"'{name}' (tied): a tensor is either adapted (a parameter) or not (a buffer)"
            )
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_like_parameters(model: nn.Module, x: Tensor, split: str) -> None:
    tensors = [*model.parameters(), *model.buffers()]
    floats = [t for t in tensors if t.is_floating_point()]
    if not floats:
        return
    reference = floats[0]
    if x.device != reference.device:
        raise BatchError(
            f"{split}_x is on device {x.device} but the model's parameters are on "
            f"{reference.device}; move one to the other (x.to(device) or model.to(device))"
        )
    if x.dtype != reference.dtype:
        raise BatchError(
            f"{split}_x has dtype {str(x.dtype).removeprefix('torch.')} but the model's "
            f"parameters {str(reference.dtype).removeprefix('torch.')}; convert one to the "
            f"other (x.to({reference.dtype}) or model.to({x.dtype}))"
        )


def _not_fitting(model: nn.Module, x: Tensor, split: str) -> str | None:
    """Why one task's inputs fail in ``model`` run plainly (no ``vmap``), or None when they
    run: then the failure under ``vmap`` is the module's."""

    def plain() -> object:
        with torch.no_grad():
            return model(x[0])

    try:
        plain()
    except Exception as exc:
        found = failing_module(model, plain)
        where = f" in module '{found[0]}' ({type(found[1]).__name__})" if found else ""
        return (
            f"{split}_x (one task: {tuple(x[0].shape)}) does not fit the model: it fails "
            f"without vmap too{where}: {_first_line(exc)}"
        )
    return None


def probe(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    split: str,
    loss_fn: Callable[[Tensor, Tensor], object] | None = None,
) -> torch.Size:
    """Run ``model`` once on the first task of ``x`` (per-task parameters, as the inner loop
    does) and return the shape of one example's output.

    Raises:
        BatchError: the inputs have another dtype or device than the parameters, or do not fit
            the model (a layer refuses them even without ``vmap``); ``loss_fn`` returns
            something other than a tensor.
        ModelError: a module cannot run once per task (named), or the model does not return
            one tensor.
    """
    _check_like_parameters(model, x, split)
    functional = FunctionalModel(model)
    one = {n: p.detach().unsqueeze(0) for n, p in functional.initial().items()}
    try:
        with torch.no_grad():
            out = functional.apply(one, x[:1])
    except (ModelError, RuntimeError) as exc:
        why = _not_fitting(model, x, split)
        if why is not None:
            raise BatchError(why) from exc
        raise
    if not isinstance(out, Tensor):
        raise ModelError(
            f"the model returns a {type(out).__name__}, not one tensor of outputs; return the "
            "outputs alone (e.g. out[0] of a tuple) from forward"
        )
    if loss_fn is not None:
        with torch.no_grad():
            loss = loss_fn(out[0], y[0])
        if not isinstance(loss, Tensor):
            raise ArgumentError(
                f"loss_fn returned a {type(loss).__name__}; it must return a tensor (the loss "
                "of one task, computed with torch operations so that it can be differentiated)"
            )
    return out.shape[2:]
