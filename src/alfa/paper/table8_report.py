"""The controlled Table 8's statistics and report: means over seeds, paired per-task
differences on the shared test tasks, the verdict, and ``table8.md`` (see
:mod:`alfa.paper.table8_run`).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from alfa.paper.statistics import paired
from alfa.paper.table8_cells import (
    ABLATION,
    ADAPTIVITY,
    CELLS,
    CLIP,
    LABELS,
    MAIN,
    PAPER_TABLE8,
    SEEDS,
    cell_key,
    row_key,
)

__all__ = ["markdown", "paired", "paired_rows", "summaries"]  # paired: from alfa.paper.statistics


def summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean +- std over seeds of each (net, shots, method), the seeds whose run diverged, and the
    relative gain over MAML (seed means over the seeds where both runs have a score)."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["net"], r["shots"], r["method"]), []).append(r)
    out = []
    for (net, shots, method), group in groups.items():
        scored = {r["seed"]: r["mse"] for r in group if r["mse"] is not None}
        values = list(scored.values())
        paper = PAPER_TABLE8.get((net, shots), {})
        paper_row = paper.get("alfa_maml" if method.startswith("alfa_maml") else method)
        if method.endswith("_noclip"):
            paper_row = paper.get(method.removesuffix("_noclip"))
        out.append(
            {
                "net": net,
                "shots": shots,
                "method": method,
                "seeds": sorted(scored),
                "seeds_run": sorted(r["seed"] for r in group),
                "seeds_diverged": sorted(r["seed"] for r in group if r.get("diverged")),
                "seeds_without_score": sorted(r["seed"] for r in group if r["mse"] is None),
                "mse_by_seed": {str(k): v for k, v in sorted(scored.items())},
                "mean": statistics.fmean(values) if values else None,
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "paper_mse": paper_row[0] if paper_row else None,
                "paper_ci95": paper_row[1] if paper_row else None,
            }
        )
    for s in out:
        want = "maml_noclip" if s["method"].endswith("_noclip") else "maml"
        base = next(
            (
                b
                for b in out
                if (b["net"], b["shots"]) == (s["net"], s["shots"]) and b["method"] == want
            ),
            None,
        )
        common = [] if base is None else [k for k in s["mse_by_seed"] if k in base["mse_by_seed"]]
        paper_maml = PAPER_TABLE8.get((s["net"], s["shots"]), {}).get("maml")
        s["gain_over_maml"] = (
            1
            - statistics.fmean(s["mse_by_seed"][k] for k in common)
            / statistics.fmean(base["mse_by_seed"][k] for k in common)
            if common and base is not None
            else None
        )
        s["gain_seeds"] = [int(k) for k in common]
        s["paper_gain_over_maml"] = (
            None
            if s["paper_mse"] is None or paper_maml is None
            else 1 - s["paper_mse"] / paper_maml[0]
        )
    return out


COMPARISONS = [
    ("alfa_maml", "learned_fixed"),
    ("alfa_maml", "maml"),
    ("learned_fixed", "maml"),
    ("alfa_maml_official", "learned_fixed"),
    ("alfa_maml", "alfa_maml_official"),
    ("alfa_maml_noclip", "alfa_maml"),
    ("maml_noclip", "maml"),
    *((m, b) for m in ADAPTIVITY for b in ("alfa_maml", "learned_fixed")),
]


def paired_rows(rows: list[dict[str, Any]], evidence: Path) -> list[dict[str, Any]]:
    """Paired differences (per seed) for each comparison whose both cells are done."""
    by_key = {row_key(r): r for r in rows}
    out = []
    nets = sorted({(r["net"], r["shots"]) for r in rows})
    for net, shots in nets:
        for a, b in COMPARISONS:
            per_seed = []
            for seed in SEEDS:
                ka, kb = (cell_key(net, shots, m, seed) for m in (a, b))
                if ka not in by_key or kb not in by_key:
                    continue
                if by_key[ka]["mse"] is None or by_key[kb]["mse"] is None:
                    continue
                ta = json.loads((evidence / ka / "per_task_mse.json").read_text())
                tb = json.loads((evidence / kb / "per_task_mse.json").read_text())
                per_seed.append({"seed": seed, **paired(ta, tb)})
            if per_seed:
                diffs = [p["mean_diff"] for p in per_seed]
                out.append(
                    {
                        "net": net,
                        "shots": shots,
                        "a": a,
                        "b": b,
                        "per_seed": per_seed,
                        "mean_over_seeds": statistics.fmean(diffs),
                        "std_over_seeds": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
                        "seeds_a_better_beyond_ci": sum(
                            p["mean_diff"] + p["ci95"] < 0 for p in per_seed
                        ),
                        "seeds_b_better_beyond_ci": sum(
                            p["mean_diff"] - p["ci95"] > 0 for p in per_seed
                        ),
                    }
                )
    return out


def _diverged_at(row: dict[str, Any]) -> str:
    text = row.get("diverged") or ""
    marker = "iteration "
    if marker not in text:
        return "?"
    return text.split(marker, 1)[1].split(":", 1)[0]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _verdict(pairs: list[dict[str, Any]], summary: list[dict[str, Any]]) -> str:
    """One plain sentence on ALFA+MAML vs learned_fixed, from the paired tests."""
    sentences = []
    lost = {
        (s["net"], s["shots"]): s
        for s in summary
        if s["method"] == "alfa_maml" and s["seeds_without_score"]
    }
    for p in pairs:
        if (p["a"], p["b"]) != ("alfa_maml", "learned_fixed"):
            continue
        n = len(p["per_seed"])
        better, worse = p["seeds_a_better_beyond_ci"], p["seeds_b_better_beyond_ci"]
        where = f"{p['net']} {p['shots']}-shot"
        if better == n:
            what = (
                f"task adaptivity (ALFA+MAML) beats the learned-fixed rule beyond the 95% CI "
                f"of the paired per-task difference in each of the {n} seeds both scored"
            )
        elif worse == n:
            what = (
                f"the learned-fixed rule beats ALFA+MAML beyond the CI in each of the {n} "
                "seeds both scored"
            )
        else:
            what = (
                f"task adaptivity (ALFA+MAML) does not beat the learned-fixed rule consistently "
                f"beyond the 95% CI: the paired per-task difference excludes zero in ALFA's "
                f"favour in {better} of {n} seeds and in learned-fixed's favour in {worse}"
            )
        sentences.append(
            f"On {where}, {what} (mean difference over the seeds both scored "
            f"{p['mean_over_seeds']:+.3f} +- {p['std_over_seeds']:.3f} std)."
        )
        gone = lost.get((p["net"], p["shots"]))
        if gone:
            sentences.append(
                f"ALFA+MAML also diverged before its first checkpoint in "
                f"{len(gone['seeds_without_score'])} of {len(gone['seeds_run'])} seeds "
                f"(seed {', '.join(map(str, gone['seeds_without_score']))}); learned-fixed in "
                + str(
                    sum(
                        len(x["seeds_without_score"])
                        for x in summary
                        if (x["net"], x["shots"], x["method"])
                        == (p["net"], p["shots"], "learned_fixed")
                    )
                )
                + "."
            )
    return " ".join(sentences) or "No paired ALFA+MAML vs learned-fixed result yet."


def _test_tasks(rows: list[dict[str, Any]]) -> str:
    """The test tasks of the rows, as the text says them: one number when every row used the
    same count (the table's protocol), else each count."""
    counts = sorted({r["test_tasks"] for r in rows if r.get("test_tasks")})
    return " or ".join(map(str, counts)) if counts else "the"


def _against_paper_maml(summary: list[dict[str, Any]]) -> str:
    """How our MAML MSE compares with the paper's, from the numbers (empty without them)."""
    ratios = sorted(
        s["mean"] / s["paper_mse"]
        for s in summary
        if s["method"] == "maml" and s["mean"] is not None and s["paper_mse"]
    )
    if not ratios:
        return ""
    low, high = ratios[0], ratios[-1]
    spread = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f} to {high:.2f}"
    return f" (our MAML MSE is {spread} times its)"


