"""Plots of a run: learning curves and the generated hyperparameters per step and layer.

The second plot is the paper's Figure 3 in spirit: for fixed test tasks, the distribution over
tasks of the learning rate alpha and weight-decay term beta that the rule produced at each inner
step, for every adapted tensor.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from alfa.config import Config
from alfa.memory import check_memory
from alfa.meta_learner import MetaLearner
from alfa.runlog import read_metrics
from alfa.runs import load_run
from alfa.tasks.source import TaskSource

__all__ = ["plot_curves", "plot_hyperparameters", "plot_run"]


def _number(value: Any) -> float:
    """A logged value as a float (``"nan"`` and ``"inf"`` are logged as text; other text: NaN)."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_curves(run_dir: Path, out: Path, records: list[dict[str, Any]] | None = None) -> Path:
    """Training loss and validation metric against meta-iterations (``records``: the run's
    ``metrics.jsonl``, read when not given)."""
    if records is None:
        records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if r.get("split") == "train" and "loss" in r]
    val = [r for r in records if r.get("split") == "val"]
    metric = "mse" if any("mse" in r for r in val) else "accuracy"
    val = [r for r in val if metric in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot([r["iteration"] for r in train], [_number(r["loss"]) for r in train])
    axes[0].set(xlabel="meta-iteration", ylabel="outer loss", title="training")
    if val:
        axes[1].errorbar(
            [r["iteration"] for r in val],
            [_number(r[metric]) for r in val],
            yerr=[_number(r.get("ci95", 0.0)) for r in val],
            marker="o",
            capsize=3,
        )
        axes[1].set(xlabel="meta-iteration", ylabel=metric, title="validation (95% CI)")
    else:
        axes[1].set_axis_off()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_hyperparameters(
    run_dir: Path,
    out: Path,
    *,
    tasks: int = 100,
    loaded: tuple[Config, MetaLearner, TaskSource, Any] | None = None,
) -> Path:
    """Box plots over test tasks of alpha and beta at each inner step, one panel per tensor
    (``loaded``: what :func:`~alfa.runs.load_run` returns, loaded when not given)."""
    config, learner, source, _ = loaded if loaded is not None else load_run(run_dir)
    batch = next(source.fixed("test", tasks, config.eval.seed, tasks))
    device = next(learner.parameters()).device
    out_meta = learner(batch.to(device), keep_graph=False)
    alpha = torch.stack([h.alpha for h in out_meta.hyperparameters]).cpu()  # [S, T, N]
    beta = torch.stack([h.beta for h in out_meta.hyperparameters]).cpu()
    names = learner.rule.names
    steps = alpha.shape[0]
    fig, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names), 5.2), squeeze=False)
    for k, name in enumerate(names):
        for row, (label, values) in enumerate((("alpha", alpha), ("beta", beta))):
            ax = axes[row][k]
            ax.boxplot([values[j, :, k].numpy() for j in range(steps)], showfliers=False)
            ax.set_xticks(range(1, steps + 1), [str(j) for j in range(steps)])
            ax.set_title(f"{label}: {name}", fontsize=8)
            ax.tick_params(labelsize=7)
            if k == 0:
                ax.set_ylabel(label)
            if row == 1:
                ax.set_xlabel("inner step")
    fig.suptitle(f"generated hyperparameters over {tasks} test tasks ({config.rule.name})")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_run(run_dir: Path, *, tasks: int = 100) -> list[Path]:
    """Write ``plots/curves.png`` and ``plots/hyperparameters.png`` into the run directory.

    The run, its checkpoint and its log are read first, so a folder that is not a run (or a
    run that cannot be plotted) is refused before anything is written.
    """
    from alfa.errors import AlfaError

    run_dir = Path(run_dir)
    loaded = load_run(run_dir)  # refuses a folder that is not a run, or has no checkpoint
    learner = loaded[1]
    check_memory(loaded[0], next(learner.parameters()).device, tasks=tasks, batch=tasks)
    records = read_metrics(run_dir / "metrics.jsonl")
    folder = run_dir / "plots"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlfaError(f"cannot create '{folder}': {exc.strerror or exc}") from exc
    return [
        plot_curves(run_dir, folder / "curves.png", records),
        plot_hyperparameters(run_dir, folder / "hyperparameters.png", tasks=tasks, loaded=loaded),
    ]
