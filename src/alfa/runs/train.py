"""The outer loop, top to bottom: sample a meta-batch, adapt, step the meta-optimiser, log, save.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, TensorBoard
events and ``checkpoints/`` (``step-NNNNNNN.pt``, the last ``train.keep_last`` kept, plus
``best.pt`` by validation; see :mod:`alfa.runs.rundir`). A checkpoint holds everything needed to
continue bit for bit (:mod:`alfa.runs.train_state`). Resuming drops the log records written after
the checkpoint, so a run killed at any moment and resumed ends exactly as an uninterrupted one.
Validation, with the best and top-k checkpoints, is :mod:`alfa.runs.validation`.

A single process reads each iteration's statistics (loss, step means, accuracy, the meta-gradient
check) one iteration late, so that a GPU does not wait while the host logs and draws the next
batch; iterations that log, validate, checkpoint or stop read their own at once. The log, the
checkpoints and the divergence messages are those of reading every iteration at once
(:mod:`alfa.runs.step_stats`).

The console (stderr) shows the validation metric with its 95% CI at each validation and, for
classification, the training query accuracy of the last logged window (also logged as
``train_accuracy``). Without a progress bar (``--no-progress``, or stderr is not a terminal, as in
a cluster job's log) one plain line per ``train.log_every`` interval gives the iteration, loss,
training accuracy, iterations per second and the time left (:class:`~alfa.runs.runlog.ConsoleLog`).

SIGINT or SIGTERM stops after the current iteration with a checkpoint (a second one stops at
once). A NaN or inf in a loss, a gradient, a generated hyperparameter or a meta-parameter stops
the run with :class:`~alfa.errors.DivergenceError` naming where it appeared, without writing a
checkpoint, so the last good one stays.

While a run trains, ``RUN_DIR/.lock`` holds an advisory lock, so the same run cannot be trained
by two processes at once (the operating system releases it even when the process is killed). The
file is removed when training ends, normally, with an error or when interrupted.

Resuming compares the run's ``config.yaml`` with the config stored in the checkpoint and refuses
a change of any key but those of :data:`alfa.runs.reopen.RESUMABLE_KEYS` (e.g. ``train.iterations``,
which extends a run). It never truncates a log that no checkpoint accounts for.

Launched by ``torchrun`` with several processes, each process adapts its share of every
meta-batch and the meta-gradients are averaged (:mod:`alfa.runs.distributed`): the run equals the
single-process run, rank 0 alone writes the run directory and the console, and the run resumes
with any number of processes.
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from alfa.config import Config, config_to_dict
from alfa.engine.execution import check_execution, meta_step, optimizer_step
from alfa.engine.meta_learner import MetaLearner, MetaOutput
from alfa.errors import AlfaError, DivergenceError
from alfa.runs.build import build_learner, build_optimizer, configure_runtime
from alfa.runs.checkpoint import checkpoint_name, prune_checkpoints, prune_top
from alfa.runs.checkpoint import save_checkpoint as save_checkpoint
from alfa.runs.class_lists import read_run_class_lists, store_class_lists
from alfa.runs.distributed import (
    World,
    announce,
    broadcast,
    broadcast_parameters,
    check_same_parameters,
    first_divergence,
    mean_over_ranks,
    on_main,
    share,
    shared_error,
    world,
)
from alfa.runs.divergence import (
    diagnose,
    meta_gradients_finite,
    meta_parameters_finite,
    remedies,
)
from alfa.runs.durable import is_disk_full
from alfa.runs.last_good import last_good_checkpoint
from alfa.runs.memory import check_memory
from alfa.runs.provenance import finish_provenance, provenance, record_provenance
from alfa.runs.reopen import check_path_names
from alfa.runs.rundir import (
    check_new_run_dir,
    lock_run_dir,
    prepare_new_run,
    run_paths,
    unlock_run_dir,
)
from alfa.runs.runlog import ConsoleLog, NoLog, RunLog
from alfa.runs.step_stats import (
    IterationStats,
    ParamSnapshot,
    PendingStats,
    read_stats,
    stat_parts,
)
from alfa.runs.train_state import (
    Window,
    better,
    record_config,
    restore,
    resume_point,
    rng_state,
    set_rng_state,
    training_state,
)
from alfa.runs.validation import validate
from alfa.tasks.source import TaskSource, build_source

__all__ = ["TrainResult", "check_new_run_dir", "run_paths", "train"]

# The names these helpers had when they lived in this module.
_Window, _training_state, _rng_state, _set_rng_state, _better = (
    Window,
    training_state,
    rng_state,
    set_rng_state,
    better,
)


@dataclass
class TrainResult:
    """How :func:`train` ended."""

    iteration: int
    status: str  # "finished" | "stopped"
    best: float | None = None
    signal: int | None = None


class Aborted(KeyboardInterrupt):
    """A second SIGINT/SIGTERM stopped training at once; ``signal`` is its number (the CLI
    exits with 128 + it, as a process killed by it would)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal = signum


