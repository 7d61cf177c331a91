"""Multilayer perceptron for sinusoid regression: 1-40-40-1 or 1-80-80-80-1 with ReLU (Table 8)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """``in -> hidden[0] -> ReLU -> ... -> out`` with PyTorch's default initialisation."""

    def __init__(
        self, hidden: Sequence[int] = (40, 40), *, inputs: int = 1, outputs: int = 1
    ) -> None:
        super().__init__()
        widths = [inputs, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
