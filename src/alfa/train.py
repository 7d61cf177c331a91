"""The outer loop, top to bottom: sample a meta-batch, adapt, step the meta-optimiser, log, save.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, TensorBoard
events and ``checkpoints/`` (``step-NNNNNNN.pt``, the last ``train.keep_last`` kept, plus
``best.pt`` by validation). A checkpoint holds everything needed to continue bit for bit: the
meta-learner (with the update rule's meta-parameters), the optimiser, every random generator
(torch, CUDA, Python, NumPy and the task sampler's own), the iteration, the best validation score
and the partial logging window. Resuming drops the log records written after the checkpoint, so
a run killed at any moment and resumed ends exactly as an uninterrupted one.

SIGINT or SIGTERM stops after the current iteration with a checkpoint (a second one stops at
once). A NaN or inf in a loss, a gradient, a generated hyperparameter or a meta-parameter stops
the run with :class:`~alfa.errors.DivergenceError` naming where it appeared, without writing a
checkpoint, so the last good one stays.

While a run trains, ``RUN_DIR/.lock`` holds an advisory lock, so the same run cannot be trained
by two processes at once (the operating system releases it even when the process is killed).
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
from dataclasses import asdict, dataclass, field
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
    list_checkpoints,
    prune_checkpoints,
    prune_top,
    remove_temporaries,
    save_checkpoint,
    top_name,
)
from alfa.config import Config, config_to_dict
from alfa.divergence import diagnose, meta_gradients_finite, meta_parameters_finite
from alfa.errors import AlfaError, DivergenceError
from alfa.evaluate import evaluate
from alfa.meta_learner import MetaLearner, MetaOutput
from alfa.runlog import RunLog
from alfa.runs import load_learner_state
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
    """Running sums between two log lines (checkpointed, so a resumed log is identical)."""

    loss: float = 0.0
    count: int = 0
    alpha: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)

    def add(self, loss: float, alpha: list[float], beta: list[float]) -> None:
        if self.count == 0:
            self.alpha, self.beta = [0.0] * len(alpha), [0.0] * len(beta)
        self.loss += loss
        self.count += 1
        self.alpha = [a + b for a, b in zip(self.alpha, alpha, strict=True)]
        self.beta = [a + b for a, b in zip(self.beta, beta, strict=True)]

    def values(self) -> dict[str, float]:
        out = {"loss": self.loss / self.count}
        for j, (a, b) in enumerate(zip(self.alpha, self.beta, strict=True)):
            out[f"alpha_step{j}"] = a / self.count
            out[f"beta_step{j}"] = b / self.count
        return out


def _iteration_stats(
    learner: nn.Module, out: MetaOutput
) -> tuple[float, list[float], list[float], float]:
    """Outer loss, mean generated alpha and beta of every inner step (over tasks and layers),
    and the largest meta-gradient magnitude (NaN when any is NaN), read in one transfer."""
    steps = len(out.hyperparameters)
    parts = [out.loss.detach().reshape(1)]
    parts += [h.alpha.detach().mean().reshape(1) for h in out.hyperparameters]
    parts += [h.beta.detach().mean().reshape(1) for h in out.hyperparameters]
    grads = [p.grad.detach().abs().amax() for p in learner.parameters() if p.grad is not None]
    if grads:
        parts.append(torch.stack(grads).amax().reshape(1).to(parts[0].dtype))
    values = torch.cat(parts).tolist()
    largest = values[1 + 2 * steps] if grads else 0.0
    return values[0], values[1 : 1 + steps], values[1 + steps : 1 + 2 * steps], largest


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
    if run_dir.exists() and not run_dir.is_dir():
        raise AlfaError(f"run directory '{run_dir}' exists and is not a directory")
    held = [name for name in _RUN_ENTRIES if (run_dir / name).exists()]
    if held:
        raise AlfaError(
            f"run directory '{run_dir}' already holds a run ({', '.join(held)}); continue it with "
            f"'alfa train --resume {run_dir}' or choose another --run-dir"
        )


def _lock(run_dir: Path) -> IO[str] | None:
    """Hold an exclusive lock on the run directory while training (released on exit or kill)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return None
    try:
        handle = open(run_dir / ".lock", "a")  # noqa: SIM115 - held for the whole run
    except OSError as exc:
        raise AlfaError(f"cannot use run directory '{run_dir}': {exc.strerror or exc}") from exc
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise AlfaError(
            f"run directory '{run_dir}' is in use by another 'alfa train' process"
        ) from exc
    return handle


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
        if handle is not None:
            handle.close()
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
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' cannot be resumed with the run's config.yaml: {exc}"
        ) from exc


