"""``results/adaptivity.{md,json,png}``: the generator-switch ablation of Table 8 and the
diagnostics of :mod:`alfa.paper.adaptivity` on every shipped ALFA cell.

Reads ``results/table8.json`` and the cells shipped under ``results/table8/`` (trains nothing):

- **selection by validation**: each row's best-checkpoint validation MSE (200 fixed validation
  tasks, from the shipped ``metrics.jsonl``), mean over the seeds that have a checkpoint, with
  the number of seeds that diverged first. A switch is recommended only when it has the lower
  validation MSE than ALFA+MAML on every network and diverges no more often; the test MSEs and
  the paired differences on the test tasks are shown beside it, never used to choose;
- **diagnostics** (:func:`alfa.paper.adaptivity.diagnose_run`) of each ALFA cell on its validation
  tasks, and a plot of the generated learning rates against the task amplitude.

Run: ``python scripts/adaptivity.py`` (``--results`` another folder of ``table8.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from alfa.errors import AlfaError
from alfa.paper.provenance import source_commit
from alfa.paper.table8_cells import ADAPTIVITY, LABELS, cell_key, row_key

__all__ = ["draw_panels", "main", "selection", "write"]

ROWS = ("maml", "learned_fixed", "alfa_maml", "alfa_maml_official", *ADAPTIVITY)


def _val_mse(cell: Path, iteration: int) -> float | None:
    """The validation MSE logged at ``iteration`` (the best checkpoint's)."""
    from alfa.runs.runlog import read_metrics

    for record in read_metrics(cell / "metrics.jsonl"):
        if record.get("split") == "val" and record.get("iteration") == iteration:
            return float(record["mse"])
    return None


def selection(doc: dict[str, Any], evidence: Path) -> list[dict[str, Any]]:
    """Per (net, shots, method) of :data:`ROWS`: validation and test MSE over seeds, divergences
    and the paired test differences against learned-fixed and ALFA+MAML."""
    out = []
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in doc["rows"]:
        if r["method"] in ROWS and r["shots"] == 5:
            groups.setdefault((r["net"], r["shots"], r["method"]), []).append(r)
    for (net, shots, method), rows in sorted(
        groups.items(), key=lambda g: (g[0][0], ROWS.index(g[0][2]))
    ):
        val = {}
        for r in rows:
            if r["mse"] is not None:
                key = cell_key(net, shots, method, r["seed"])
                val[r["seed"]] = _val_mse(evidence / key, r["checkpoint_iteration"])
        test = [r["mse"] for r in rows if r["mse"] is not None]
        pairs = {
            p["b"]: p
            for p in doc.get("paired", [])
            if (p["net"], p["shots"], p["a"]) == (net, shots, method)
        }
        out.append(
            {
                "net": net,
                "shots": shots,
                "method": method,
                "seeds_run": len(rows),
                "seeds_without_score": sum(r["mse"] is None for r in rows),
                "val_mse_by_seed": {str(k): v for k, v in sorted(val.items())},
                "val_mean": statistics.fmean(v for v in val.values() if v is not None)
                if val
                else None,
                "test_mean": statistics.fmean(test) if test else None,
                "test_std": statistics.stdev(test) if len(test) > 1 else None,
                "vs_learned_fixed": _pair(pairs.get("learned_fixed")),
                "vs_alfa_maml": _pair(pairs.get("alfa_maml")),
            }
        )
    return out


def _pair(p: dict[str, Any] | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "mean_over_seeds": p["mean_over_seeds"],
        "std_over_seeds": p["std_over_seeds"],
        "seeds": len(p["per_seed"]),
        "seeds_a_better_beyond_ci": p["seeds_a_better_beyond_ci"],
        "seeds_b_better_beyond_ci": p["seeds_b_better_beyond_ci"],
    }


def recommended(rows: list[dict[str, Any]]) -> list[str]:
    """The switches with a lower validation MSE than ALFA+MAML on every network, diverging no
    more often (the selection rule of the module docstring)."""
    by = {(r["net"], r["method"]): r for r in rows}
    nets = sorted({r["net"] for r in rows})
    winners = []
    for method in ADAPTIVITY:
        ok = bool(nets)
        for net in nets:
            mine, base = by.get((net, method)), by.get((net, "alfa_maml"))
            if mine is None or base is None or mine["val_mean"] is None or base["val_mean"] is None:
                ok = False
                break
            fewer = mine["seeds_without_score"] <= base["seeds_without_score"]
            ok = ok and fewer and mine["val_mean"] < base["val_mean"] and mine["seeds_run"] >= 3
        if ok:
            winners.append(method)
    return winners


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _pair_cell(p: dict[str, Any] | None) -> str:
    if p is None:
        return "-"
    n = p["seeds"]
    return (
        f"{p['mean_over_seeds']:+.3f} +- {p['std_over_seeds']:.3f} "
        f"({p['seeds_a_better_beyond_ci']}/{n} better, {p['seeds_b_better_beyond_ci']}/{n} worse)"
    )


def write(results: Path, tasks: int = 200) -> dict[str, Any]:
    """Write ``adaptivity.json``, ``adaptivity.md`` and ``adaptivity.png`` into ``results``."""
    from alfa.paper.adaptivity import diagnose_run
    from alfa.runs.checkpoint import atomic_write_bytes

    json_path = results / "table8.json"
    if not json_path.is_file():
        raise AlfaError(f"'{json_path}' does not exist; run scripts/table8.py first")
    doc = json.loads(json_path.read_text())
    evidence = results / "table8"
    rows = selection(doc, evidence)
    diagnostics = []
    for r in doc["rows"]:
        key = row_key(r)
        cell = evidence / key
        alfa = r["method"].startswith("alfa_maml") and not r["method"].endswith("_noclip")
        if alfa and r["shots"] == 5 and (cell / "checkpoints" / "best.pt").is_file():
            diagnostics.append(
                {
                    "net": r["net"],
                    "method": r["method"],
                    "seed": r["seed"],
                    **diagnose_run(cell, tasks),
                }
            )
    report = {
        "selection": rows,
        "recommended": recommended(rows),
        "diagnostics": diagnostics,
        "validation_tasks": tasks,
        "source": source_commit(),
        "command": "python scripts/adaptivity.py"
        + ("" if results == Path("results") else f" --results {results}"),
        "table8_source": doc.get("source"),
    }
    atomic_write_bytes(results / "adaptivity.json", (json.dumps(report, indent=1) + "\n").encode())
    atomic_write_bytes(results / "adaptivity.md", _markdown(report).encode())
    _plot(evidence, results / "adaptivity.png", tasks)
    return report


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Task adaptivity on sinusoid regression: generator switches and diagnostics",
        "",
        "5-shot Table 8 cells (`results/table8.md`), every row trained under the same protocol "
        "and outer optimiser. What the switches are and why: "
        "[docs/adaptivity.md](../docs/adaptivity.md).",
        "",
        "## Selection by validation",
        "",
        "Validation MSE: the best checkpoint's, on 200 fixed validation tasks, mean over the "
        "seeds that have one (a seed that diverged before its first checkpoint has none and is "
        "counted). A switch is recommended only with the lower validation MSE than ALFA+MAML on "
        "every network and no more divergences. Test columns are for reading, not choosing: "
        "mean +- std over seeds, and the paired per-task test difference (a - b) mean +- std "
        "over seeds, with the seeds where it excludes zero either way.",
        "",
        "| net | method | seeds without score/run | validation MSE | test MSE "
        "| vs learned-fixed (test, paired) | vs ALFA+MAML (test, paired) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["selection"]:
        test = "-" if r["test_mean"] is None else f"{r['test_mean']:.3f} +- {_fmt(r['test_std'])}"
        lines.append(
            f"| {r['net']} | {r['method']} | {r['seeds_without_score']}/{r['seeds_run']} "
            f"| {_fmt(r['val_mean'])} | {test} | {_pair_cell(r['vs_learned_fixed'])} "
            f"| {_pair_cell(r['vs_alfa_maml'])} |"
        )
    winners = report["recommended"]
    lines += [
        "",
        "**Recommended by validation:** "
        + (", ".join(f"`{m}` ({LABELS[m]})" for m in winners) if winners else "none")
        + ".",
        "",
        "## Diagnostics of each ALFA cell (200 validation tasks)",
        "",
        "Knock-out: the learner's generated alpha and beta replaced at every step by their mean "
        "over the tasks (a task-independent schedule), paired over the same tasks; negative: "
        "adaptivity helps. Spread: std over tasks / |mean|, median over steps and layers. R^2: "
        "cross-validated ridge prediction of the task amplitude from the step-0 learning state, "
        "from the values generated from it, and from the log of the step-0 gradients' "
        "layer-wise root mean squares. State scale ratio: the largest spread over tasks of a "
        "step-0 state feature over the smallest (features that vary). Negative alpha: share of "
        "learning rates below 0 over tasks, steps and layers.",
        "",
        "| net | method | seed | val MSE | task-averaged | adaptive - averaged | tasks lower "
        "| alpha spread | beta spread | R^2 state | R^2 generated | R^2 gradient RMS "
        "| state scale ratio | negative alpha | max abs alpha |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in report["diagnostics"]:
        lines.append(
            f"| {d['net']} | {d['method']} | {d['seed']} | {d['mse']:.3f} "
            f"| {d['mse_task_averaged']:.3f} "
            f"| {d['adaptive_minus_averaged']:+.3f} +- {d['adaptive_minus_averaged_ci95']:.3f} "
            f"| {100 * d['share_tasks_adaptive_lower']:.0f}% "
            f"| {d['alpha_spread_over_tasks']:.2f} | {d['beta_spread_over_tasks']:.2f} "
            f"| {_fmt(d.get('r2_amplitude_from_state_step0'), '.2f')} "
            f"| {d['r2_amplitude_from_generated_step0']:.2f} "
            f"| {d['r2_amplitude_from_gradient_rms_step0']:.2f} "
            f"| {_fmt(d.get('state_spread_ratio_step0'), '.0f')} "
            f"| {100 * d['negative_alpha_share']:.0f}% | {d['largest_abs_alpha']:.2f} |"
        )
    src = report["source"]
    table8_commit = (report["table8_source"] or {}).get("commit")
    lines += [
        "",
        "![generated learning rates against amplitude](adaptivity.png)",
        "",
        f"Produced by `{report['command']}` at commit `{src['commit']}`"
        + (f" (modified: {', '.join(src['modified_src'])})" if src.get("modified_src") else "")
        + f", from `results/table8.json` written at commit `{table8_commit}`.",
    ]
    return "\n".join(lines) + "\n"


def _plot(evidence: Path, out: Path, tasks: int) -> None:
    """Step-0 learning rate of each layer against the amplitude, seed 0 of 40x2 5-shot, for
    ALFA+MAML and each switch that was run."""
    from alfa.paper.adaptivity import record, validation_tasks
    from alfa.runs.reopen import load_run

    methods = [
        m
        for m in ("alfa_maml", *ADAPTIVITY)
        if (evidence / cell_key("40x2", 5, m, 0) / "checkpoints" / "best.pt").is_file()
    ]
    panels = []
    for method in methods:
        config, learner, _, _ = load_run(evidence / cell_key("40x2", 5, method, 0))
        batch, amplitude = validation_tasks(config, tasks)
        learner.eval()
        rec = record(learner, batch)
        order = amplitude.argsort()
        curves = {}
        for k, name in enumerate(learner.rule.names):
            alpha = rec.alpha[0, :, k]
            curves[name] = (alpha / alpha.abs().mean())[order].numpy()
        panels.append((method, amplitude[order].numpy(), curves))
    if panels:
        draw_panels(panels, out)


def draw_panels(panels: list[tuple[str, Any, dict[str, Any]]], out: Path, columns: int = 4) -> Path:
    """One panel per method (title, amplitudes, normalised step-0 alpha by layer) in a grid of
    at most ``columns`` panels a row, so that the figure stays readable at page width; one
    legend for all, below the grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.4 * cols, 2.9 * rows + 0.35), squeeze=False, sharey=True
    )
    for ax, (method, amplitude, curves) in zip(axes.flat, panels, strict=False):
        for name, values in curves.items():
            ax.plot(amplitude, values, ".", ms=2, label=name)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("task amplitude", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    for row in axes:
        row[0].set_ylabel("step-0 alpha / mean |alpha|", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7, markerscale=3
    )
    fig.tight_layout(rect=(0, 0.35 / (2.9 * rows + 0.35), 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="results/adaptivity.md from results/table8.json")
    parser.add_argument("--results", default="results", help="folder of table8.json")
    parser.add_argument("--tasks", type=int, default=200, help="validation tasks")
    args = parser.parse_args(argv)
    try:
        write(Path(args.results), args.tasks)
    except AlfaError as exc:
        print(f"alfa: error: {exc}", file=sys.stderr)
        return 2
    print((Path(args.results) / "adaptivity.md").read_text())
    return 0
