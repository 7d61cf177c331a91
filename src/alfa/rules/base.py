"""The interface every inner-loop update rule implements, and the one update formula they share.

Every rule turns the learning state of a task at inner step ``j`` into a learning rate
``alpha`` and a weight-decay term ``beta`` per parameter tensor ("layer"), and the update is
always the paper's Eq. (3)/(4) in the form the official code uses::

    theta_{j+1} = (1 - beta_j * decay) * theta_j - alpha_j * grad_j

so Eq. (4)'s multiplier is ``1 - beta_j * decay``. ``decay`` is 1 unless ``rule.per_element_decay``
is on (ALFA or learned-fixed), where it is a meta-learned per-element tensor (reference A.2: the
official random-init variant). MAML is ``alpha = lr, beta = 0`` (Eq. 1).

Rules work on a whole meta-batch at once: every parameter and gradient tensor carries a leading
task axis ``T``; ``alpha`` and ``beta`` are ``[T, N]`` for the ``N`` adapted tensors. A rule is an
``nn.Module`` that holds its meta-parameters (so the outer optimiser and checkpoints see them)
and never mutates itself inside the inner loop.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from alfa.typing import Params

__all__ = [
    "FlatParams",
    "Hyperparameters",
    "UpdateRule",
    "flatten",
    "full_precision",
    "layer_means",
    "layer_rms",
    "per_element_decays",
]


class Hyperparameters(NamedTuple):
    """Hyperparameters of one inner step, per task and tensor: ``alpha``, ``beta``, ``[T, N]``."""

    alpha: Tensor
    beta: Tensor


class FlatParams(dict):
    """Named ``[T, ...]`` tensors that are views of one buffer ``flat`` ``[T, P]``.

    The rules update every adapted tensor of a task at once on the concatenation of all of them
    (a handful of operations per step instead of several per tensor, which is what the inner
    loop of a small network costs); the named views feed the base learner.
    """

    def __init__(self, flat: Tensor, names: Sequence[str], shapes: Sequence[torch.Size]) -> None:
        sizes = [math.prod(s) for s in shapes]
        pieces = flat.split(sizes, 1)
        super().__init__({n: t.view(-1, *s) for n, t, s in zip(names, pieces, shapes, strict=True)})
        self.flat = flat
        self.names = tuple(names)


def flatten(tensors: Params, names: Sequence[str]) -> Tensor:
    """``[T, P]``: the tensors ``names`` of every task, flattened and concatenated."""
    if isinstance(tensors, FlatParams) and tensors.names == tuple(names):
        return tensors.flat
    return torch.cat([tensors[n].reshape(tensors[n].shape[0], -1) for n in names], 1)


_MEAN_MATRIX_LIMIT = 1 << 22  # entries; beyond it the per-tensor means are cheaper


def _membership_matrix(
    sizes: tuple[int, ...], device: torch.device, dtype: torch.dtype, mean: bool
) -> Tensor:
    """``[P, N]`` with 1 (or ``1/size_k`` with ``mean``) where element ``p`` belongs to tensor
    ``k``: ``flat @ M`` is every tensor's mean, ``values @ M.T`` spreads per-tensor values."""
    # Block-diagonal: static shapes only, so a compiled meta-iteration traces it without a break.
    columns = [torch.full((n, 1), 1.0 / n if mean else 1.0, dtype=dtype) for n in sizes]
    return torch.block_diag(*columns).to(device)


_cached_membership = functools.lru_cache(maxsize=64)(_membership_matrix)


def _membership(
    sizes: tuple[int, ...], device: torch.device, dtype: torch.dtype, mean: bool
) -> Tensor:
    """The membership matrix, cached in eager mode (a compiled graph builds it once itself)."""
    if torch.compiler.is_compiling():
        return _membership_matrix(sizes, device, dtype, mean)
    return _cached_membership(sizes, device, dtype, mean)


