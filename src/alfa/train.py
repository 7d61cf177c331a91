"""The outer loop, top to bottom: sample a meta-batch, adapt, step the meta-optimiser, log, save.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, TensorBoard
events and ``checkpoints/`` (``step-NNNNNNN.pt``, the last ``train.keep_last`` kept, plus
``best.pt`` by validation). A checkpoint holds everything needed to continue bit for bit: the
meta-learner, the optimiser, every random generator and the partial logging window. SIGINT or
SIGTERM stops after the current iteration with a checkpoint; a NaN or inf stops the run without
writing anything, so the last good checkpoint stays.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from alfa.build import build_learner, build_optimizer, resolve_device
from alfa.checkpoint import (
    atomic_write_bytes,
    checkpoint_name,
    latest_good_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    save_checkpoint,
)
from alfa.config import Config, config_to_dict
from alfa.errors import AlfaError, DivergenceError
from alfa.evaluate import evaluate
from alfa.meta_learner import MetaLearner, MetaOutput
from alfa.runlog import RunLog
from alfa.tasks.source import build_source
from alfa.typing import TaskBatch

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
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

    def add(self, loss: float, out: MetaOutput) -> None:
        alpha = [float(h.alpha.detach().mean()) for h in out.hyperparameters]
        beta = [float(h.beta.detach().mean()) for h in out.hyperparameters]
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


def run_paths(run_dir: Path) -> dict[str, Path]:
    return {
        "config": run_dir / "config.yaml",
        "checkpoints": run_dir / "checkpoints",
        "best": run_dir / "checkpoints" / "best.pt",
        "metrics": run_dir / "metrics.jsonl",
    }


def _prepare_new_run(config: Config, run_dir: Path) -> None:
    paths = run_paths(run_dir)
    if paths["config"].exists() or list_checkpoints(paths["checkpoints"]):
        raise AlfaError(
            f"run directory '{run_dir}' already holds a run; continue it with "
            f"'alfa train --resume {run_dir}' or choose another --run-dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    atomic_write_bytes(paths["config"], text.encode())


def _diagnose(learner: MetaLearner, batch: TaskBatch, iteration: int) -> DivergenceError:
    """Re-run a diverged meta-batch with per-step checks to name the step, layer and task."""
    try:
        out = learner(batch, check=True)
    except DivergenceError as exc:
        return DivergenceError(f"iteration {iteration}: {exc}")
    bad = (~torch.isfinite(out.query_losses)).nonzero()
    task = int(bad[0, 0]) if bad.numel() else 0
    return DivergenceError(f"iteration {iteration}: non-finite query loss, task {task}")


def _outer_gradients_finite(learner: MetaLearner, iteration: int) -> None:
    for name, p in learner.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            raise DivergenceError(f"iteration {iteration}: non-finite meta-gradient of '{name}'")


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new < best if metric == "mse" else new > best


def train(
    config: Config,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    position: int | None = None,
) -> TrainResult:
    """Meta-train as ``config`` says, into ``run_dir`` (continuing it when ``resume``)."""
    run_dir = Path(run_dir)
    paths = run_paths(run_dir)
    if not resume:
        _prepare_new_run(config, run_dir)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.train.device)
    source = build_source(config)
    learner = build_learner(config, task=source.task, in_channels=source.in_channels).to(device)
    optimizer = build_optimizer(config, learner)
    start, best, window = 0, None, _Window()

    if resume:
        found = latest_good_checkpoint(paths["checkpoints"])
        if found is not None:
            path, state = found
            learner.load_state_dict(state["learner"])
            optimizer.load_state_dict(state["optimizer"])
            source.load_state_dict(state["source"])
            torch.set_rng_state(state["torch_rng"])
            start, best = state["iteration"], state["best"]
            window = _Window(**state["window"])
            print(f"resuming {run_dir} from {path.name} (iteration {start})", file=sys.stderr)
        else:
            print(f"no checkpoint in {run_dir}; starting from iteration 0", file=sys.stderr)
    log = RunLog(run_dir, resume_iteration=start if resume else None)

    def checkpoint_state(iteration: int) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "learner": learner.state_dict(),
            "optimizer": optimizer.state_dict(),
            "source": source.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best": best,
            "window": window.__dict__.copy(),
            "config": config_to_dict(config),
        }

    stop: dict[str, int | None] = {"signal": None}

    def request_stop(signum: int, _frame: Any) -> None:
        stop["signal"] = signum

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    t = config.train
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
    try:
        for iteration in range(start + 1, t.iterations + 1):
            batch = source.sample(config.meta.batch_size).to(device)
            out = learner(batch)
            loss = float(out.loss.detach())
            if not math.isfinite(loss):
                raise _diagnose(learner, batch, iteration)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            _outer_gradients_finite(learner, iteration)
            if config.meta.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(learner.parameters(), config.meta.grad_clip)
            optimizer.step()
            window.add(loss, out)
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
                log.log(
                    "val", iteration, {result["metric"]: result["mean"], "ci95": result["ci95"]}
                )
                if _better(result["metric"], result["mean"], best):
                    best = result["mean"]
                    save_checkpoint(paths["best"], checkpoint_state(iteration))
            last = iteration == t.iterations
            if iteration % t.checkpoint_every == 0 or last or stop["signal"] is not None:
                save_checkpoint(
                    paths["checkpoints"] / checkpoint_name(iteration), checkpoint_state(iteration)
                )
                prune_checkpoints(paths["checkpoints"], t.keep_last)
            if stop["signal"] is not None:
                break
    except DivergenceError as exc:
        log.event(iteration, event="diverged", message=str(exc))
        kept = list_checkpoints(paths["checkpoints"])
        where = f"; last good checkpoint: {kept[-1]}" if kept else "; no checkpoint was written yet"
        raise DivergenceError(f"training diverged: {exc}{where}") from exc
    finally:
        bar.close()
        log.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop["signal"] is not None:
        name = signal.Signals(stop["signal"]).name
        print(
            f"stopped by {name} at iteration {iteration}; checkpoint saved. "
            f"Resume with: alfa train --resume {run_dir}",
            file=sys.stderr,
        )
        return TrainResult(iteration, "stopped", best, stop["signal"])
    time.sleep(0)  # let tqdm's monitor thread finish cleanly
    return TrainResult(iteration, "finished", best)
