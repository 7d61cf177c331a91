"""Base learners: MLP (regression), 4-CONV, ResNet12, ResNet-18 (classification)."""

from __future__ import annotations

from torch import nn

from alfa.config import Config
from alfa.models.mlp import MLP

__all__ = ["MLP", "build_model"]


def build_model(config: Config, *, in_channels: int = 3) -> nn.Module:
    """The base learner a config describes (its initialisation is drawn from the global seed)."""
    m, d = config.model, config.data
    if m.name == "mlp":
        return MLP(m.hidden)
    if m.name == "conv4":
        from alfa.models.conv4 import Conv4

        return Conv4(
            d.ways, in_channels=in_channels, filters=m.filters, image_size=d.image_size, norm=m.norm
        )
    if m.name == "resnet12":
        from alfa.models.resnet12 import ResNet12

        return ResNet12(d.ways, in_channels=in_channels, norm=m.norm)
    if m.name == "resnet18":
        from alfa.models.resnet18 import ResNet18

        return ResNet18(d.ways, in_channels=in_channels, norm=m.norm)
    raise ValueError(f"unknown model {m.name!r}")  # pragma: no cover - validated by the config
