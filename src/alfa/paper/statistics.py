"""The statistics of the seeded result tables: a mean with its 95% CI, and paired differences.

Every run of a table is tested on the same fixed tasks, so two runs are compared paired over
tasks (:func:`paired`): the mean of the per-task differences has a far tighter CI than the
difference of the two means. Used by the Table 8 (:mod:`alfa.paper.table8_report`) and the
Omniglot protocol (:mod:`alfa.paper.omniglot_report`) reports.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from alfa.errors import AlfaError

__all__ = ["mean_ci", "paired"]


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width (1.96 * population std / sqrt(n), as alfa.runs.evaluate)."""
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
    return mean, 1.96 * std / math.sqrt(n)


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of the per-task differences ``a - b`` with its 95% CI (paired over tasks), their
    median, and the share of tasks on which ``a`` has the lower value (robust to a heavy tail).

    Raises:
        AlfaError: ``a`` and ``b`` hold different numbers of tasks.
    """
    if len(a) != len(b):
        raise AlfaError(f"paired comparison needs the same tasks; got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, ci = mean_ci(diffs)
    return {
        "mean_diff": mean,
        "ci95": ci,
        "median_diff": statistics.median(diffs),
        "share_a_lower": sum(d < 0 for d in diffs) / len(diffs),
        "tasks": len(a),
    }
