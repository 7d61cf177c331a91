"""A base learner as a pure function of its parameters, vectorised over the tasks of a meta-batch.

Any ``nn.Module`` works: :class:`FunctionalModel` evaluates it with
``torch.func.functional_call`` inside ``torch.func.vmap`` over a leading task axis, so each task
runs the module on its own copy of the adapted parameters. Normalisation layers see one task at a
time (their statistics never mix tasks) and must not track running statistics
(:func:`~alfa.engine.base_learner.prepare_base_learner` removes them from standard layers). Random
layers draw independently per task (``vmap(randomness="different")``). A module that cannot run
under ``vmap`` is named in a :class:`~alfa.errors.ModelError`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from alfa.engine.base_learner import model_error
from alfa.typing import Params

__all__ = ["FunctionalModel", "adapted_parameter_names", "is_norm_module"]

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
)


def is_norm_module(module: nn.Module) -> bool:
    """True for normalisation layers, whose affine parameters are never adapted (reference A.1)."""
    if isinstance(module, _NORM_TYPES):
        return True
    return getattr(module, "is_normalisation", False) is True


def adapted_parameter_names(module: nn.Module) -> tuple[str, ...]:
    """Names of the tensors the inner loop adapts: every parameter outside normalisation layers.

    This is the official code's rule (BatchNorm gamma and beta are outer-loop-only) for any
    module: weights and biases are separate "layers" with their own hyperparameters.
    """
    norm_prefixes = [name for name, m in module.named_modules() if name and is_norm_module(m)]
    names = []
    for name, _ in module.named_parameters():
        if not any(name.startswith(prefix + ".") for prefix in norm_prefixes):
            names.append(name)
    return tuple(names)


class FunctionalModel:
    """``apply(params, x)`` runs ``module`` per task with that task's adapted parameters.

    Args:
        module: the base learner. If its ``forward`` takes a ``reference`` keyword, the support
            set is passed there when the query set is evaluated (non-transductive BatchNorm).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.names = adapted_parameter_names(module)
        if not self.names:
            raise ValueError("the base learner has no parameters to adapt")
        forward = inspect.signature(module.forward).parameters
        self.accepts_reference = "reference" in forward

    def initial(self) -> Params:
        """The module's own adapted tensors (no task axis)."""
        params = dict(self.module.named_parameters())
        return {n: params[n] for n in self.names}

    def shared(self) -> dict[str, Tensor]:
        """Every tensor the module needs besides the adapted ones (normalisation affine
        parameters, buffers); the same for all tasks."""
        shared = {n: p for n, p in self.module.named_parameters() if n not in self.names}
        shared.update(dict(self.module.named_buffers()))
        return shared

    def apply(self, params: Params, x: Tensor, reference: Tensor | None = None) -> Tensor:
        """Outputs ``[T, B, ...]`` for inputs ``x`` of shape ``[T, B, ...]``.

        Raises:
            ModelError: a module of the base learner cannot run once per task (named).
        """
        try:
            return self._apply(params, x, reference)
        except RuntimeError as exc:

            def rerun() -> Tensor:
                with torch.no_grad():
                    return self._apply(params, x, reference)

            error = model_error(self.module, exc, rerun)
            if error is None:
                raise
            raise error from exc

    def _apply(self, params: Params, x: Tensor, reference: Tensor | None) -> Tensor:
        shared = self.shared()
        module = self.module
        params = dict(params)  # a plain dict for vmap (a FlatParams is a dict subclass)

        if reference is not None and self.accepts_reference:

            def run_ref(p: Params, xb: Tensor, ref: Tensor) -> Tensor:
                return torch.func.functional_call(
                    module, {**p, **shared}, (xb,), {"reference": ref}
                )

            return torch.func.vmap(run_ref, randomness="different")(params, x, reference)

        def run(p: Params, xb: Tensor) -> Tensor:
            return torch.func.functional_call(module, {**p, **shared}, (xb,))

        return torch.func.vmap(run, randomness="different")(params, x)

    def support_grads(
        self,
        params: Params,
        x: Tensor,
        y: Tensor,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        create_graph: bool,
        *,
        losses: bool = True,
    ) -> tuple[Tensor | None, Params]:
        """Per-task support losses ``[T]`` and their gradients w.r.t. ``params``.

        ``losses=False`` says the caller needs only the gradients (an implementation may then
        return None for the losses).

        Tasks are independent, so the gradient of the *sum* of the per-task losses with respect
        to the per-task copies ``[T, ...]`` is each task's own gradient: one
        ``torch.autograd.grad`` call serves the whole meta-batch. ``create_graph`` keeps the
        graph of the gradients (second order).
        """
        leaves = {
            n: t if t.requires_grad else t.detach().requires_grad_(True) for n, t in params.items()
        }
        with torch.enable_grad():
            values = loss_fn(self.apply(leaves, x), y)
            grads = torch.autograd.grad(
                values.sum(),
                [leaves[n] for n in self.names],
                create_graph=create_graph,
                allow_unused=True,
            )
        unused = [n for n, g in zip(self.names, grads, strict=True) if g is None]
        if unused:
            self._warn_unused(unused)
        return values, {
            n: torch.zeros_like(leaves[n]) if g is None else g
            for n, g in zip(self.names, grads, strict=True)
        }

    def _warn_unused(self, names: list[str]) -> None:
        """Say once which parameters the loss does not depend on: their support gradient is
        zero (as ``torch.func.grad`` gives), so only a rule's weight decay changes them."""
        if getattr(self, "_warned_unused", False):
            return
        self._warned_unused = True
        warnings.warn(
            f"parameter(s) {', '.join(repr(n) for n in names)} of the base learner take no part "
            "in the loss: their inner-loop gradient is zero (only weight decay changes them); "
            "remove them from the module if they are not meant to be there",
            stacklevel=3,
        )