def markdown(doc: dict[str, Any]) -> str:
    """``table8.md`` from ``table8.json``: every number and count in the text comes from it
    (test tasks, evaluation seed, the comparison with the paper, the results folder)."""
    rows, summary, pairs = doc["rows"], doc["summary"], doc["paired"]
    tasks = _test_tasks(rows)
    seeds = sorted({r["eval_seed"] for r in rows if r.get("eval_seed") is not None})
    seed = f" (seed {', '.join(map(str, seeds))})" if seeds else ""
    folder = doc.get("results", "results").rstrip("/")
    have = {row_key(r) for r in rows}
    left: dict[str, list[str]] = {}
    for c in CELLS:
        if cell_key(*c) not in have:
            left.setdefault(f"{c[0]}-k{c[1]}-{c[2]}", []).append(str(c[3]))
    missing = [f"{k} (seed {', '.join(v)})" for k, v in left.items()]
    src = doc["source"]
    lines = [
        "# Table 8, controlled: sinusoid regression, every row under one protocol",
        "",
        f"MSE over 100 query points, mean and 95% CI over the same {tasks} fixed test tasks"
        f"{seed} for every run; the best of 10 validation checkpoints (200 fixed validation "
        f"tasks); {doc['iterations']} meta-iterations per run.",
        "",
        "**Verdict.** " + _verdict(pairs, summary),
        "",
        "Every main row uses the same outer optimiser and the same stabilisation: Adam 1e-3 on "
        f"the meta-gradient clipped to global norm {CLIP} (`meta.grad_clip: {CLIP}`; "
        "docs/stability.md says how often it acts). Rows differ only in the inner-loop rule. "
        "The `_noclip` rows are the ablation without clipping; the rows named after a "
        "generator switch (`_bounded`, `_log_sign`, `_rms`) are the ablation of "
        "[docs/adaptivity.md](../docs/adaptivity.md), analysed in "
        "[adaptivity.md](adaptivity.md).",
        "",
        "## Summary: mean +- std over seeds",
        "",
        "| net | shots | method | seeds scored/run | MSE mean +- std over seeds "
        "| each seed's MSE +- 95% CI "
        "| paper MSE | relative gain over MAML, ours | paper |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        each = "; ".join(
            f"s{r['seed']}: {r['mse']:.3f} +- {r['ci95']:.3f}"
            if r["mse"] is not None
            else f"s{r['seed']}: diverged at iteration {_diverged_at(r)}, no checkpoint"
            for r in rows
            if (r["net"], r["shots"], r["method"]) == (s["net"], s["shots"], s["method"])
        )
        paper = "-" if s["paper_mse"] is None else f"{s['paper_mse']:.2f} +- {s['paper_ci95']:.2f}"
        if s["mean"] is None:
            score = "no score (every seed diverged)"
        elif s["std"] is None:
            score = f"{s['mean']:.3f} (one seed)"
        else:
            score = f"{s['mean']:.3f} +- {s['std']:.3f}"
        scored = f"{len(s['seeds'])}/{len(s['seeds_run'])}"
        lines.append(
            f"| {s['net']} | {s['shots']} | {s['method']} | {scored} | {score} | {each} "
            f"| {paper} | {_pct(s['gain_over_maml'])} | {_pct(s['paper_gain_over_maml'])} |"
        )
    lines += [
        "",
        "Relative gain over MAML = 1 - MSE / MSE(MAML) of the same cell, means over the seeds "
        "where both have a score (the `_noclip` rows against `maml_noclip`). A run that "
        "diverged before its first validation checkpoint has no score; one that diverged later "
        "is scored by its best checkpoint before that point (the note says where). The paper's "
        "gains are from its Table 8 (it has no learned-fixed row on regression); its absolute "
        f"numbers come from an unstated protocol{_against_paper_maml(summary)}, so compare "
        "gains, not MSEs.",
        "",
        f"## Paired differences (same {tasks} test tasks): mean per-task MSE(a) - MSE(b)",
        "",
        "| net | shots | a | b | each seed: mean diff +- 95% CI | mean +- std over seeds "
        "| seeds a better beyond CI | seeds b better beyond CI "
        "| each seed: median diff, share of tasks a lower |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        each = "; ".join(
            f"s{q['seed']}: {q['mean_diff']:+.4f} +- {q['ci95']:.4f}" for q in p["per_seed"]
        )
        robust = "; ".join(
            f"s{q['seed']}: {q['median_diff']:+.4f}, {100 * q['share_a_lower']:.0f}%"
            for q in p["per_seed"]
        )
        n = len(p["per_seed"])
        lines.append(
            f"| {p['net']} | {p['shots']} | {p['a']} | {p['b']} | {each} "
            f"| {p['mean_over_seeds']:+.4f} +- {p['std_over_seeds']:.4f} "
            f"| {p['seeds_a_better_beyond_ci']}/{n} | {p['seeds_b_better_beyond_ci']}/{n} "
            f"| {robust} |"
        )
    lines += [
        "",
        f"Negative: a has the lower MSE. The CI is 1.96 x std / sqrt({tasks}) of the per-task "
        "differences of one seed (paired over the shared test tasks); it covers the test-task "
        "sample, not training noise, which the spread over seeds shows. The per-task MSEs are "
        "heavy-tailed (a few tasks can dominate a mean), so the median difference and the share "
        "of tasks on which a is lower are shown beside it.",
        "",
        "## Every run",
        "",
        "| net | shots | method | seed | MSE +- 95% CI | checkpoint iteration | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["mse"] is None:
            score, note = "diverged", r["diverged"]
        else:
            score = f"{r['mse']:.3f} +- {r['ci95']:.3f}"
            note = f"then diverged: {r['diverged']}" if r.get("diverged") else ""
        lines.append(
            f"| {r['net']} | {r['shots']} | {r['method']} | {r['seed']} | {score} "
            f"| {r['checkpoint_iteration']} | {note} |"
        )
    lines += [
        "",
        "Each run's best checkpoint, `config.yaml`, `metrics.jsonl` and per-task test MSEs are "
        "in `table8/<net>-k<shots>-<method>-s<seed>/`; "
        f"`alfa eval {folder}/table8/<cell>` reproduces its MSE.",
        "",
        "Cells of the recipe not run yet (running the command again trains them): "
        + (", ".join(missing) if missing else "none")
        + ".",
        "",
        "Methods: "
        + "; ".join(f"`{m}`: {LABELS[m]}" for m in (*MAIN, *ABLATION, *ADAPTIVITY))
        + ".",
        "",
        "Produced by `"
        + doc["command"]
        + "`; runs trained at commit(s) "
        + ", ".join(f"`{c}`" for c in sorted({str(r.get("commit")) for r in rows}))
        + f"; this file written by `{doc.get('written_by', doc['command'])}`"
        + f" at commit `{src['commit']}`"
        + (
            f" (source files modified from it while running: {', '.join(src['modified_src'])})"
            if src.get("modified_src")
            else ""
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"
