"""The outer loop, top to bottom: sample a meta-batch, adapt, step the meta-optimiser, log, save.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, TensorBoard
events and ``checkpoints/`` (``step-NNNNNNN.pt``, the last ``train.keep_last`` kept, plus
``best.pt`` by validation). A checkpoint holds everything needed to continue bit for bit: the
meta-learner (with the update rule's meta-parameters), the optimiser, every random generator
(torch, CUDA, Python, NumPy and the task sampler's own), the iteration, the best validation score
and the partial logging window. Resuming drops the log records written after the checkpoint, so
a run killed at any moment and resumed ends exactly as an uninterrupted one.

The console (stderr) shows the validation metric with its 95% CI at each validation and, for
classification, the training query accuracy of the last logged window (also logged as
``train_accuracy``). Without a progress bar (``--no-progress``, or stderr is not a terminal, as in
a cluster job's log) one plain line per ``train.log_every`` interval gives the iteration, loss,
training accuracy, iterations per second and the time left (:class:`~alfa.runlog.ConsoleLog`).

SIGINT or SIGTERM stops after the current iteration with a checkpoint (a second one stops at
once). A NaN or inf in a loss, a gradient, a generated hyperparameter or a meta-parameter stops
the run with :class:`~alfa.errors.DivergenceError` naming where it appeared, without writing a
checkpoint, so the last good one stays.

While a run trains, ``RUN_DIR/.lock`` holds an advisory lock, so the same run cannot be trained
by two processes at once (the operating system releases it even when the process is killed). The
file is removed when training ends, normally, with an error or when interrupted.

Resuming compares the run's ``config.yaml`` with the config stored in the checkpoint and refuses
a change of any key but those of :data:`alfa.runs.RESUMABLE_KEYS` (e.g. ``train.iterations``,
which extends a run). It never truncates a log that no checkpoint accounts for.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from alfa.build import build_learner, build_optimizer, configure_runtime
from alfa.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    checkpoint_name,
    latest_good_checkpoint,
    prune_checkpoints,
    prune_top,
    remove_temporaries,
    save_checkpoint,
    top_name,
)
from alfa.config import Config, config_to_dict
from alfa.divergence import diagnose, meta_gradients_finite, meta_parameters_finite
from alfa.durable import is_disk_full
from alfa.errors import AlfaError, ConfigError, DivergenceError
from alfa.evaluate import evaluate
from alfa.execution import check_execution, meta_step
from alfa.last_good import last_good_checkpoint, set_aside_if_damaged
from alfa.memory import check_memory
from alfa.meta_learner import MetaLearner, MetaOutput
from alfa.runlog import ConsoleLog, RunLog, read_metrics
from alfa.runs import (
    changed_keys,
    check_path_names,
    load_learner_state,
    load_run_config,
    resumable,
)
from alfa.tasks.source import TaskSource, build_source

__all__ = ["TrainResult", "check_new_run_dir", "run_paths", "train"]

_RUN_ENTRIES = ("config.yaml", "metrics.jsonl", "checkpoints", "tensorboard")
"""What a run directory holds; any of them present means the folder already holds a run."""


@dataclass
class TrainResult:
    """How :func:`train` ended."""

    iteration: int
    status: str  # "finished" | "stopped"
    best: float | None = None
    signal: int | None = None


@dataclass
class _Window:
    """Running sums between two log lines (checkpointed, so a resumed log is identical).

    ``accuracy`` sums the training query accuracy of the ``accuracy_count`` classification
    iterations of the window (regression has none)."""

    loss: float = 0.0
    count: int = 0
    alpha: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    accuracy: float = 0.0
    accuracy_count: int = 0

    def add(
        self, loss: float, alpha: list[float], beta: list[float], accuracy: float | None = None
    ) -> None:
        if self.count == 0:
            self.alpha, self.beta = [0.0] * len(alpha), [0.0] * len(beta)
        self.loss += loss
        self.count += 1
        self.alpha = [a + b for a, b in zip(self.alpha, alpha, strict=True)]
        self.beta = [a + b for a, b in zip(self.beta, beta, strict=True)]
        if accuracy is not None:
            self.accuracy += accuracy
            self.accuracy_count += 1

    def values(self) -> dict[str, float]:
        out = {"loss": self.loss / self.count}
        if self.accuracy_count:
            out["train_accuracy"] = self.accuracy / self.accuracy_count
        for j, (a, b) in enumerate(zip(self.alpha, self.beta, strict=True)):
            out[f"alpha_step{j}"] = a / self.count
            out[f"beta_step{j}"] = b / self.count
        return out

    def state(self) -> dict[str, Any]:
        """The checkpointed form (the accuracy sums only when the window holds any, so a
        regression window is stored as before)."""
        state: dict[str, Any] = {
            "loss": self.loss,
            "count": self.count,
            "alpha": list(self.alpha),
            "beta": list(self.beta),
        }
        if self.accuracy_count:
            state |= {"accuracy": self.accuracy, "accuracy_count": self.accuracy_count}
        return state


def _iteration_stats(
    learner: nn.Module, out: MetaOutput, query_y: torch.Tensor | None = None
) -> tuple[float, list[float], list[float], float, float | None]:
    """Outer loss, mean generated alpha and beta of every inner step (over tasks and layers),
    the largest meta-gradient magnitude (NaN when any is NaN) and, for classification (when
    ``query_y`` is given), the query accuracy of the adapted learners, read in one transfer."""
    steps = len(out.hyperparameters)
    parts = [out.loss.detach().reshape(1)]
    parts += [h.alpha.detach().mean().reshape(1) for h in out.hyperparameters]
    parts += [h.beta.detach().mean().reshape(1) for h in out.hyperparameters]
    grads = [p.grad.detach().abs().amax() for p in learner.parameters() if p.grad is not None]
    if grads:
        parts.append(torch.stack(grads).amax().reshape(1).to(parts[0].dtype))
    classify = query_y is not None and getattr(learner, "task", None) == "classification"
    if classify:
        hits = out.outputs.detach().argmax(-1) == query_y
        # at least float32, so a half-precision loss does not round the accuracy (torch.cat
        # promotes the other parts losslessly)
        dtype = torch.promote_types(parts[0].dtype, torch.float32)
        parts.append(hits.to(dtype).mean().reshape(1))
    values = torch.cat(parts).tolist()
    largest = values[1 + 2 * steps] if grads else 0.0
    accuracy = values[-1] if classify else None
    return (
        values[0],
        values[1 : 1 + steps],
        values[1 + steps : 1 + 2 * steps],
        largest,
        accuracy,
    )


def run_paths(run_dir: Path) -> dict[str, Path]:
    """The files and folders of a run directory."""
    return {
        "config": run_dir / "config.yaml",
        "checkpoints": run_dir / "checkpoints",
        "best": run_dir / "checkpoints" / "best.pt",
        "metrics": run_dir / "metrics.jsonl",
    }


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse a run directory that already holds a run (or is not a folder).

    Raises:
        AlfaError: naming the folder and how to continue the run in it instead.
    """
    check_path_names(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise AlfaError(f"run directory '{run_dir}' exists and is not a directory")
    held = [name for name in _RUN_ENTRIES if (run_dir / name).exists()]
    if held:
        raise AlfaError(
            f"run directory '{run_dir}' already holds a run ({', '.join(held)}); continue it with "
            f"'alfa train --resume {run_dir}' or choose another --run-dir"
        )


def _same_file(path: Path, handle: IO[str]) -> bool:
    """Whether ``path`` still names the file that ``handle`` has open."""
    try:
        named, held = os.stat(path), os.fstat(handle.fileno())
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _lock(run_dir: Path) -> IO[str] | None:
    """Hold an exclusive lock on the run directory while training (released on exit or kill;
    :func:`_unlock` also removes the file)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return None
    path = run_dir / ".lock"
    for _ in range(100):
        try:
            handle = open(path, "a")  # noqa: SIM115 - held for the whole run
        except OSError as exc:
            raise AlfaError(f"cannot use run directory '{run_dir}': {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise AlfaError(
                f"run directory '{run_dir}' is in use by another 'alfa train' process"
            ) from exc
        if _same_file(path, handle):
            return handle
        # the previous holder removed the file between our open and our lock: lock the new one
        handle.close()
    raise AlfaError(  # pragma: no cover - another process keeps re-creating the file
        f"run directory '{run_dir}' is in use by another 'alfa train' process"
    )


def _unlock(handle: IO[str] | None, run_dir: Path) -> None:
    """Remove ``RUN_DIR/.lock`` (while still holding it, so no other holder loses it) and
    release the lock."""
    if handle is None:
        return
    try:
        path = run_dir / ".lock"
        if _same_file(path, handle):
            path.unlink(missing_ok=True)
    except OSError:  # pragma: no cover - a read-only folder: the stale file is harmless
        pass
    finally:
        handle.close()


def _prepare_new_run(config: Config, run_dir: Path) -> IO[str] | None:
    check_new_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlfaError(f"cannot create run directory '{run_dir}': {exc.strerror or exc}") from exc
    handle = _lock(run_dir)
    try:
        check_new_run_dir(run_dir)  # another process may have started here in the meantime
        text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
        atomic_write_bytes(run_paths(run_dir)["config"], text.encode())
    except BaseException:
        _unlock(handle, run_dir)
        raise
    return handle


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every global generator's state as tensors and plain data (``weights_only`` loads it)."""
    numpy = np.random.get_state(legacy=False)  # the MT19937 key is the one array: a tensor here
    numpy["state"]["key"] = torch.from_numpy(numpy["state"]["key"].astype(np.int64))
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": numpy,
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "python" in state:
        random.setstate(state["python"])
    numpy = state.get("numpy")
    if isinstance(numpy, dict):  # as _rng_state stores it (a tuple in old checkpoints)
        key = np.asarray(numpy["state"]["key"], dtype=np.int64).astype(np.uint32)
        numpy = {**numpy, "state": {**numpy["state"], "key": key}}
    if numpy is not None:
        np.random.set_state(numpy)
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _update_top(
    top: list[tuple[float, int]], metric: str, score: float, iteration: int, k: int
) -> list[tuple[float, int]]:
    """The ``k`` best (score, iteration) pairs after adding this validation."""
    ranked = sorted([*top, (score, iteration)], key=lambda e: e[0], reverse=metric != "mse")
    return ranked[:k]


def _better(metric: str, new: float, best: float | None) -> bool:
    if not math.isfinite(new):
        return False
    if best is None:
        return True
    return new < best if metric == "mse" else new > best


def _restore(
    path: Path,
    state: dict[str, Any],
    learner: MetaLearner,
    optimizer: torch.optim.Optimizer,
    source: TaskSource,
) -> None:
    """Put a checkpoint's training state back, naming the file if it does not fit."""
    load_learner_state(learner, state, path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        source.load_state_dict(state["source"])
        _set_rng_state(state["rng"] if "rng" in state else {"torch": state["torch_rng"]})
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' cannot be resumed with the run's config.yaml: {exc}"
        ) from exc


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


_MISSING = object()


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _training_state(
    path: Path, state: dict[str, Any]
) -> tuple[int, float | None, _Window, list[tuple[float, int]]]:
    """Iteration, best score, logging window and top-k list of a checkpoint, type-checked.

    Raises:
        CheckpointError: naming the file and the key that is missing or of the wrong type.
    """

    def bad(key: str, value: Any, expected: str) -> CheckpointError:
        got = "missing" if value is _MISSING else f"{value!r}"[:60]
        return CheckpointError(
            f"checkpoint '{path}' is not a valid training state: '{key}' is {got}, "
            f"expected {expected}"
        )

    iteration = state.get("iteration", _MISSING)
    if type(iteration) is not int or iteration < 0:
        raise bad("iteration", iteration, "an integer >= 0")
    best = state.get("best", _MISSING)
    if best is not None and not _number(best):
        raise bad("best", best, "a number or None")
    raw = state.get("window", _MISSING)
    fields = {"loss", "count", "alpha", "beta"}
    with_accuracy = fields | {"accuracy", "accuracy_count"}
    if (
        not isinstance(raw, dict)
        or set(raw) not in (fields, with_accuracy)
        or not _number(raw["loss"])
        or type(raw["count"]) is not int
        or raw["count"] < 0
        or not all(
            isinstance(raw[k], list) and all(_number(v) for v in raw[k]) for k in ("alpha", "beta")
        )
        or len(raw["alpha"]) != len(raw["beta"])
        or (
            "accuracy" in raw
            and (
                not _number(raw["accuracy"])
                or type(raw["accuracy_count"]) is not int
                or not 0 <= raw["accuracy_count"] <= raw["count"]
            )
        )
    ):
        raise bad("window", raw, "the logging window {loss, count, alpha, beta[, accuracy]}")
    top = state.get("top", [])
    if not isinstance(top, list) or not all(
        isinstance(e, (list, tuple)) and len(e) == 2 and _number(e[0]) and type(e[1]) is int
        for e in top
    ):
        raise bad("top", top, "a list of [score, iteration] pairs")
    window = _Window(
        float(raw["loss"]),
        raw["count"],
        list(raw["alpha"]),
        list(raw["beta"]),
        float(raw.get("accuracy", 0.0)),
        int(raw.get("accuracy_count", 0)),
    )
    return iteration, best, window, [(float(v), int(i)) for v, i in top]


def _check_config_unchanged(
    config: Config, run_dir: Path, path: Path, state: dict[str, Any]
) -> None:
    """Refuse a config that differs from the checkpoint's in a key that may not change."""
    stored = state.get("config")
    if not isinstance(stored, dict):
        return  # written before checkpoints held their config
    changed = {k: v for k, v in changed_keys(stored, config).items() if not resumable(k)}
    if changed:
        listed = ", ".join(
            f"{key} ({old!r} in the checkpoint, {new!r} now)" for key, (old, new) in changed.items()
        )
        raise ConfigError(
            f"the config of run '{run_dir}' differs from its checkpoint '{path.name}' in {listed}; "
            "only train.iterations, train.log_every and the like may change in a run: undo the "
            "change in config.yaml, or start a new run with it"
        )
    start = int(state["iteration"]) if type(state.get("iteration")) is int else 0
    if config.train.iterations < start:
        raise ConfigError(
            f"config key 'train.iterations' is {config.train.iterations}, below the iteration "
            f"{start} of checkpoint '{path}'; a run cannot be shortened"
        )


def _refuse_lost_checkpoints(config: Config, run_dir: Path, records: list[dict[str, Any]]) -> None:
    """With no periodic checkpoint, refuse to restart a run whose log shows that one existed:
    restarting from iteration 0 would drop every record of ``metrics.jsonl``."""
    paths = run_paths(run_dir)
    last = max((int(r.get("iteration", 0)) for r in records), default=0)
    if last <= config.train.checkpoint_every:
        return  # killed before its first checkpoint: the records are written again, identically
    kept = [p.name for p in sorted(paths["checkpoints"].glob("*.pt"))]
    also = f" ({', '.join(kept)} left)" if kept else ""
    raise AlfaError(
        f"run directory '{run_dir}' has no periodic checkpoint (checkpoints/step-*.pt){also} but "
        f"its metrics.jsonl goes to iteration {last}; resuming would restart from iteration 0 "
        "and drop that log: restore the checkpoints, or start a new run"
    )


def _record_config(config: Config, run_dir: Path) -> None:
    """Write ``config.yaml`` anew when a resumed run changed it (e.g. ``train.iterations``)."""
    try:
        same = load_run_config(run_dir) == config
    except AlfaError:
        same = False
    if not same:
        text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
        atomic_write_bytes(run_paths(run_dir)["config"], text.encode())


def _resume_point(
    config: Config, run_dir: Path
) -> tuple[Path, dict[str, Any], tuple[int, float | None, _Window, list[tuple[float, int]]]] | None:
    """The checkpoint to resume from with its checked training state (None: start at 0),
    after every check that can refuse the resume, before anything is built or written."""
    paths = run_paths(run_dir)
    records = read_metrics(paths["metrics"])  # a damaged log is refused before it is rewritten
    remove_temporaries(paths["checkpoints"])
    remove_temporaries(run_dir)
    found = latest_good_checkpoint(paths["checkpoints"])
    if found is None:
        _refuse_lost_checkpoints(config, run_dir, records)
        _report_damaged_best(paths["best"])
        return None
    path, state = found
    _check_config_unchanged(config, run_dir, path, state)
    point = path, state, _training_state(path, state)
    _report_damaged_best(paths["best"])
    return point


def _report_damaged_best(best: Path) -> None:
    """Say that ``best.pt`` is damaged (moved aside) and go on: a validation better than the
    run's recorded best writes a new one."""
    damaged = set_aside_if_damaged(best)
    if damaged:
        print(
            f"alfa: warning: {damaged}; the next validation better than the run's best writes "
            "a new best.pt ('alfa eval' uses the newest periodic checkpoint until then)",
            file=sys.stderr,
        )


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
    ``config`` may differ from the checkpoint's only in :data:`~alfa.runs.RESUMABLE_KEYS`; a
    change is written to ``config.yaml``. Everything that can refuse a run (memory estimate,
    config, checkpoint, log) is checked before anything is built or written.

    Raises:
        AlfaError: the run directory cannot be used, or a checkpoint or its log cannot be
            resumed.
        ConfigError: the run will not fit in memory, or the config differs from the
            checkpoint's in a key that may not change.
        DivergenceError: a NaN or inf appeared; the last good checkpoint is kept.
    """
    run_dir = Path(run_dir)
    paths = run_paths(run_dir)
    check_path_names(run_dir)
    if resume and not run_dir.is_dir():
        raise AlfaError(f"run directory '{run_dir}' does not exist")
    if not resume:
        check_new_run_dir(run_dir)  # before any work, so a mistake costs nothing
    device = configure_runtime(config)
    check_memory(config, device)  # before allocating anything
    start, best, window = 0, None, _Window()
    top: list[tuple[float, int]] = []
    lock, point = None, None
    try:
        if resume:  # every check that can refuse the resume, before anything is built
            lock = _lock(run_dir)
            point = _resume_point(config, run_dir)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        source = build_source(config)
        learner = build_learner(config, task=source.task, in_channels=source.in_channels)
        learner = learner.to(device)
        check_execution(config.train, learner, device)
        optimizer = build_optimizer(config, learner)
        if not resume:
            lock = _prepare_new_run(config, run_dir)
        elif point is not None:
            path, state, (start, best, window, top) = point
            _restore(path, state, learner, optimizer, source)
            prune_top(paths["checkpoints"], set(), after=start)
            print(f"resuming {run_dir} from {path.name} (iteration {start})", file=sys.stderr)
        else:
            print(f"no checkpoint in {run_dir} yet; starting from iteration 0", file=sys.stderr)
        if resume:
            _record_config(config, run_dir)
        return _loop(
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
        )
    except AlfaError as exc:
        if is_disk_full(exc) and paths["config"].is_file():  # what was written before stays
            raise type(exc)(f"{exc}; free space, then: alfa train --resume {run_dir}") from exc
        raise
    finally:
        _unlock(lock, run_dir)


def _loop(
    config: Config,
    run_dir: Path,
    learner: MetaLearner,
    optimizer: torch.optim.Optimizer,
    source: TaskSource,
    device: torch.device,
    start: int,
    best: float | None,
    window: _Window,
    top: list[tuple[float, int]],
    *,
    resume: bool,
    progress: bool,
    position: int | None,
) -> TrainResult:
    paths = run_paths(run_dir)
    t = config.train
    log = RunLog(run_dir, resume_iteration=start if resume else None)

    def checkpoint_state(iteration: int) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "learner": learner.state_dict(),
            "optimizer": optimizer.state_dict(),
            "source": source.state_dict(),
            "rng": _rng_state(device),
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
        disable=plain,
        dynamic_ncols=True,
        position=position,
        mininterval=0.2,
    )
    console = ConsoleLog(
        config.name or "train",
        t.iterations,
        start,
        plain=plain,
        write=None if plain else lambda line: tqdm.write(line, file=sys.stderr),
    )
    iteration = start
    saved: Path | None = None
    forward = meta_step(learner, t, device)  # eager, or compiled (train.compile)
    try:
        for iteration in range(start + 1, t.iterations + 1):
            batch = source.sample(config.meta.batch_size).to(device)
            out = forward(batch, iteration)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            # The iteration's one host synchronisation: loss, step means, the largest
            # meta-gradient magnitude (NaN-propagating) and the query accuracy read together.
            query_y = batch.query_y if learner.task == "classification" else None
            loss, alpha, beta, largest, accuracy = _iteration_stats(learner, out, query_y)
            if not all(math.isfinite(v) for v in [loss, *alpha, *beta]):
                raise diagnose(learner, batch, iteration)
            if not math.isfinite(largest):
                meta_gradients_finite(learner, iteration)
            if config.meta.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(learner.parameters(), config.meta.grad_clip)
            optimizer.step()
            window.add(loss, alpha, beta, accuracy)
            bar.update(1)
            if iteration % t.log_every == 0:
                values = window.values()
                log.log("train", iteration, values)
                postfix = {"loss": f"{values['loss']:.4f}"}
                if "train_accuracy" in values:
                    postfix["acc"] = f"{values['train_accuracy']:.3f}"
                bar.set_postfix(postfix)
                console.train(iteration, values)
                window = _Window()
            if t.val_every and iteration % t.val_every == 0:
                result = evaluate(
                    learner,
                    source,
                    split="val",
                    tasks=t.val_tasks,
                    seed=config.eval.seed,
                    batch=config.eval.batch,
                    first_order=config.eval.first_order,
                    device=device,
                )
                metric, mean = result["metric"], result["mean"]
                log.log("val", iteration, {metric: mean, "ci95": result["ci95"]})
                partial = window.values().get("train_accuracy") if window.count else None
                console.validation(
                    iteration,
                    metric,
                    mean,
                    result["ci95"],
                    partial if console.train_accuracy is None else None,
                )
                if not math.isfinite(mean):
                    print(
                        f"alfa: warning: iteration {iteration}: validation {metric} is {mean}; "
                        "not counted as the best",
                        file=sys.stderr,
                    )
                elif _better(metric, mean, best):
                    meta_parameters_finite(learner, iteration)
                    best = mean
                    save_checkpoint(paths["best"], checkpoint_state(iteration))
                if math.isfinite(mean) and t.keep_best > 1:
                    top = _update_top(top, metric, mean, iteration, t.keep_best)
                    if any(i == iteration for _, i in top):
                        state = checkpoint_state(iteration) | {"score": mean}
                        save_checkpoint(paths["checkpoints"] / top_name(iteration), state)
            last = iteration == t.iterations
            stopping = stop.signal is not None
            if iteration % t.checkpoint_every == 0 or last or stopping:
                meta_parameters_finite(learner, iteration)
                saved = paths["checkpoints"] / checkpoint_name(iteration)
                save_checkpoint(saved, checkpoint_state(iteration))
                prune_checkpoints(paths["checkpoints"], t.keep_last)
                # top-k files leave only once a checkpoint records the new list (exact resume)
                prune_top(paths["checkpoints"], {i for _, i in top})
            if stopping and not last:
                break
    except DivergenceError as exc:
        log.event(iteration, event="diverged", message=str(exc))
        good = last_good_checkpoint(config, paths["checkpoints"], source, device)
        raise DivergenceError(f"training diverged: {exc}; {good.describe()}") from exc
    finally:
        bar.close()
        log.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop.signal is not None and iteration < t.iterations:
        name = signal.Signals(stop.signal).name
        print(
            f"stopped by {name} after iteration {iteration}; checkpoint saved to '{saved}'. "
            f"Resume with: alfa train --resume {run_dir}",
            file=sys.stderr,
            flush=True,
        )
        return TrainResult(iteration, "stopped", best, stop.signal)
    return TrainResult(iteration, "finished", best)
