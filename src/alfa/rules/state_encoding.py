"""Encodings of the learning state before the generator reads it (``rule.state_encoding``).

The layer-wise means that ALFA's generator reads (Sec. 3.3) span orders of magnitude: on the
sinusoid 40x2 network the gradient mean of the output bias varies across tasks by about 1.7
while those of the hidden layers vary by about 0.01 (``python -m alfa.paper.adaptivity``, reference
run ``results/table8/40x2-k5-alfa_maml-s0``). A linear first layer then sees the small ones as
noise until Adam, which moves each weight at about the same rate whatever its input's scale, has
grown their weights by orders of magnitude.

``log_sign`` is the input preprocessing of learned optimisers (Andrychowicz et al., "Learning to
learn by gradient descent by gradient descent", NeurIPS 2016, Appendix A): each value ``x``
becomes two,

    (log|x| / p, sign(x))   if |x| >= exp(-p)
    (-1,         exp(p) x)  otherwise,

with ``p = 10``, so every feature is of order one whatever its scale, its sign is kept, and the
map is continuous in ``x``. It has no statistics to track, so it behaves the same in training,
evaluation, a distributed job and a compiled graph.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["ENCODINGS", "encode_state", "encoded_width", "log_sign"]

ENCODINGS = ("raw", "log_sign")
P = 10.0


def log_sign(x: Tensor, p: float = P) -> Tensor:
    """``[..., F]`` -> ``[..., 2F]``: the log-magnitude half, then the sign half (see above)."""
    floor = math.exp(-p)
    big = x.abs() >= floor
    magnitude = torch.where(big, torch.log(x.abs().clamp_min(floor)) / p, -torch.ones_like(x))
    direction = torch.where(big, torch.sign(x), x * math.exp(p))
    return torch.cat([magnitude, direction], dim=-1)


def encoded_width(features: int, encoding: Literal["raw", "log_sign"]) -> int:
    """The generator's input width for ``features`` learning-state values."""
    if encoding not in ENCODINGS:
        raise ValueError(f"state encoding must be one of {', '.join(ENCODINGS)}: {encoding!r}")
    return 2 * features if encoding == "log_sign" else features


def encode_state(state: Tensor, encoding: Literal["raw", "log_sign"]) -> Tensor:
    """The learning state as the generator reads it."""
    return log_sign(state) if encoding == "log_sign" else state
