"""Per-task losses and metrics over a task axis: ``[T, B, ...]`` -> ``[T]``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["accuracy", "cross_entropy", "mse"]


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of each task (sinusoid regression)."""
    return (pred - target).pow(2).flatten(1).mean(1)


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of each task (N-way classification)."""
    tasks, batch = labels.shape
    losses = F.cross_entropy(
        logits.reshape(tasks * batch, -1), labels.reshape(-1), reduction="none"
    )
    return losses.view(tasks, batch).mean(1)


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-prediction correctness ``[T, B]`` (float 0/1)."""
    return (logits.argmax(-1) == labels).float()
