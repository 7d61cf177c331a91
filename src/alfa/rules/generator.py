"""The hyperparameter generator g_phi of ALFA (paper Eq. 5 and Sec. 3.3).

An MLP over the learning state (layer-wise means of weights and gradients) that outputs one
multiplier per adapted tensor for alpha and/or beta. The official code uses two linear layers
``2N -> 2N -> ReLU -> 2N`` (reference A.2); the paper text describes three. Outputs are
unbounded, as in the official code, unless ``output="bounded"``.

Two switches that are not in the paper (docs/adaptivity.md has their ablation):

- ``encoding="log_sign"`` reads the learning state through the log-magnitude and sign encoding of
  :mod:`alfa.rules.state_encoding`, so layers whose means differ by orders of magnitude weigh
  alike.
- ``output="bounded"`` generates ``2 * sigmoid(z)`` instead of ``z``: a multiplier in (0, 2) of
  the post-multiplier. The post-multipliers (task-independent) then set the sign and scale of
  each step's learning rate and weight decay, and the generator can only modulate them per task
  within a factor of two, so one unusual task cannot receive a huge or sign-flipped learning
  rate. With the unit initialisation (last layer 0) the multiplier starts at exactly 1.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from alfa.rules.state_encoding import encode_state, encoded_width

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
        encoding: ``"raw"`` (paper) or ``"log_sign"``: how the learning state is read.
        output: ``"linear"`` (paper) or ``"bounded"``: ``2 * sigmoid`` of the last layer.
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
        encoding: Literal["raw", "log_sign"] = "raw",
        output: Literal["linear", "bounded"] = "linear",
    ) -> None:
        super().__init__()
        if layers not in (2, 3):
            raise ValueError(f"generator layers must be 2 or 3, got {layers}")
        if output not in ("linear", "bounded"):
            raise ValueError(f"generator output must be 'linear' or 'bounded', got {output!r}")
        self.encoding = encoding
        self.output = output
        blocks: list[nn.Module] = [nn.Linear(encoded_width(in_features, encoding), hidden)]
        blocks.append(nn.ReLU())
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
                last.bias.fill_(0.0 if output == "bounded" else 1.0)
        elif init != "official":
            raise ValueError(f"generator init must be 'unit' or 'official', got {init!r}")

    def forward(self, state: Tensor) -> Tensor:
        out = self.net(encode_state(state, self.encoding))
        if self.output == "bounded":
            out = 2.0 * torch.sigmoid(out)
        if self.clip is not None:
            out = out.clamp(self.clip[0], self.clip[1])
        return out
