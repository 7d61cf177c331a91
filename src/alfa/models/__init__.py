"""Base learners: MLP (regression), 4-CONV, ResNet12, ResNet-18 (classification)."""

from __future__ import annotations

from torch import nn

from alfa.config import Config
from alfa.models.mlp import MLP

__all__ = ["BACKBONES", "MLP", "build_model"]

BACKBONES: dict[str, str] = {
    "mlp": "fully connected ReLU network, widths model.hidden (40-40 or 80-80-80): sinusoid "
    "regression (Table 8)",
    "conv4": "4-CONV: four 3x3 conv + batch norm + LeakyReLU + 2x2 max-pool blocks of "
    "model.filters channels and a linear classifier (Tables 1, 2, 4-7)",
    "resnet12": "ResNet12: four residual blocks of 64-128-256-512 channels, global average pool "
    "and a linear classifier (Tables 1, 2)",
    "resnet18": "Meta-Dataset's ResNet-18 (512 features) and a linear classifier (Table 3)",
}
"""The backbones a config names (``model.name``), each with what it is and where the paper
uses it (``alfa models`` lists them)."""


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
