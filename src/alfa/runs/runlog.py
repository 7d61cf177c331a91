"""Run logging: one JSON object per line in ``metrics.jsonl``, mirrored to TensorBoard, and the
console lines a training run prints (:class:`ConsoleLog`)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from alfa.errors import AlfaError, DataError
from alfa.runs.checkpoint import atomic_write_bytes
from alfa.runs.durable import append_record

__all__ = ["ConsoleLog", "NoLog", "RunLog", "format_duration", "read_metrics"]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (a torn last line from a crash is ignored).

    Raises:
        DataError: naming the file and line, when the file cannot be read or a line (other than a
            torn last one) is not UTF-8 text or not a JSON object with an integer iteration; the
            file is left as it is.
    """
    if not path.is_file():
        return []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"'{path}' line {number}"
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"{where} is not UTF-8 text; repair or delete that line") from None
        except json.JSONDecodeError:
            if number == len(lines):  # the last line, torn by a crash while it was written
                continue
            raise DataError(f"{where} is not valid JSON; repair or delete that line") from None
        iteration = record.get("iteration", 0) if isinstance(record, dict) else None
        if type(iteration) is not int:
            raise DataError(
                f"{where} is not a metrics record (a JSON object with an integer 'iteration'); "
                "repair or delete that line"
            )
        records.append(record)
    return records


class RunLog:
    """Appends metric records; on resume, records after the checkpoint are dropped first.

    Each record is appended whole or not at all (:func:`~alfa.runs.durable.append_record`): when the
    disk is full the record is cut back out and :class:`~alfa.errors.AlfaError` names the file,
    so ``metrics.jsonl`` keeps every record written before. TensorBoard is a mirror: when it
    cannot write, a warning says so and the run goes on with ``metrics.jsonl`` alone.

    Args:
        run_dir: the run directory.
        resume_iteration: when resuming, the checkpoint's iteration (records after it are
            rewritten by the resumed run, so the log matches an uninterrupted one).
        tensorboard: also write TensorBoard events when the package is installed.
    """

    def __init__(
        self, run_dir: Path, *, resume_iteration: int | None = None, tensorboard: bool = True
    ):
        self.path = run_dir / "metrics.jsonl"
        if resume_iteration is not None:
            kept = [r for r in read_metrics(self.path) if r.get("iteration", 0) <= resume_iteration]
            text = "".join(json.dumps(r) + "\n" for r in kept)
            atomic_write_bytes(self.path, text.encode())
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o666)
        except OSError as exc:
            raise AlfaError(f"cannot open '{self.path}': {exc.strerror or exc}") from exc
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # Events from after the checkpoint are rewritten by the resumed run: purge from the
                # next iteration on (the checkpoint's own iteration was logged before it was saved).
                purge = None if resume_iteration is None else resume_iteration + 1
                self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)
            except Exception:  # not installed, or installed but broken: metrics.jsonl suffices
                self.writer = None

    def _append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            raise AlfaError(f"'{self.path}' is closed")
        try:
            append_record(self._fd, (json.dumps(record) + "\n").encode())
        except OSError as exc:
            raise AlfaError(
                f"cannot append to '{self.path}': {exc.strerror or exc} (it keeps every record "
                f"before iteration {record['iteration']})"
            ) from exc

    def _mirror(self, action: Any) -> None:
        """Run a TensorBoard call; if it fails, warn once and stop mirroring."""
        if self.writer is None:
            return
        try:
            action(self.writer)
        except Exception as exc:
            self.writer = None
            print(
                f"alfa: warning: TensorBoard events can no longer be written ({exc}); "
                f"metrics.jsonl still records every value",
                file=sys.stderr,
            )

    def log(self, split: str, iteration: int, values: dict[str, float]) -> None:
        """Append one record (non-finite values are written as strings, e.g. ``"nan"``)."""
        record = {"split": split, "iteration": iteration}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self._append(record)

        def scalars(writer: Any) -> None:
            for key, value in values.items():
                writer.add_scalar(f"{split}/{key}", value, iteration)

        self._mirror(scalars)

    def event(self, iteration: int, **fields: Any) -> None:
        """Append a non-metric record, e.g. ``event="diverged"`` with a message."""
        self._append({"split": "event", "iteration": iteration, **fields})

    def close(self) -> None:
        """Flush everything to disk and close the files."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # e.g. a filesystem without fsync
            os.fsync(fd)
        os.close(fd)
        self._mirror(lambda writer: writer.close())
        self.writer = None


class NoLog:
    """Stands in for a :class:`RunLog` in a process that writes nothing (the ranks other than 0
    of a distributed run)."""

    def log(self, split: str, iteration: int, values: dict[str, float]) -> None:
        pass

    def event(self, iteration: int, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class ConsoleLog:
    """What a training run tells the console (stderr).

    At each validation one line with the validation metric (and its 95% CI) and, for
    classification, the training accuracy of the last logged window. In ``plain`` mode (no
    progress bar: ``--no-progress`` or stderr is not a terminal) also one line per log interval
    with the iteration, loss, training accuracy, iterations per second and the time left, so a
    cluster log shows progress; with a progress bar those values go to the bar instead.

    Args:
        name: the run's name, which starts every line (several runs may share a console).
        total: the run's last iteration.
        start: the iteration it starts from (resumed runs count the speed from there).
        plain: print log lines (no progress bar).
        write: where a line goes (default: stderr; with a progress bar, ``tqdm.write``).
    """

    def __init__(
        self,
        name: str,
        total: int,
        start: int,
        *,
        plain: bool,
        write: Any = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.name, self.total, self.start, self.plain = name, total, start, plain
        self._write = write
        self._clock = clock
        self._began = self._last_time = clock()
        self._last_iteration = start
        self.train_accuracy: float | None = None

    def _emit(self, line: str) -> None:
        if self._write is not None:
            self._write(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def train(self, iteration: int, values: dict[str, float]) -> str | None:
        """A log interval ended at ``iteration`` with these window ``values``; the line printed
        in plain mode (None otherwise)."""
        self.train_accuracy = values.get("train_accuracy")
        now = self._clock()
        interval = now - self._last_time
        rate = (iteration - self._last_iteration) / interval if interval > 0 else math.inf
        elapsed = now - self._began
        left = (self.total - iteration) * elapsed / max(iteration - self.start, 1)
        self._last_time, self._last_iteration = now, iteration
        if not self.plain:
            return None
        parts = [f"{self.name}: iteration {iteration}/{self.total}", f"loss {values['loss']:.4f}"]
        if self.train_accuracy is not None:
            parts.append(f"train accuracy {self.train_accuracy:.4f}")
        speed = f"{rate:.2f} it/s" if math.isfinite(rate) else "- it/s"
        parts += [speed, f"ETA {format_duration(left)}"]
        line = "  ".join(parts)
        self._emit(line)
        return line

    def validation(
        self,
        iteration: int,
        metric: str,
        mean: float,
        ci95: float,
        train_accuracy: float | None = None,
    ) -> str:
        """Print the validation line (``train_accuracy``: the last logged window's when not
        given)."""
        accuracy = self.train_accuracy if train_accuracy is None else train_accuracy
        line = (
            f"{self.name}: iteration {iteration}/{self.total}  validation {metric} "
            f"{mean:.4f} +- {ci95:.4f} (95% CI)"
        )
        if accuracy is not None:
            line += f"  train accuracy {accuracy:.4f}"
        self._emit(line)
        return line
