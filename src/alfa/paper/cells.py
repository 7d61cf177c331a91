"""Cells: a config trained into its run directory, then its best checkpoint tested.

The Table 8 recipe (:mod:`alfa.paper.table8_run`) and the Quick-start demo (:mod:`alfa.cli.demo`)
train many small cells; each cell runs on one thread, several at once in worker processes, and the
results come back as each finishes. A cell is resumable: a run directory that already holds a
config continues from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alfa.config import Config
from alfa.errors import AlfaError

__all__ = ["deadline_from", "train_and_test", "train_and_test_all"]


def deadline_from(stop_after: str | None) -> float | None:
    """The ``time.time()`` of a recipe's ``--stop-after HH:MM`` (UTC, today), or None.

    Raises:
        AlfaError: ``stop_after`` is not ``HH:MM``.
    """
    if not stop_after:
        return None
    try:
        hours, minutes = (int(x) for x in stop_after.split(":"))
    except ValueError:
        raise AlfaError(f"--stop-after must be HH:MM (UTC), got {stop_after!r}") from None
    now = time.gmtime()
    return time.time() + ((hours * 60 + minutes) - (now.tm_hour * 60 + now.tm_min)) * 60


def train_and_test(
    config: Config,
    run_dir: Path,
    tasks: int,
    *,
    position: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) one cell, then test its best checkpoint on ``tasks`` fixed test tasks
    (none when ``tasks`` is 0: a run trained only to be exported).

    Returns the evaluation (with each task's value under ``"per_task"``) and ``name``,
    ``seconds``, ``checkpoint_iteration`` and ``diverged`` (the message, or None). A run that
    diverged is tested at its best checkpoint before that point; one that diverged before any
    checkpoint, or that is not tested, returns only ``name``, ``seconds`` and ``diverged``; a
    stopped run (Ctrl-C) only ``stopped``.
    """
    import torch

    from alfa.errors import DivergenceError
    from alfa.runs.evaluate import evaluate
    from alfa.runs.reopen import load_run
    from alfa.runs.train import train

    torch.set_num_threads(1)
    run_dir = Path(run_dir)
    start = time.time()
    diverged = None
    try:
        resume = (run_dir / "config.yaml").is_file()
        outcome = train(config, run_dir, resume=resume, progress=progress, position=position)
        if outcome.status == "stopped":
            return {"name": config.name, "stopped": True}
    except DivergenceError as exc:
        diverged = str(exc)
    if tasks == 0 or (diverged and not (run_dir / "checkpoints" / "best.pt").is_file()):
        return {"name": config.name, "diverged": diverged, "seconds": time.time() - start}
    _, learner, source, state = load_run(run_dir)  # the best checkpoint by validation
    result = evaluate(
        learner,
        source,
        tasks=tasks,
        seed=config.eval.seed,
        batch=config.eval.batch,
        first_order=config.eval.first_order,
        per_task=True,
    )
    result.update(
        name=config.name,
        seconds=time.time() - start,
        checkpoint_iteration=state["iteration"],
        diverged=diverged,
    )
    return result


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[int]]:
    """While inside, SIGINT and SIGTERM are recorded in the yielded list instead of ending this
    process (in the main thread; elsewhere the list stays empty)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {
        s: signal.signal(s, lambda number, _frame: received.append(number)) for s in signals
    }
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def train_and_test_all(
    work: Sequence[tuple[Config, Path]],
    tasks: int | Sequence[int],
    *,
    jobs: int = 1,
    deadline: float | None = None,
    progress: bool = True,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Train and test each ``(config, run_dir)`` of ``work``, ``jobs`` at a time, yielding
    ``(index in work, result)`` as each finishes. ``tasks``: the test tasks of every cell, or of
    each (0: not tested). No new cell starts after ``deadline`` (a ``time.time()`` value). With
    ``jobs`` 1 the cells run in this process, in order.

    With one job, a cell stopped by SIGINT or SIGTERM (with a checkpoint) is yielded as
    ``stopped`` and no new cell starts after it. With several jobs, a SIGINT or SIGTERM to this
    process starts no new cell and lets the running ones report: sent to the whole process group
    (Ctrl-C, ``kill -TERM -PGID``), each running cell stops after its iteration with a
    checkpoint and is yielded as ``stopped``; this process does not die before its workers have
    said so (they would be left waiting on it)."""

    def late() -> bool:
        if deadline is not None and time.time() > deadline:
            print("deadline passed; no new cell started")
            return True
        return False

    each = [tasks] * len(work) if isinstance(tasks, int) else list(tasks)
    if len(each) != len(work):
        raise ValueError(f"{len(each)} test task counts for {len(work)} cells")
    if jobs <= 1:
        for index, (config, run_dir) in enumerate(work):
            if late():
                return
            result = train_and_test(config, run_dir, each[index], progress=progress)
            yield index, result
            if result.get("stopped"):  # the cell took the signal: the recipe is stopping
                print("stopped: no new cell started")
                return
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    waiting = list(enumerate(work))
    free = list(range(jobs))  # the progress bars' lines
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool,
        _stop_requests() as stop,
    ):
        running: dict[Any, tuple[int, int]] = {}
        while waiting or running:
            if waiting and stop:
                print(f"{signal.Signals(stop[0]).name}: no new cell started")
                waiting.clear()
            if waiting and late():
                waiting.clear()
            while waiting and free:
                index, (config, run_dir) = waiting.pop(0)
                slot = free.pop(0)
                future = pool.submit(
                    train_and_test, config, run_dir, each[index], position=slot, progress=progress
                )
                running[future] = (index, slot)
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, slot = running.pop(future)
                free.append(slot)
                yield index, future.result()
