"""Plots of a run: learning curves and the generated hyperparameters per step and layer.

The second plot is the paper's Figure 3 in spirit: for fixed test tasks, the distribution over
tasks of the learning rate alpha and weight-decay term beta that the rule produced at each inner
step, for every adapted tensor.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from alfa.runlog import read_metrics
from alfa.runs import load_run

__all__ = ["plot_curves", "plot_hyperparameters", "plot_run"]


def plot_curves(run_dir: Path, out: Path) -> Path:
    """Training loss and validation metric against meta-iterations."""
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if r.get("split") == "train"]
    val = [r for r in records if r.get("split") == "val"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot([r["iteration"] for r in train], [r["loss"] for r in train])
    axes[0].set(xlabel="meta-iteration", ylabel="outer loss", title="training")
    if val:
        metric = "mse" if "mse" in val[0] else "accuracy"
        axes[1].errorbar(
            [r["iteration"] for r in val],
            [r[metric] for r in val],
            yerr=[r.get("ci95", 0.0) for r in val],
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


def plot_hyperparameters(run_dir: Path, out: Path, *, tasks: int = 100) -> Path:
    """Box plots over test tasks of alpha and beta at each inner step, one panel per tensor."""
    config, learner, source, _ = load_run(run_dir)
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
    """Write ``plots/curves.png`` and ``plots/hyperparameters.png`` into the run directory."""
    folder = Path(run_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    return [
        plot_curves(Path(run_dir), folder / "curves.png"),
        plot_hyperparameters(Path(run_dir), folder / "hyperparameters.png", tasks=tasks),
    ]
