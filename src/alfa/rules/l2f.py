"""L2F: task-conditioned attenuation of the initialisation (Baik et al., CVPR 2020).

Before the inner loop, the layer-wise means of the support-loss gradients at the initial weights
feed an attenuator ``N -> N -> ReLU -> N -> sigmoid``; each initial tensor is multiplied by its
``gamma`` in (0, 1). The inner loop then runs the wrapped rule from the attenuated weights
(reference A.5). The gradient that feeds the attenuator keeps its graph whenever a
meta-gradient is taken, first order included, as in the official code.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from alfa.rules.base import Hyperparameters, UpdateRule, layer_means
from alfa.typing import Params

__all__ = ["L2F"]


class L2F(UpdateRule):
    """Wrap ``inner`` (any rule) with L2F's attenuation of the initial weights."""

    name = "l2f"

    def __init__(self, inner: UpdateRule) -> None:
        super().__init__(inner.names, inner.shapes, inner.steps)
        self.inner = inner
        n = inner.num_layers
        self.attenuator = nn.Sequential(nn.Linear(n, n), nn.ReLU(), nn.Linear(n, n), nn.Sigmoid())

    def gamma(self, grads: Params) -> Tensor:
        """Per-task, per-layer attenuation ``[T, N]`` in (0, 1)."""
        return self.attenuator(layer_means(grads, self.names))

    def init(self, params: Params, support_grads: Callable[[Params], Params]) -> Params:
        params = self.inner.init(params, support_grads)
        gamma = self.gamma(support_grads(params))
        out = dict(params)
        for k, name in enumerate(self.names):
            theta = params[name]
            out[name] = theta * gamma[:, k].reshape((-1,) + (1,) * (theta.dim() - 1))
        return out

    def hyperparameters(self, step: int, params: Params, grads: Params) -> Hyperparameters:
        return self.inner.hyperparameters(step, params, grads)

    def decay(self, name: str) -> Tensor | None:
        return self.inner.decay(name)
