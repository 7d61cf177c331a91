"""``omniglot_protocol.png`` (or a variant's): the protocol's table as a figure.

One row of two panels for each number of ways that has a validation curve:

- left, the validation accuracy of every cell along its meta-iterations (one colour per row of
  the table, one line per seed), with the checkpoint that selection chose marked by a dot and a
  run that diverged ending in a cross: where rows separate, and whether they are still climbing
  when the budget ends;
- right, each seed's test accuracy on the 600 paired episodes with its 95% CI, row by row: the
  spread over seeds beside the spread over episodes (a run that diverged after a checkpoint
  was tested there, as in the table, and is drawn as a cross).

Everything is drawn from the rows of ``omniglot_protocol.json`` (their ``val_curve``,
``checkpoint_iteration``, ``accuracy`` and ``ci95``), so ``--report-only`` redraws it from the
shipped table alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alfa.paper.omniglot_cells import METHODS, SEEDS
from alfa.paper.omniglot_report import scored, ways_with_curves

__all__ = ["SHORT_LABELS", "draw"]

SHORT_LABELS = {
    "maml": "MAML",
    "learned_fixed": "learned-fixed",
    "alfa_maml": "ALFA+MAML",
    "alfa_random": "ALFA+random",
    "alfa_maml_stable": "ALFA+MAML\nstable gen.",
}
"""Row names short enough for an axis."""


def draw(rows: list[dict[str, Any]], out: Path, title: str) -> Path | None:
    """Draw the figure of ``rows`` (rows of ``omniglot_protocol.json``) into ``out``; None, and
    nothing written, when no row has a validation curve."""
    shown = ways_with_curves(rows)
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(METHODS)}
    fig, axes = plt.subplots(
        len(shown),
        2,
        figsize=(11, 3.6 * len(shown) + 0.5),
        squeeze=False,
        gridspec_kw={"width_ratios": (3, 2)},
    )
    for (curves, tests), ways in zip(axes, shown, strict=True):
        cells = [r for r in rows if r["ways"] == ways]
        _validation_panel(curves, cells, colours)
        curves.set_title(f"{ways}-way 1-shot: validation accuracy (200 tasks)", fontsize=9)
        _test_panel(tests, cells, colours)
        tests.set_title(f"{ways}-way 1-shot: test accuracy, 600 paired episodes", fontsize=9)
    handles = [
        plt.Line2D([], [], color=colours[m], lw=2, label=SHORT_LABELS[m].replace("\n", " "))
        for m in METHODS
        if any(r["method"] == m for r in rows)
    ]
    handles += [
        plt.Line2D([], [], color="grey", ls="", marker="o", ms=4, label="tested checkpoint"),
        plt.Line2D([], [], color="grey", ls="", marker="x", ms=5, label="diverged"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / (3.6 * len(shown) + 0.5), 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _validation_panel(ax: Any, cells: list[dict[str, Any]], colours: dict[str, Any]) -> None:
    styles = dict(zip(SEEDS, ("-", "--", ":"), strict=True))
    for row in cells:
        curve = row.get("val_curve") or []
        if not curve:
            continue
        its, acc = zip(*curve, strict=True)
        colour = colours[row["method"]]
        ax.plot(its, acc, styles.get(row["seed"], "-"), color=colour, lw=1.1, alpha=0.9)
        if row.get("diverged"):
            ax.plot(its[-1], acc[-1], "x", color=colour, ms=6)
        elif row.get("checkpoint_iteration") in its:
            k = its.index(row["checkpoint_iteration"])
            ax.plot(its[k], acc[k], "o", color=colour, ms=4)
    ax.set_xlabel("meta-iteration (seeds 0, 1, 2: solid, dashed, dotted)", fontsize=8)
    ax.set_ylabel("accuracy (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _test_panel(ax: Any, cells: list[dict[str, Any]], colours: dict[str, Any]) -> None:
    methods = [m for m in METHODS if any(r["method"] == m for r in cells)]
    for x, method in enumerate(methods):
        for row in cells:
            if row["method"] != method or not scored(row):
                continue
            offset = (row["seed"] - 1) * 0.18
            ax.errorbar(
                x + offset,
                row["accuracy"],
                yerr=row.get("ci95") or 0.0,
                fmt="x" if row.get("diverged") else "o",
                ms=4,
                color=colours[method],
                capsize=2,
                lw=1,
            )
    ax.set_xticks(range(len(methods)), [SHORT_LABELS[m] for m in methods], fontsize=7)
    ax.set_xlim(-0.5, len(methods) - 0.5)
    ax.set_ylabel("accuracy (%), seeds 0, 1, 2 left to right", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
