"""Per-step weights of the outer loss: last step only, a plain mean, or the annealed schedule.

The outer objective (paper Eq. 2 and Eq. 6) scores the adapted learner on the query set. With
a multi-step loss it is a weighted sum over the inner steps ``j = 0..S-1`` of the query loss
``L_j`` after step ``j``: ``sum_j w_j * L_j``, averaged over the tasks. ``meta.multi_step_loss``
chooses the weights ``w``:

- ``false``: the last step only, ``w = (0, ..., 0, 1)`` (the official ALFA configs);
- ``true``: the plain mean, ``w_j = 1 / S``;
- ``annealed``: the schedule of the official code (inherited from MAML++), which moves the
  weight from the early steps to the last one epoch by epoch. At epoch ``e`` (the integer
  ``(iteration - 1) // meta.epoch_iterations`` of the 1-based meta-iteration), with
  ``d = 1 / (S * E)`` for ``E = meta.multi_step_epochs`` and a floor ``m = 0.03 / S``::

      w_j     = max(1/S - e * d, m)                          for j < S - 1
      w_{S-1} = min(1/S + e * (S - 1) * d, 1 - (S - 1) * m)

  and from epoch ``E`` on the last step only. The official code uses ``E = 15`` epochs of 500
  iterations (its configs leave the schedule off).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["MultiStepLoss", "annealed_weights", "step_loss_weights"]

MultiStepLoss = Literal[False, True, "annealed"]


def annealed_weights(steps: int, epoch: int, epochs: int) -> list[float]:
    """The official annealed weights of the ``steps`` query losses at ``epoch`` (see above)."""
    if steps < 1 or epochs < 1 or epoch < 0:
        raise ValueError(
            f"need steps >= 1, epochs >= 1, epoch >= 0; got {steps}, {epochs}, {epoch}"
        )
    if epoch >= epochs or steps == 1:
        return [0.0] * (steps - 1) + [1.0]
    decay = 1.0 / steps / epochs
    floor = 0.03 / steps
    early = max(1.0 / steps - epoch * decay, floor)
    last = min(1.0 / steps + epoch * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return [early] * (steps - 1) + [last]


def step_loss_weights(
    mode: MultiStepLoss,
    steps: int,
    iteration: int = 1,
    *,
    epochs: int = 15,
    epoch_iterations: int = 500,
) -> list[float]:
    """The weights ``w_0..w_{S-1}`` of the query losses at the 1-based meta-``iteration``."""
    if mode is False:
        return [0.0] * (steps - 1) + [1.0]
    if mode is True:
        return [1.0 / steps] * steps
    if mode == "annealed":
        if iteration < 1 or epoch_iterations < 1:
            raise ValueError(f"need iteration >= 1 and epoch_iterations >= 1; got {iteration}")
        return annealed_weights(steps, (iteration - 1) // epoch_iterations, epochs)
    raise ValueError(f"multi_step_loss must be false, true or 'annealed'; got {mode!r}")
