"""Checks of a meta-batch before the inner loop: the task axis, shapes, dtypes and labels.

A meta-batch of ``T`` tasks (the paper's ``T_i``, Eq. 2) is four tensors with a leading task
axis: inputs ``[T, B, ...]`` and targets ``[T, B]`` (class indices) or ``[T, B, ...]``
(regression). A mistake here would otherwise pass silently (a single task's ``[K, 1]`` inputs
read as ``K`` one-point tasks) or fail deep inside ``vmap``; every check raises a
:class:`~alfa.errors.BatchError` that says what was expected. Only shapes and dtypes are read,
except for the label range, which costs one ``aminmax`` per call.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from alfa.errors import ArgumentError, BatchError

__all__ = ["TASKS", "MetaBatch", "check_batch", "check_labels", "check_task", "check_tensors"]


class MetaBatch(Protocol):
    """What :func:`check_batch` reads: the four tensors of a meta-batch, e.g. an
    :class:`alfa.typing.TaskBatch` (this module stays below :mod:`alfa.typing`, which calls it)."""

    @property
    def support_x(self) -> Tensor: ...
    @property
    def support_y(self) -> Tensor: ...
    @property
    def query_x(self) -> Tensor: ...
    @property
    def query_y(self) -> Tensor: ...


TASKS = ("regression", "classification")
"""The kinds of task: MSE on real-valued targets, or cross-entropy on class indices."""


def check_task(task: object) -> str:
    """``task`` itself when it is one of :data:`TASKS`.

    Raises:
        ArgumentError: another value, with the allowed ones.
    """
    if task not in TASKS:
        raise ArgumentError(f"task must be 'regression' or 'classification', got {task!r}")
    return task  # type: ignore[return-value]


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def check_tensors(x: object, y: object, task: str, *, split: str = "support") -> None:
    """Check one set (``support`` or ``query``) of a meta-batch.

    Raises:
        BatchError: not tensors, no task axis, inputs not floating point, targets of the wrong
            dtype or rank, or a different number of tasks or examples in inputs and targets.
    """
    for name, t in ((f"{split}_x", x), (f"{split}_y", y)):
        if not isinstance(t, Tensor):
            raise BatchError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    if x.dim() < 3:
        raise BatchError(
            f"{split}_x has shape {_shape(x)}; expected [tasks, examples, features...] with a "
            f"leading task axis (for one task pass {split}_x.unsqueeze(0))"
        )
    if not x.is_floating_point():
        raise BatchError(
            f"{split}_x has dtype {x.dtype}; expected a floating-point tensor (e.g. x.float())"
        )
    if task == "classification":
        if y.dtype != torch.long:
            raise BatchError(
                f"{split}_y has dtype {y.dtype}; expected torch.int64 class indices for "
                "classification (e.g. y.long())"
            )
        if y.dim() != 2:
            raise BatchError(
                f"{split}_y has shape {_shape(y)}; expected [tasks, examples] class indices "
                "for classification"
            )
    else:
        if not y.is_floating_point():
            raise BatchError(
                f"{split}_y has dtype {y.dtype}; expected floating-point targets for regression"
            )
        if y.dim() < 2:
            raise BatchError(
                f"{split}_y has shape {_shape(y)}; expected [tasks, examples, ...] with a "
                "leading task axis"
            )
    if x.shape[:2] != y.shape[:2]:
        raise BatchError(
            f"{split}_x holds {x.shape[0]} tasks x {x.shape[1]} examples but {split}_y "
            f"{y.shape[0]} x {y.shape[1]}; inputs and targets must agree"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise BatchError(f"{split}_x has shape {_shape(x)}; expected at least one task and example")


def check_batch(batch: MetaBatch, task: str) -> None:
    """Check a whole meta-batch: both sets, and that they agree with each other.

    Raises:
        BatchError: see :func:`check_tensors`; or the support and query sets differ in their
            number of tasks or in the shape of one example.
    """
    check_tensors(batch.support_x, batch.support_y, task, split="support")
    check_tensors(batch.query_x, batch.query_y, task, split="query")
    if batch.support_x.shape[0] != batch.query_x.shape[0]:
        raise BatchError(
            f"the support set holds {batch.support_x.shape[0]} tasks but the query set "
            f"{batch.query_x.shape[0]}; both need the same tasks"
        )
    for what, s, q in (
        ("input", batch.support_x, batch.query_x),
        ("target", batch.support_y, batch.query_y),
    ):
        if s.shape[2:] != q.shape[2:]:
            raise BatchError(
                f"a support {what} has shape {tuple(s.shape[2:])} but a query {what} "
                f"{tuple(q.shape[2:])}; they must agree"
            )


def check_labels(labels: Tensor, classes: int, *, split: str = "support") -> None:
    """Class indices must lie in ``0..classes-1`` (``classes``: the model's outputs).

    Raises:
        BatchError: a label outside that range, with the range.
    """
    low, high = (int(v) for v in torch.aminmax(labels.detach()))
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise BatchError(
            f"{split}_y holds label {bad} but the model has {classes} outputs; labels must lie "
            f"in 0..{classes - 1}"
        )
