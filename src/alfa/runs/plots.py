"""Plots of a run: learning curves and the generated hyperparameters per step and layer.

The second plot is the paper's Figure 3: for fixed test tasks, the learning rate alpha and the
weight-decay term beta that the rule produced at each inner step for every adapted tensor (mean
and standard deviation over tasks), alpha in one panel and beta in another with the tensors along
x and one series per step, readable for any backbone; its values are written as CSV beside it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from alfa.config import Config
from alfa.engine.meta_learner import MetaLearner
from alfa.runs.memory import check_memory
from alfa.runs.reopen import load_run
from alfa.runs.runlog import read_metrics
from alfa.tasks.source import TaskSource

__all__ = [
    "CSV_COLUMNS",
    "draw_hyperparameters",
    "hyperparameter_table",
    "plot_curves",
    "plot_hyperparameters",
    "plot_run",
    "write_hyperparameter_csv",
]

CSV_COLUMNS = ["step", "layer", "alpha_mean", "alpha_std", "beta_mean", "beta_std"]
"""Columns of ``plots/hyperparameters.csv``: one row per inner step and adapted tensor, mean and
standard deviation over the evaluated tasks."""


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
    """Training loss and validation metric against meta-iterations, with the training accuracy
    for classification (``records``: the run's ``metrics.jsonl``, read when not given)."""
    if records is None:
        records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if r.get("split") == "train" and "loss" in r]
    val = [r for r in records if r.get("split") == "val"]
    metric = "mse" if any("mse" in r for r in val) else "accuracy"
    val = [r for r in val if metric in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot([r["iteration"] for r in train], [_number(r["loss"]) for r in train])
    axes[0].set(xlabel="meta-iteration", ylabel="outer loss", title="training")
    trained = [r for r in train if "train_accuracy" in r] if metric == "accuracy" else []
    if val:
        axes[1].errorbar(
            [r["iteration"] for r in val],
            [_number(r[metric]) for r in val],
            yerr=[_number(r.get("ci95", 0.0)) for r in val],
            marker="o",
            capsize=3,
            label="validation (95% CI)",
        )
        title = "validation (95% CI)"
        if trained:  # classification: the training accuracy of each logged window beside it
            axes[1].plot(
                [r["iteration"] for r in trained],
                [_number(r["train_accuracy"]) for r in trained],
                color="0.5",
                linewidth=1,
                label="training (meta-batch queries)",
            )
            axes[1].legend(fontsize=8)
            title = "accuracy"
        axes[1].set(xlabel="meta-iteration", ylabel=metric, title=title)
    else:
        axes[1].set_axis_off()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def hyperparameter_table(
    alpha: torch.Tensor, beta: torch.Tensor, names: Sequence[str]
) -> list[dict[str, Any]]:
    """Mean and standard deviation over tasks of the generated ``alpha`` and ``beta``
    (``[steps, tasks, tensors]``), one row per inner step and adapted tensor (step-major)."""
    alpha, beta = alpha.double(), beta.double()
    rows = []
    for j in range(alpha.shape[0]):
        for k, name in enumerate(names):
            rows.append(
                {
                    "step": j,
                    "layer": name,
                    "alpha_mean": float(alpha[j, :, k].mean()),
                    "alpha_std": float(alpha[j, :, k].std(unbiased=False)),
                    "beta_mean": float(beta[j, :, k].mean()),
                    "beta_std": float(beta[j, :, k].std(unbiased=False)),
                }
            )
    return rows


def write_hyperparameter_csv(rows: list[dict[str, Any]], out: Path) -> Path:
    """The rows of :func:`hyperparameter_table` as CSV (columns :data:`CSV_COLUMNS`)."""
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    return out


def draw_hyperparameters(
    rows: list[dict[str, Any]], out: Path, *, title: str = "generated hyperparameters"
) -> Path:
    """Two panels, alpha above beta: x is the adapted tensor (layer) in the order of the
    network, one series per inner step (mean over tasks, bars: one standard deviation)."""
    names = list(dict.fromkeys(r["layer"] for r in rows))
    steps = sorted({r["step"] for r in rows})
    n = len(names)
    width = max(7.0, 0.55 * n + 3.0)
    fig, axes = plt.subplots(2, 1, figsize=(width, 7.0), sharex=True)
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(steps), 1)))
    spread = 0.5 / max(len(steps), 1)
    x = np.arange(n, dtype=float)
    for ax, label in zip(axes, ("alpha", "beta"), strict=True):
        for i, step in enumerate(steps):
            by_name = {r["layer"]: r for r in rows if r["step"] == step}
            mean = [by_name[name][f"{label}_mean"] for name in names]
            std = [by_name[name][f"{label}_std"] for name in names]
            offset = (i - (len(steps) - 1) / 2) * spread
            ax.errorbar(
                x + offset,
                mean,
                yerr=std,
                marker="o",
                markersize=4,
                linewidth=1,
                capsize=2,
                color=colours[i],
                label=f"step {step}",
            )
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
        for boundary in x[:-1] + 0.5:
            ax.axvline(boundary, color="0.9", linewidth=0.6, zorder=0)
    axes[0].set_title("learning rate alpha (mean \u00b1 std over tasks)", fontsize=10)
    axes[1].set_title("weight-decay term beta (mean \u00b1 std over tasks)", fontsize=10)
    axes[0].legend(  # outside the panels, so it never hides a point
        title="inner step", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    axes[1].set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    axes[1].set_xlabel("adapted tensor (input to output)")
    axes[1].set_xlim(-0.6, n - 0.4)
    fig.suptitle(title, fontsize=11)
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
    csv_out: Path | None = None,
) -> Path:
    """The paper's Figure 3: alpha and beta that the rule generated at each inner step for
    each adapted tensor, over ``tasks`` fixed test tasks (``loaded``: what
    :func:`~alfa.runs.reopen.load_run` returns, loaded when not given). The plotted values are also
    written as CSV to ``csv_out`` (default: ``out`` with the suffix ``.csv``)."""
    config, learner, source, _ = loaded if loaded is not None else load_run(run_dir)
    batch = next(source.fixed("test", tasks, config.eval.seed, tasks))
    device = next(learner.parameters()).device
    out_meta = learner(batch.to(device), keep_graph=False)
    alpha = torch.stack([h.alpha.detach() for h in out_meta.hyperparameters]).cpu()  # [S, T, N]
    beta = torch.stack([h.beta.detach() for h in out_meta.hyperparameters]).cpu()
    rows = hyperparameter_table(alpha, beta, learner.rule.names)
    write_hyperparameter_csv(rows, csv_out if csv_out is not None else out.with_suffix(".csv"))
    title = (
        f"generated hyperparameters per inner step and layer\n"
        f"{config.rule.name} rule, {config.model.name}, {tasks} test tasks"
    )
    return draw_hyperparameters(rows, out, title=title)


def plot_run(run_dir: Path, *, tasks: int = 100) -> list[Path]:
    """Write ``plots/curves.png``, ``plots/hyperparameters.png`` and the values it plots,
    ``plots/hyperparameters.csv`` (:data:`CSV_COLUMNS`), into the run directory.

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
    csv_path = folder / "hyperparameters.csv"
    return [
        plot_curves(run_dir, folder / "curves.png", records),
        plot_hyperparameters(
            run_dir, folder / "hyperparameters.png", tasks=tasks, loaded=loaded, csv_out=csv_path
        ),
        csv_path,
    ]