def _spread(values: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """``[T, N]`` per-tensor values -> ``[T, P]``, each repeated over its tensor's elements.

    Eager, one matrix product with the membership matrix is the fewest kernels; compiled, the
    broadcasts below fuse into one loop, which is cheaper than the (mostly zero) product."""
    if sum(sizes) * len(sizes) <= _MEAN_MATRIX_LIMIT and not torch.compiler.is_compiling():
        return values @ _membership(sizes, values.device, values.dtype, False).T
    t = values.shape[0]
    return torch.cat([values[:, k : k + 1].expand(t, n) for k, n in enumerate(sizes)], 1)


def layer_means(tensors: Params, names: Sequence[str]) -> Tensor:
    """Layer-wise means (paper Sec. 3.3): one value per task and tensor, shape ``[T, N]``."""
    if isinstance(tensors, FlatParams) and tensors.names == tuple(names):
        flat = tensors.flat
        sizes = tuple(math.prod(tensors[n].shape[1:]) for n in names)
        small = flat.shape[1] * len(sizes) <= _MEAN_MATRIX_LIMIT
        if small and not torch.compiler.is_compiling():  # compiled: fused sums, see _spread
            return flat @ _membership(sizes, flat.device, flat.dtype, True)
    return torch.stack([tensors[n].flatten(1).mean(1) for n in names], dim=1)


def layer_rms(tensors: Params, names: Sequence[str], eps: float = 1e-12) -> Tensor:
    """Layer-wise root mean squares ``sqrt(mean(t^2) + eps)``, ``[T, N]`` (``eps`` keeps the
    derivative finite at 0). Unlike the mean, the magnitude of a layer's gradient does not
    cancel over elements of opposite sign (docs/adaptivity.md)."""
    if isinstance(tensors, FlatParams) and tensors.names == tuple(names):
        shapes = [tensors[n].shape[1:] for n in names]
        squares: Params = FlatParams(tensors.flat.square(), names, shapes)
    else:
        squares = {n: tensors[n].square() for n in names}
    return (layer_means(squares, names) + eps).sqrt()


def full_precision(device_type: str) -> contextlib.AbstractContextManager:
    """A context in which ``torch.autocast`` is off on ``device_type`` (nothing to do when it is
    off already): operations run in their operands' own precision."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def per_element_decays(shapes: Sequence[torch.Size], init: float) -> nn.ParameterDict:
    """The per-element weight-decay tensors ``w`` of ``rule.per_element_decay`` (reference A.2,
    the official random-init variant): one meta-learned tensor of each adapted tensor's shape,
    every entry ``init``, keyed by the tensor's index; :meth:`UpdateRule.decay` returns them."""
    return nn.ParameterDict(
        {str(i): nn.Parameter(torch.full(shape, float(init))) for i, shape in enumerate(shapes)}
    )


class UpdateRule(nn.Module):
    """Base class: subclasses implement :meth:`hyperparameters` (and may override :meth:`init`).

    Args:
        names: the names of the adapted parameter tensors, in a fixed order (one "layer" each).
        shapes: their shapes (without the task axis).
        steps: the number of inner steps ``S`` the rule is meta-trained for.
    """

    name = "base"

    def __init__(self, names: Sequence[str], shapes: Sequence[torch.Size], steps: int) -> None:
        super().__init__()
        self.names = tuple(names)
        self.shapes = tuple(torch.Size(s) for s in shapes)
        self.steps = int(steps)

    @property
    def num_layers(self) -> int:
        return len(self.names)

    def init(self, params: Params, support_grads: Callable[[Params], Params]) -> Params:
        """Transform the initial parameters of each task before the first step (identity here).

        ``support_grads(params)`` returns the support-loss gradients at ``params``; L2F uses it.
        """
        return params

    def hyperparameters(self, step: int, params: Params, grads: Params) -> Hyperparameters:
        """The learning rate and weight-decay term of every task and tensor at ``step``."""
        raise NotImplementedError

    def decay(self, name: str) -> Tensor | None:
        """An optional per-element multiplier of ``beta`` for tensor ``name`` (None: 1)."""
        return None

    def update(self, step: int, params: Params, grads: Params) -> tuple[Params, Hyperparameters]:
        """One inner step, Eq. (4): ``theta <- (1 - beta * decay) * theta - alpha * grad``.

        Computed on the flat ``[T, P]`` buffers of all adapted tensors, with ``alpha`` and
        ``beta`` spread from ``[T, N]`` to ``[T, P]`` by each element's layer index.

        Always in the weights' own precision, also under ``torch.autocast`` (``train.autocast``):
        in bfloat16 the multiplier ``1 - beta`` (beta about 5e-6) rounds to exactly 1, so weight
        decay would vanish, and the layer means that the generator reads would lose most of
        their digits. The rule's arithmetic is a few small operations per step; the base
        learner's convolutions and matrix products keep autocast's precision.
        """
        with full_precision(next(iter(params.values())).device.type):
            return self._update(step, params, grads)

    def _update(self, step: int, params: Params, grads: Params) -> tuple[Params, Hyperparameters]:
        theta = flatten(params, self.names)
        grad = flatten(grads, self.names)
        # The tensors' own shapes: a per-episode head may have fewer rows than at build time
        # (variable ways, alfa.engine.proto_head); the rules' hyperparameters are per layer.
        shapes = tuple(params[n].shape[1:] for n in self.names)
        hyper = self.hyperparameters(
            step,
            FlatParams(theta, self.names, shapes),
            FlatParams(grad, self.names, shapes),
        )
        sizes = tuple(math.prod(s) for s in shapes)
        decays = [self.decay(n) for n in self.names]
        if any(d is not None for d in decays):
            ones = [torch.ones_like(theta[0, :1]).expand(n) for n in sizes]
            decay = torch.cat(
                [o if d is None else d.reshape(-1) for o, d in zip(ones, decays, strict=True)]
            )
            alpha = _spread(hyper.alpha, sizes)
            new = theta - _spread(hyper.beta, sizes) * decay * theta - alpha * grad
        else:
            # alpha and the multiplier 1 - beta spread to every element in one product.
            tasks = theta.shape[0]
            both = _spread(torch.cat([hyper.alpha, 1.0 - hyper.beta]), sizes)
            new = theta * both[tasks:] - both[:tasks] * grad
        return FlatParams(new, self.names, shapes), hyper
