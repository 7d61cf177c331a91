"""The hyperparameter generator g_phi of ALFA (paper Eq. 5 and Sec. 3.3).

An MLP over the learning state (layer-wise means of weights and gradients) that outputs one
multiplier per adapted tensor for alpha and/or beta. The official code uses two linear layers
``2N -> 2N -> ReLU -> 2N`` (reference A.2); the paper text describes three. Outputs are
unbounded, as in the official code.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["HyperparameterGenerator"]


class HyperparameterGenerator(nn.Module):
    """``g_phi``: learning state ``[T, in_features]`` -> multipliers ``[T, out_features]``.

    Args:
        in_features: N (weights or gradients only) or 2N (both).
        out_features: N per generated hyperparameter.
        layers: 2 (official code, the default) or 3 (paper text); hidden width 2N.
        init: ``"official"`` keeps PyTorch's default initialisation of every layer (some
            generated learning rates then start negative); ``"unit"`` sets the last layer's
            weights to 0 and bias to 1, so training starts exactly at the post-multipliers'
            plain rule and g_phi learns a deviation from it (our stabilisation, docs/stability.md).
        clip: optional ``(low, high)`` bounds applied to the generated multipliers.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: int,
        *,
        layers: Literal[2, 3] = 2,
        init: Literal["unit", "official"] = "unit",
        clip: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if layers not in (2, 3):
            raise ValueError(f"generator layers must be 2 or 3, got {layers}")
        blocks: list[nn.Module] = [nn.Linear(in_features, hidden), nn.ReLU()]
        if layers == 3:
            blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
        blocks.append(nn.Linear(hidden, out_features))
        self.net = nn.Sequential(*blocks)
        self.clip = clip
        if init == "unit":
            last = self.net[-1]
            assert isinstance(last, nn.Linear)
            with torch.no_grad():
                last.weight.zero_()
                last.bias.fill_(1.0)
        elif init != "official":
            raise ValueError(f"generator init must be 'unit' or 'official', got {init!r}")

    def forward(self, state: Tensor) -> Tensor:
        out = self.net(state)
        if self.clip is not None:
            out = out.clamp(self.clip[0], self.clip[1])
        return out
