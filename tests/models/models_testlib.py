"""Helpers shared by the base-learner tests: tiny float64 models and random images."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from alfa.models.batchnorm import norm_parameter_names
from alfa.models.conv4 import Conv4
from alfa.models.resnet12 import ResNet12

ModelFactory = Callable[[str], nn.Module]

# Tiny configurations: (factory taking the norm mode, image shape [C, H, W]).
TINY_MODELS: dict[str, tuple[ModelFactory, tuple[int, int, int]]] = {
    "conv4": (
        lambda norm: Conv4(2, in_channels=1, filters=3, image_size=16, norm=norm),
        (1, 16, 16),
    ),
    "resnet12": (
        lambda norm: ResNet12(2, in_channels=1, channels=(2, 3, 3, 4), norm=norm),
        (1, 8, 8),
    ),
}


def tiny_model(name: str, norm: str) -> tuple[nn.Module, tuple[int, int, int]]:
    """A tiny float64 model with non-trivial batch norm affine parameters, and its image shape."""
    factory, shape = TINY_MODELS[name]
    model = factory(norm).double()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname in norm_parameter_names(model):
                p.add_(0.1 * torch.randn_like(p))
    return model, shape


def images(n: int, shape: tuple[int, ...], *lead: int) -> Tensor:
    """Random float64 images ``[*lead, n, *shape]``."""
    return torch.randn(*lead, n, *shape, dtype=torch.float64)


def adapted_names(model: nn.Module) -> list[str]:
    """Trainable parameters that are not normalisation parameters, in registration order."""
    norm = norm_parameter_names(model)
    return [n for n, p in model.named_parameters() if p.requires_grad and n not in norm]
