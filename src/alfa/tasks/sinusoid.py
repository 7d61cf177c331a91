"""Sinusoid regression (paper Table 8).

A task is ``y = A * sin(w * x - phi)`` with ``x ~ U[-5, 5]``. The paper's family draws the
amplitude ``A ~ U[0.1, 5.0]``, frequency ``w ~ U[0.8, 1.2]`` and phase ``phi ~ U[0, pi]``;
MAML's original family fixes ``w = 1`` (reference B).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from alfa.errors import ArgumentError
from alfa.typing import TaskBatch

__all__ = ["SinusoidTasks", "fixed_sinusoid_tasks"]

FAMILIES = {
    "paper": {"amplitude": (0.1, 5.0), "frequency": (0.8, 1.2), "phase": (0.0, math.pi)},
    "maml": {"amplitude": (0.1, 5.0), "frequency": (1.0, 1.0), "phase": (0.0, math.pi)},
}
X_RANGE = (-5.0, 5.0)


class SinusoidTasks:
    """Samples meta-batches of sinusoid tasks from an explicit, checkpointable generator.

    Args:
        family: ``"paper"`` (with frequency) or ``"maml"``.
        shots: K support points per task.
        query: query points per task.
        seed: seed of this sampler's own ``torch.Generator``.
    """

    def __init__(
        self,
        family: Literal["paper", "maml"] = "paper",
        shots: int = 5,
        query: int = 5,
        *,
        seed: int = 0,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown sinusoid family {family!r}")
        for name, value in (("shots", shots), ("query", query)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArgumentError(
                    f"SinusoidTasks {name} must be a whole number of at least 1 (an empty "
                    f"{'support set adapts' if name == 'shots' else 'query set scores'} nothing); "
                    f"got {value!r}"
                )
        self.family = family
        self.shots = shots
        self.query = query
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=self.generator)

    def sample(self, tasks: int, *, query: int | None = None) -> TaskBatch:
        """A meta-batch: support ``[T, K, 1]`` and query ``[T, Q, 1]`` inputs and targets."""
        return self.sample_with_parameters(tasks, query=query)[0]

    def sample_with_parameters(
        self, tasks: int, *, query: int | None = None
    ) -> tuple[TaskBatch, dict[str, torch.Tensor]]:
        """:meth:`sample`, with each task's ``amplitude``, ``frequency`` and ``phase`` (``[T]``)."""
        query = self.query if query is None else query
        ranges = FAMILIES[self.family]
        amp = self._uniform((tasks, 1, 1), *ranges["amplitude"])
        freq = self._uniform((tasks, 1, 1), *ranges["frequency"])
        phase = self._uniform((tasks, 1, 1), *ranges["phase"])
        x = self._uniform((tasks, self.shots + query, 1), *X_RANGE)
        y = amp * torch.sin(freq * x - phase)
        k = self.shots
        batch = TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:])
        parameters = {
            "amplitude": amp.flatten(),
            "frequency": freq.flatten(),
            "phase": phase.flatten(),
        }
        return batch, parameters

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def fixed_sinusoid_tasks(
    family: Literal["paper", "maml"], shots: int, query: int, tasks: int, seed: int
) -> TaskBatch:
    """The same ``tasks`` test tasks for a given seed, every time (e.g. 600 x 100 query points)."""
    return SinusoidTasks(family, shots, query, seed=seed).sample(tasks)
