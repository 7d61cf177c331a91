"""Where a results file came from: the commit of the code and the command that wrote it, and how
long a run's processes trained (the same functions record the provenance of a run:
:mod:`alfa.runs.provenance`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alfa.runs.provenance import command_line, source_commit, training_time

__all__ = ["command_line", "run_time", "source_commit", "wall_time"]


def run_time(run_dir: Path, last_seconds: float) -> dict[str, Any]:
    """What a results file records of how long a run took: ``train_seconds`` (the wall time of
    the process that finished it, tests included), ``train_parts`` (how many processes trained
    it: a run stopped and resumed has two or more), ``train_seconds_measured`` (the sum of the
    training times they recorded) and ``train_parts_unmeasured`` (how many did not record one:
    killed, or from before provenance lines recorded it); see
    :func:`alfa.runs.provenance.training_time`."""
    spent = training_time(run_dir)
    return {
        "train_seconds": round(last_seconds, 1),
        "train_parts": spent["parts"],
        "train_seconds_measured": spent["seconds"],
        "train_parts_unmeasured": spent["unmeasured"],
    }


def wall_time(record: dict[str, Any]) -> tuple[float, bool]:
    """A run's wall time in seconds from its :func:`run_time` record, and whether that is all of
    it: the sum of its processes' recorded times when each recorded one, else a lower bound (the
    larger of what was recorded and the last process's time). A record from before processes
    recorded their time is whole when one process trained the run."""
    last = record.get("train_seconds") or 0.0
    if "train_parts_unmeasured" not in record:
        return last, (record.get("train_parts") or 1) == 1
    measured = record.get("train_seconds_measured") or 0.0
    if record["train_parts_unmeasured"] == 0:
        return measured, True
    return max(last, measured), False