class _StopRequest:
    """Signal handler state: the first SIGINT/SIGTERM asks for a clean stop, a second aborts."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum


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
    scratch when none was written yet.

    Raises:
        AlfaError: the run directory cannot be used, or a checkpoint cannot be resumed.
        DivergenceError: a NaN or inf appeared; the last good checkpoint is kept.
    """
    run_dir = Path(run_dir)
    paths = run_paths(run_dir)
    if resume and not run_dir.is_dir():
        raise AlfaError(f"run directory '{run_dir}' does not exist")
    if not resume:
        check_new_run_dir(run_dir)  # before any work, so a mistake costs nothing
    device = configure_runtime(config)
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    source = build_source(config)
    learner = build_learner(config, task=source.task, in_channels=source.in_channels).to(device)
    optimizer = build_optimizer(config, learner)
    start, best, window = 0, None, _Window()
    top: list[tuple[float, int]] = []

    lock = _prepare_new_run(config, run_dir) if not resume else _lock(run_dir)
    try:
        if resume:
            remove_temporaries(paths["checkpoints"])
            remove_temporaries(run_dir)
            found = latest_good_checkpoint(paths["checkpoints"])
            if found is not None:
                path, state = found
                _restore(path, state, learner, optimizer, source)
                start, best = int(state["iteration"]), state["best"]
                window = _Window(**state["window"])
                top = [(float(v), int(i)) for v, i in state.get("top", [])]
                prune_top(paths["checkpoints"], set(), after=start)
                print(f"resuming {run_dir} from {path.name} (iteration {start})", file=sys.stderr)
            else:
                print(f"no checkpoint in {run_dir} yet; starting from iteration 0", file=sys.stderr)
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
    finally:
        if lock is not None:
            lock.close()


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
            "window": asdict(window),
            "config": config_to_dict(config),
        }

    stop = _StopRequest()
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, stop) for s in handled}
    bar = tqdm(
        total=t.iterations,
        initial=start,
        desc=config.name or "train",
        unit="it",
        disable=not progress,
        dynamic_ncols=True,
        position=position,
        mininterval=0.2 if sys.stderr.isatty() else 15.0,
    )
    iteration = start
    saved: Path | None = None
    try:
        for iteration in range(start + 1, t.iterations + 1):
            batch = source.sample(config.meta.batch_size).to(device)
            out = learner(batch)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            # The iteration's one host synchronisation: loss, step means and the largest
            # meta-gradient magnitude (NaN-propagating) read together.
            loss, alpha, beta, largest = _iteration_stats(learner, out)
            if not all(math.isfinite(v) for v in [loss, *alpha, *beta]):
                raise diagnose(learner, batch, iteration)
            if not math.isfinite(largest):
                meta_gradients_finite(learner, iteration)
            if config.meta.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(learner.parameters(), config.meta.grad_clip)
            optimizer.step()
            window.add(loss, alpha, beta)
            bar.update(1)
            if iteration % t.log_every == 0:
                values = window.values()
                log.log("train", iteration, values)
                bar.set_postfix(loss=f"{values['loss']:.4f}")
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
        kept = list_checkpoints(paths["checkpoints"])
        where = (
            f"; the last good checkpoint '{kept[-1]}' is kept"
            if kept
            else "; no checkpoint was written yet"
        )
        raise DivergenceError(f"training diverged: {exc}{where}") from exc
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
