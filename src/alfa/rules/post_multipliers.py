"""Meta-learned per-step, per-layer hyperparameters (post-multipliers alpha0 and beta0, Eq. 7).

The same table serves two purposes: ALFA multiplies the generated values by it (Eq. 7), and the
``learned_fixed`` rule uses it directly as task-independent hyperparameters (Table 6, "fixed").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["StepLayerTable"]


class StepLayerTable(nn.Module):
    """A ``[rows, cols]`` table read at ``(step, layer)``.

    ``rows`` is ``steps`` when per-step (else 1) and ``cols`` the number of layers when per-layer
    (else 1), so switching either off ties the values across steps or layers. Steps past the
    trained number (longer adaptation at test time) reuse the last row.

    Args:
        steps: inner steps S.
        layers: number of adapted tensors N.
        init: initial value of every entry.
        per_step: whether values differ across steps.
        per_layer: whether values differ across layers.
        learn: whether the table is meta-learned (a parameter) or a constant (a buffer).
    """

    def __init__(
        self,
        steps: int,
        layers: int,
        init: float,
        *,
        per_step: bool = True,
        per_layer: bool = True,
        learn: bool = True,
    ) -> None:
        super().__init__()
        self.layers = layers
        value = torch.full((steps if per_step else 1, layers if per_layer else 1), float(init))
        if learn:
            self.value = nn.Parameter(value)
        else:
            self.register_buffer("value", value)

    def forward(self, step: int) -> Tensor:
        """The ``[N]`` values of every layer at ``step``."""
        row = self.value[min(step, self.value.shape[0] - 1)]
        return row.expand(self.layers)
