"""Launch a few gloo processes on this machine for the distributed tests (``spawn`` start).

Each process sets the environment ``torchrun`` would set, joins the group with
:func:`alfa.runs.distributed.process_group` and runs its jobs in order (see :func:`run_job`). What
each job returned (or raised) is written to ``OUT/rank-R.json`` and the process's stderr to
``OUT/rank-R.err``, so a test reads every rank's view after the processes end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _inject(fault: tuple[str, int, int] | None) -> None:
    """Make this rank's sinusoid stream fail at an iteration: ``("nan", rank, i)`` gives its
    share of meta-batch ``i`` NaN targets, ``("exit", rank, i)`` ends the process there and
    ``("hang", rank, i, seconds)`` makes it stop answering for that long (8 seconds when not
    given), writing the moment it starts (``time.monotonic()``, the same clock in every process
    of this machine) to ``hang-<rank>.txt`` in the job's output folder."""
    from alfa.runs.distributed import world
    from alfa.tasks.source import SinusoidSource

    if fault is None or fault[1] != world().rank:
        return
    kind, _, at = fault[:3]
    hang = float(fault[3]) if len(fault) > 3 else 8.0
    real = SinusoidSource.sample
    drawn = [0]

    def sample(self: SinusoidSource, tasks: int) -> Any:
        batch = real(self, tasks)
        drawn[0] += 1
        if drawn[0] == at:
            if kind == "exit":
                os._exit(9)
            if kind == "hang":
                marker = Path(os.environ["ALFA_TEST_OUT"], f"hang-{world().rank}.txt")
                marker.write_text(repr(time.monotonic()))
                time.sleep(hang)
            batch.query_y[-1] = float("nan")
        return batch

    SinusoidSource.sample = sample  # type: ignore[method-assign]


def run_job(job: dict[str, Any]) -> Any:
    """One job in this process (inside or outside a process group).

    ``{"kind": "train", "config": PATH or None, "overrides": [...], "run_dir": DIR,
    "resume": bool, "fault": None or (kind, rank, iteration)}`` or ``{"kind": "eval",
    "run_dir": DIR, "tasks": N, "batch": B}``; ``"dtype"`` sets the default dtype.
    """
    dtype = getattr(torch, job.get("dtype", "float32"))
    torch.set_default_dtype(dtype)
    with _images_as(dtype):
        return _run(job)


@contextmanager
def _images_as(dtype: torch.dtype) -> Iterator[None]:
    """Episodes' images in ``dtype`` (they are float32 whatever the default dtype)."""
    from alfa.data import episodes

    real = episodes.to_float
    episodes.to_float = lambda images, normalise: real(images, normalise).to(dtype)
    try:
        yield
    finally:
        episodes.to_float = real


def _run(job: dict[str, Any]) -> Any:
    from alfa.config import load_config
    from alfa.runs.distributed import world
    from alfa.runs.evaluate import evaluate
    from alfa.runs.reopen import load_run, resume_config
    from alfa.runs.train import train

    if job["kind"] == "train":
        _inject(job.get("fault"))
        run_dir = Path(job["run_dir"])
        if job.get("resume"):
            config = resume_config(run_dir, list(job["overrides"]))
        else:
            config = load_config(job.get("config"), list(job["overrides"]))
        result = train(config, run_dir, resume=bool(job.get("resume")), progress=False)
        return {"iteration": result.iteration, "status": result.status, "best": result.best}
    config, learner, source, _ = load_run(Path(job["run_dir"]))
    return evaluate(
        learner,
        source,
        tasks=job["tasks"],
        seed=config.eval.seed,
        batch=job["batch"],
        per_task=True,
        world=world(),
    )


def _process(
    rank: int, size: int, port: int, jobs: Sequence[dict[str, Any]], out: str, timeout: float
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(size),
        LOCAL_RANK=str(rank),
        OMP_NUM_THREADS="1",
        ALFA_TEST_OUT=out,
    )
    sys.stderr = open(Path(out, f"rank-{rank}.err"), "w", buffering=1)  # noqa: SIM115
    torch.set_num_threads(1)
    from alfa.runs.distributed import process_group

    results: list[Any] = []
    report = Path(out, f"rank-{rank}.json")
    try:
        with process_group(timeout=timeout):
            for job in jobs:
                started = time.monotonic()
                try:
                    results.append(run_job(job))
                except Exception as exc:  # reported to the test
                    results.append(
                        {
                            "error": type(exc).__name__,
                            "message": str(exc),
                            "every_rank": bool(getattr(exc, "every_rank", False)),
                            "seconds": time.monotonic() - started,
                            "ended_at": time.monotonic(),
                        }
                    )
                report.write_text(json.dumps(results))
    finally:
        report.write_text(json.dumps(results))


def launch(
    size: int, jobs: Sequence[dict[str, Any]], out: Path, *, timeout: float = 60.0
) -> list[list[Any] | None]:
    """Run ``jobs`` in ``size`` processes; each rank's results (an error as a dict), None
    for a rank that reported nothing."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_process, args=(rank, size, port, jobs, str(out), timeout))
        for rank in range(size)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(300)
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join()
    found: list[list[Any] | None] = []
    for rank in range(size):
        path = out / f"rank-{rank}.json"
        found.append(json.loads(path.read_text()) if path.is_file() else None)
    return found
