"""Batch normalisation without running statistics, for functional meta-learning.

The official ALFA code (reference.md A.1) always calls batch normalisation in training mode with no
running statistics: every forward pass, support or query, is normalised with the statistics of its
own batch. That is the *transductive* mode, our default (reference.md section 0). The
*non-transductive* ("support") mode normalises the query set with the statistics of the support set
instead, so a query prediction does not depend on the other query images.

:class:`MetaBatchNorm2d` implements both without any state: its ``forward(x, split)`` takes the
statistics from ``x[:split]`` when ``split`` is given and from the whole batch otherwise. A model
in support mode runs ``torch.cat([support, query])`` through the network with ``split =
len(support)``, so every layer sees the support activations computed with the current (adapted)
parameters. Nothing is updated in place and no Python control flow depends on tensor values, so
the layer works inside ``torch.func.vmap`` and ``torch.func.grad`` and is differentiable to any
order.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

from alfa.errors import ConfigError

__all__ = [
    "NORM_MODES",
    "MetaBatchNorm2d",
    "NormMode",
    "check_norm_mode",
    "is_norm_module",
    "norm_parameter_names",
]

NormMode = Literal["transductive", "support"]
"""How a model normalises the query set: with its own statistics or with the support set's."""

NORM_MODES: tuple[str, ...] = ("transductive", "support")


def check_norm_mode(norm: str) -> NormMode:
    """Validate a normalisation mode name.

    Args:
        norm: ``"transductive"`` (every batch normalised with its own statistics, as the official
            code) or ``"support"`` (a query batch normalised with the support set's statistics).

    Returns:
        The same string, typed as :data:`NormMode`.

    Raises:
        ConfigError: If ``norm`` is not one of :data:`NORM_MODES`.
    """
    if norm not in NORM_MODES:
        raise ConfigError(f"norm must be one of {NORM_MODES}, got {norm!r}")
    return norm  # type: ignore[return-value]


class MetaBatchNorm2d(nn.Module):
    """Batch normalisation over ``[B, C, H, W]`` that always uses batch statistics.

    There are no running statistics and no buffers at all, so the module behaves the same in
    ``train()`` and ``eval()`` mode. The variance is the biased one (divided by ``B*H*W``), as in
    PyTorch's training-mode batch normalisation.

    Args:
        num_features: Number of channels ``C``.
        affine: Whether to learn a per-channel scale ``weight`` (init 1) and shift ``bias``
            (init 0). (default: ``True``)
        eps: Added to the variance for numerical stability. (default: ``1e-5``)
    """

    is_normalisation = True
    """Marks the layer for code that recognises normalisation layers by this attribute."""

    def __init__(self, num_features: int, *, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.affine = affine
        self.eps = eps
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features))
            self.bias = nn.Parameter(torch.empty(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set ``weight`` to ones and ``bias`` to zeros (if affine)."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, split: int | None = None) -> Tensor:
        """Normalise ``x`` per channel.

        Args:
            x: Activations ``[B, C, H, W]``.
            split: If given, the mean and variance are computed from the first ``split`` rows of
                ``x`` only (the reference batch) and applied to all rows. ``None`` uses the whole
                batch. Must be a Python ``int``, not a tensor.

        Returns:
            The normalised (and, if affine, scaled and shifted) activations, shaped like ``x``.
        """
        if x.dim() != 4:
            raise ValueError(f"expected a [B, C, H, W] input, got shape {tuple(x.shape)}")
        if split is None:
            # Fused kernel; with no running statistics it only reads its inputs, and it has
            # vmap rules and derivatives of every order.
            return F.batch_norm(
                x, None, None, self.weight, self.bias, training=True, momentum=0.0, eps=self.eps
            )
        if not 0 < split <= x.shape[0]:
            raise ValueError(f"split must be in [1, {x.shape[0]}], got {split}")
        var, mean = torch.var_mean(x[:split], dim=(0, 2, 3), correction=0, keepdim=True)
        # Folded into one scale and shift per channel: two passes over x instead of four.
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight.view(1, -1, 1, 1)
        shift = -mean * scale
        if self.affine:
            shift = shift + self.bias.view(1, -1, 1, 1)
        return x * scale + shift

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}, running_stats=False"


def is_norm_module(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer.

    True for :class:`MetaBatchNorm2d`, PyTorch's batch, instance, layer and group norms, and any
    module whose class sets ``is_normalisation = True``. Their affine parameters are not adapted
    in the inner loop (reference.md A.1: the official code skips every parameter of a
    normalisation layer).

    Args:
        module: Any module.

    Returns:
        ``True`` if ``module`` normalises its input.
    """
    if isinstance(module, (MetaBatchNorm2d, _NormBase, nn.LayerNorm, nn.GroupNorm)):
        return True
    return getattr(module, "is_normalisation", False) is True


def norm_parameter_names(model: nn.Module) -> frozenset[str]:
    """Names (as in ``model.named_parameters()``) of the parameters of normalisation layers.

    Args:
        model: Any module.

    Returns:
        The fully qualified names of every parameter owned directly by a module for which
        :func:`is_norm_module` is true.
    """
    names: set[str] = set()
    for prefix, module in model.named_modules():
        if is_norm_module(module):
            for name, _ in module.named_parameters(recurse=False):
                names.add(f"{prefix}.{name}" if prefix else name)
    return frozenset(names)