class _StopRequest:
    """Signal handler state: the first SIGINT/SIGTERM asks for a clean stop, a second aborts."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:
            raise Aborted(signum)
        self.signal = signum


def _stat_parts(out: MetaOutput, query_y: torch.Tensor | None) -> torch.Tensor:
    """See :func:`alfa.runs.step_stats.stat_parts`."""
    return stat_parts(out, query_y)


def _read_stats(
    learner: torch.nn.Module, stats: torch.Tensor, steps: int, classify: bool
) -> tuple[float, list[float], list[float], float, float | None]:
    """``stats`` of :func:`_stat_parts` and the largest meta-gradient magnitude (NaN when any
    is NaN), read in one transfer."""
    return read_stats(learner, stats, steps, classify).as_tuple()


def _iteration_stats(
    learner: torch.nn.Module, out: MetaOutput, query_y: torch.Tensor | None = None
) -> tuple[float, list[float], list[float], float, float | None]:
    """Outer loss, mean generated alpha and beta of every inner step (over tasks and layers),
    the largest meta-gradient magnitude (NaN when any is NaN) and, for classification (when
    ``query_y`` is given), the query accuracy of the adapted learners, read in one transfer."""
    classify = query_y is not None and getattr(learner, "task", None) == "classification"
    stats = _stat_parts(out, query_y if classify else None)
    return _read_stats(learner, stats, len(out.hyperparameters), classify)


def _late_statistics(here: World) -> bool:
    """Whether the loop reads an iteration's statistics one iteration late
    (:mod:`alfa.runs.step_stats`): in a single process. Several processes read them at once:
    the stop request travels with them, and every rank must see it at the same iteration."""
    return not here.distributed


def _share_config(config: Config, here: World) -> Config:
    """The config as one process sees it: ``meta.batch_size`` is its share (memory estimate)."""
    if not here.distributed:
        return config
    meta = dataclasses.replace(config.meta, batch_size=config.meta.batch_size // here.size)
    return dataclasses.replace(config, meta=meta)


def train(
    config: Config,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    position: int | None = None,
) -> TrainResult:
    """Meta-train as ``config`` says, into ``run_dir`` (continuing it when ``resume``).

    A new run refuses a folder that already holds one. ``resume`` continues from the newest
    checkpoint that loads (falling back past damaged ones, with a message on stderr), or from
    scratch when none was written yet (refused when the log shows that checkpoints existed).
    ``config`` may differ from the checkpoint's only in :data:`~alfa.runs.reopen.RESUMABLE_KEYS`; a
    change is written to ``config.yaml``. Everything that can refuse a run (memory estimate,
    config, checkpoint, log) is checked before anything is built or written.

    In a distributed job (:mod:`alfa.runs.distributed`) every rank calls this alike: rank 0 checks,
    locks and writes the run directory and sends the checkpoint to resume from to the others.

    Raises:
        AlfaError: the run directory cannot be used, or a checkpoint or its log cannot be
            resumed.
        ConfigError: the run will not fit in memory, the config differs from the checkpoint's
            in a key that may not change, or the processes cannot share the meta-batch.
        DivergenceError: a NaN or inf appeared; the last good checkpoint is kept.
        PeerError: another process of the job died or did not answer in time.
    """
    run_dir = Path(run_dir)
    here = world()
    paths = run_paths(run_dir)
    check_path_names(run_dir)
    first_task, last_task = share(config.meta.batch_size, here)

    def check_run_dir() -> None:
        if resume and not run_dir.is_dir():
            raise AlfaError(f"run directory '{run_dir}' does not exist")
        if not resume:
            check_new_run_dir(run_dir)  # before any work, so a mistake costs nothing

    on_main(check_run_dir, here)
    device = configure_runtime(config)
    check_memory(_share_config(config, here), device)  # before allocating anything
    start, best, window = 0, None, Window()
    top: list[tuple[float, int]] = []
    lock, point = None, None
    began: float | None = None  # when this invocation began to train
    ended: tuple[str, int | None] = ("failed", None)  # how, and at which iteration

    def open_run() -> Any:  # rank 0: every check that can refuse the resume
        nonlocal lock
        lock = lock_run_dir(run_dir)
        point = resume_point(config, run_dir)
        store_class_lists(config, run_dir, only_missing=True)  # a run from before the copies
        return point

    try:
        if resume:  # before anything is built
            point = broadcast(on_main(open_run, here), here)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        # a resumed run reads its classes from its own copies of the class lists
        source = build_source(config, class_lists=read_run_class_lists(run_dir) if resume else None)
        if here.distributed:
            source.share(first_task, last_task)
        learner = build_learner(config, task=source.task, in_channels=source.in_channels)
        learner = learner.to(device)
        if learner.engine_reason is not None:
            announce(
                f"alfa: note: the inner loop runs on the generic engine: {learner.engine_reason}",
                here,
            )
        check_execution(config.train, learner, device)
        broadcast_parameters(learner, here)
        optimizer = build_optimizer(config, learner)
        if not resume:
            lock = on_main(lambda: prepare_new_run(config, run_dir), here)
        elif point is not None:
            path, state, (start, best, window, top) = point
            restore(path, state, learner, optimizer, source)
            if here.main:
                prune_top(paths["checkpoints"], set(), after=start)
            announce(f"resuming {run_dir} from {path.name} (iteration {start})", here)
        else:
            announce(f"no checkpoint in {run_dir} yet; starting from iteration 0", here)
        if resume:
            on_main(lambda: record_config(config, run_dir), here)
        if start < config.train.iterations:  # an invocation that trains (a finished run: none)
            engine = learner.engine
            on_main(lambda: record_provenance(run_dir, provenance(device, engine=engine)), here)
            began = time.time()
        result = _loop(
            config,
            run_dir,
            learner,
            optimizer,
            source,
            device,
            start,
            best,
            window,
            top,
            resume=resume,
            progress=progress,
            position=position,
            here=here,
        )
        ended = (result.status, result.iteration)
        return result
    except DivergenceError:
        ended = ("diverged", None)
        raise
    except Aborted:  # a second signal
        ended = ("aborted", None)
        raise
    except AlfaError as exc:
        if is_disk_full(exc) and paths["config"].is_file():  # what was written before stays
            raise type(exc)(f"{exc}; free space, then: alfa train --resume {run_dir}") from exc
        raise
    finally:
        if began is not None and here.main:  # no collective here: a peer may have died
            _finish(run_dir, ended, start, time.time() - began)
        unlock_run_dir(lock, run_dir)


def _finish(run_dir: Path, ended: tuple[str, int | None], start: int, seconds: float) -> None:
    """Record in the run's provenance line how this invocation ended (a disk that cannot take
    it does not hide the error that ended training)."""
    status, last = ended
    try:
        finish_provenance(run_dir, status=status, first=start, last=last, seconds=seconds)
    except (AlfaError, OSError) as exc:
        print(f"alfa: warning: the provenance of '{run_dir}' lacks its end: {exc}", file=sys.stderr)


def _divergence(
    learner: MetaLearner,
    batch: Any,
    local: torch.Tensor,
    iteration: int,
    first_task: int,
    here: World,
) -> DivergenceError:
    """Where the NaN or inf of this iteration appeared, agreed by every rank (the lowest rank
    whose own share diverged names it)."""
    mine = None
    if not bool(torch.isfinite(local).all()):
        mine = diagnose(learner, batch, iteration, task_offset=first_task)
    return first_divergence(mine, here)


def _loop(
    config: Config,
    run_dir: Path,
    learner: MetaLearner,
    optimizer: torch.optim.Optimizer,
    source: TaskSource,
    device: torch.device,
    start: int,
    best: float | None,
    window: Window,
    top: list[tuple[float, int]],
    *,
    resume: bool,
    progress: bool,
    position: int | None,
    here: World | None = None,
) -> TrainResult:
    here = here or World()
    paths = run_paths(run_dir)
    t = config.train
    log = RunLog(run_dir, resume_iteration=start if resume else None) if here.main else NoLog()
    first_task = share(config.meta.batch_size, here)[0]
    classify = learner.task == "classification"

    def checkpoint_state(
        iteration: int, best: float | None, top: list[tuple[float, int]]
    ) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "learner": learner.state_dict(),
            "optimizer": optimizer.state_dict(),
            "source": source.state_dict(),
            "rng": rng_state(device),
            "best": best,
            "top": [list(entry) for entry in top],
            "window": window.state(),
            "config": config_to_dict(config),
        }

    stop = _StopRequest()
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, stop) for s in handled}
    # Without a terminal a progress bar is noise in a log file: print plain lines instead.
    plain = not progress or not sys.stderr.isatty()
    bar = tqdm(
        total=t.iterations,
        initial=start,
        desc=config.name or "train",
        unit="it",
        disable=plain or not here.main,
        dynamic_ncols=True,
        position=position,
        mininterval=0.2,
    )
    if not here.main:
        write = lambda line: None  # noqa: E731 - rank 0 alone talks to the console
    else:
        write = None if plain else lambda line: tqdm.write(line, file=sys.stderr)
    console = ConsoleLog(config.name or "train", t.iterations, start, plain=plain, write=write)
    iteration, stopping = start, False
    saved: Path | None = None
    forward = meta_step(learner, t, device)  # eager, or compiled (train.compile)
    update = optimizer_step(optimizer, t)
    steps = learner.steps
    # One process reads an iteration's statistics one iteration late (alfa.runs.step_stats);
    # the snapshot is what a late-found divergence goes back to.
    late = _late_statistics(here)
    snapshot = ParamSnapshot(learner) if late else None
    pending: PendingStats | None = None
    failed_at: int | None = None

    def check(found: IterationStats, p: PendingStats) -> None:
        """Raise the iteration's divergence, named, when its statistics are not finite (before
        its optimiser step: the learner is as the iteration left it)."""
        nonlocal failed_at
        if not all(math.isfinite(v) for v in [found.loss, *found.alpha, *found.beta]):
            failed_at = p.iteration
            raise _divergence(
                learner, p.batch, p.local[: 1 + 2 * steps], p.iteration, first_task, here
            )
        if not math.isfinite(found.largest):
            failed_at = p.iteration
            meta_gradients_finite(learner, p.iteration)

    def settle(p: PendingStats) -> IterationStats:
        """The statistics of an iteration whose optimiser step is applied; a divergence found
        now goes back to the snapshot and runs the iteration again, to name it as before."""
        nonlocal failed_at
        found = p.read()
        if all(math.isfinite(v) for v in [found.loss, *found.alpha, *found.beta, found.largest]):
            return found
        assert snapshot is not None
        snapshot.restore()  # the meta-parameters before this iteration's step
        optimizer.zero_grad(set_to_none=True)
        out = forward(p.batch, p.iteration)
        out.loss.backward()
        local = _stat_parts(out, p.batch.query_y if classify else None)
        again = PendingStats(p.iteration, learner, local, steps, classify, p.batch, local)
        check(again.read(), again)
        failed_at = p.iteration
        raise DivergenceError(
            f"iteration {p.iteration}: non-finite outer loss, hyperparameter mean or "
            "meta-gradient (not seen again when the iteration was run a second time)"
        )

    def record(p: PendingStats, found: IterationStats) -> None:
        nonlocal window
        window.add(found.loss, found.alpha, found.beta, found.accuracy)
        bar.update(1)
        if p.iteration % t.log_every == 0:
            values = window.values()
            log.log("train", p.iteration, values)
            postfix = {"loss": f"{values['loss']:.4f}"}
            if "train_accuracy" in values:
                postfix["acc"] = f"{values['train_accuracy']:.3f}"
            bar.set_postfix(postfix)
            console.train(p.iteration, values)
            window = Window()

    try:
        for iteration in range(start + 1, t.iterations + 1):
            batch = source.sample(config.meta.batch_size).to(device)  # this rank's share
            out = forward(batch, iteration)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            local = _stat_parts(out, batch.query_y if classify else None)
            # Several processes: meta-gradients and statistics averaged in one all_reduce.
            stats, stopping = mean_over_ranks(learner, local, stop.signal is not None, here)
            # The iteration's one host synchronisation: loss, step means, the query accuracy
            # and the largest meta-gradient magnitude (NaN-propagating) read together, now
            # (several processes) or once the device has run on (one process).
            current = PendingStats(iteration, learner, stats, steps, classify, batch, local)
            del out
            if pending is not None:  # the previous iteration's, copied by now
                record(pending, settle(pending))
                pending = None
            if late:
                assert snapshot is not None
                snapshot.take()
            else:
                found = current.read()
                check(found, current)
            if config.meta.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(learner.parameters(), config.meta.grad_clip)
            update()
            last = iteration == t.iterations
            busy = (
                iteration % t.log_every == 0
                or (t.val_every and iteration % t.val_every == 0)
                or iteration % t.checkpoint_every == 0
                or last
                or stop.signal is not None
            )
            if late and not busy:
                pending = current  # read during the next iteration
                continue
            if late:
                found = settle(current)
            record(current, found)
            if t.val_every and iteration % t.val_every == 0:
                best, top = validate(
                    config,
                    run_dir,
                    learner,
                    source,
                    device,
                    iteration,
                    best=best,
                    top=top,
                    window=window,
                    log=log,
                    console=console,
                    checkpoint_state=checkpoint_state,
                    here=here,
                )
            if not here.distributed:  # one process: a signal during validation counts too
                stopping = stop.signal is not None
            if iteration % t.checkpoint_every == 0 or last or stopping:
                meta_parameters_finite(learner, iteration)
                check_same_parameters(learner, iteration, here)
                if here.main:
                    saved = paths["checkpoints"] / checkpoint_name(iteration)
                    save_checkpoint(saved, checkpoint_state(iteration, best, top))
                    prune_checkpoints(paths["checkpoints"], t.keep_last)
                    # top-k files leave only once a checkpoint records the new list (exact resume)
                    prune_top(paths["checkpoints"], {i for _, i in top})
            if stopping and not last:
                break
    except DivergenceError as exc:
        iteration = failed_at if failed_at is not None else iteration
        log.event(iteration, event="diverged", message=str(exc))
        good = None  # a checkpoint is good when it loads, is finite and validates finitely
        if here.main:
            good = last_good_checkpoint(config, paths["checkpoints"], source, device).describe()
        good = broadcast(good, here)  # every rank raises rank 0's message
        error = DivergenceError(f"training diverged: {exc}; {good}; {remedies(config)}")
        raise (shared_error(error) if here.distributed else error) from exc
    finally:
        bar.close()
        log.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not stopping or iteration >= t.iterations:
        return TrainResult(iteration, "finished", best)
    name = signal.Signals(stop.signal or signal.SIGTERM).name
    announce(
        f"stopped by {name} after iteration {iteration}; checkpoint saved to '{saved}'. "
        f"Resume with: alfa train --resume {run_dir}",
        here,
    )
    return TrainResult(iteration, "stopped", best, stop.signal or signal.SIGTERM)
