"""Shared types: parameter dictionaries and a stacked meta-batch of tasks."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["Params", "TaskBatch"]

Params = dict[str, Tensor]
"""Named tensors of a base learner, keyed as in ``nn.Module.named_parameters``."""


class TaskBatch(NamedTuple):
    """A meta-batch of ``T`` tasks stacked along a leading task axis (ready for ``vmap``).

    Classification: ``support_x`` is ``[T, N*K, C, H, W]`` float32, ``support_y`` is
    ``[T, N*K]`` int64 (labels ``0..N-1`` permuted per task); ``query_x``/``query_y`` likewise
    with ``N*Q`` rows. Regression: ``x`` is ``[T, K, 1]`` and ``y`` is ``[T, K, 1]`` float32.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    def to(self, device: object) -> TaskBatch:
        return TaskBatch(*(t.to(device, non_blocking=True) for t in self))

    def check(self, task: str = "classification", *, classes: int | None = None) -> TaskBatch:
        """The batch itself, after :func:`alfa.batch_checks.check_batch` (and, with ``classes``,
        :func:`~alfa.batch_checks.check_labels` on both sets).

        Raises:
            BatchError: a shape, dtype or label that is not what ``task`` expects, saying what
                was expected.
        """
        from alfa.batch_checks import check_batch, check_labels, check_task

        check_batch(self, check_task(task))
        if classes is not None:
            check_labels(self.support_y, classes, split="support")
            check_labels(self.query_y, classes, split="query")
        return self

    @property
    def num_tasks(self) -> int:
        return int(self.support_x.shape[0])
