"""Table 8, controlled: every method under one protocol and one outer optimiser, with seeds.

``alfa reproduce table8`` (:mod:`alfa.reproduce`) clips the meta-gradient of the ALFA+MAML rows
only, and trains one seed. This recipe trains, on the 5-shot sinusoid cells, four rows that
differ only in the inner-loop rule:

- ``maml``: MAML, inner lr 0.01;
- ``learned_fixed``: meta-learned per-step, per-layer learning rates and weight-decay terms
  that do not depend on the task (Table 6's "fixed", alpha and beta);
- ``alfa_maml``: ALFA+MAML, the generator's last layer starting at weights 0 and bias 1
  (``rule.generator_init: unit``);
- ``alfa_maml_official``: ALFA+MAML with the official generator initialisation (PyTorch's
  default for every layer).

Every one of these rows uses the same stabilisation, ``meta.grad_clip: 1.0`` (the global norm of
the meta-gradient clipped at 1 before each Adam step; docs/stability.md says how often it acts).
A separate ablation set (``maml_noclip``, ``alfa_maml_noclip``) drops the clip.

Everything else is the Table 8 protocol of :func:`alfa.reproduce.table8_config`: 20,000
meta-iterations, meta-batch 25, Adam 1e-3, second order, 5 inner steps, the best of 10
validation checkpoints on 200 fixed validation tasks, tested on the same 600 fixed test tasks x
100 query points (seed 1234). Because every run is tested on the same tasks, the comparison of
two rows is paired over tasks: the per-task MSE differences of each seed give a mean difference
with its 95% CI.

It is resumable cell by cell: a cell already in ``table8.json`` with the same iteration budget
is skipped, and an interrupted cell continues from its last checkpoint. Each finished cell's best
checkpoint, ``config.yaml``, ``metrics.jsonl`` and per-task test MSEs are copied to
``<results>/table8/<cell>/``, where ``alfa eval`` reproduces its number. ``results/table8.md``
and ``results/table8.json`` are this table.

Run: ``python scripts/table8.py`` (``--help`` for the options).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from alfa.config import Config, config_from_dict, config_to_dict
from alfa.errors import AlfaError
from alfa.provenance import source_commit
from alfa.reproduce import DEFAULT_ITERATIONS, PAPER_TABLE8, table8_config

__all__ = ["CELLS", "controlled_config", "main", "paired", "report", "run"]

CLIP = 1.0
"""The one stabilisation of the controlled rows: the meta-gradient's global norm is clipped."""

RULES: dict[str, dict[str, Any]] = {
    "maml": {"name": "maml", "lr": 0.01},
    "learned_fixed": {
        "name": "learned_fixed",
        "lr": 0.01,
        "weight_decay": 0.0005,
        "per_step": True,
        "per_layer": True,
        "learn_alpha": True,
        "learn_beta": True,
    },
    "alfa_maml": {"name": "alfa", "lr": 0.01, "weight_decay": 0.0005, "generator_init": "unit"},
    "alfa_maml_official": {
        "name": "alfa",
        "lr": 0.01,
        "weight_decay": 0.0005,
        "generator_init": "official",
    },
}
MAIN = ("maml", "learned_fixed", "alfa_maml", "alfa_maml_official")
ABLATION = ("maml_noclip", "alfa_maml_noclip")
SEEDS = (0, 1, 2)
LABELS = {
    "maml": "MAML",
    "learned_fixed": "learned fixed (per-step, per-layer alpha, beta)",
    "alfa_maml": "ALFA+MAML (unit generator init)",
    "alfa_maml_official": "ALFA+MAML (official generator init)",
    "maml_noclip": "MAML, no clip (ablation)",
    "alfa_maml_noclip": "ALFA+MAML (unit init), no clip (ablation)",
}


def _cells() -> list[tuple[str, int, str, int]]:
    """(net, shots, method, seed) in the order they are run: 40x2 5-shot first, seed by seed,
    then its no-clip ablation, then 80x3 5-shot and its ablation."""
    cells = []
    for net in ("40x2", "80x3"):
        cells += [(net, 5, m, s) for s in SEEDS for m in MAIN]
        cells += [(net, 5, m, s) for s in SEEDS for m in ABLATION]
    return cells


CELLS = _cells()


def cell_key(net: str, shots: int, method: str, seed: int) -> str:
    return f"{net}-k{shots}-{method}-s{seed}"


def controlled_config(
    net: str, shots: int, method: str, seed: int, iterations: int = DEFAULT_ITERATIONS
) -> Config:
    """The config of one cell: Table 8's protocol, the row's rule, the shared clip, the seed."""
    body = config_to_dict(table8_config(net, shots, "maml", iterations))
    rule = method.removesuffix("_noclip")
    if rule not in RULES:
        raise AlfaError(f"unknown method {method!r}; the methods are {', '.join(LABELS)}")
    body["rule"].update(RULES[rule])
    body["meta"]["grad_clip"] = 0.0 if method.endswith("_noclip") else CLIP
    body["seed"] = seed
    body["name"] = cell_key(net, shots, method, seed)
    return config_from_dict(body)


def _git_commit() -> dict[str, Any]:
    """The commit of the code (and whether tracked files under src/ differ from it)."""
    return source_commit()


def _train_and_test(config: Config, run_dir: Path, tasks: int) -> dict[str, Any]:
    """Train (or resume) one cell, then test its best checkpoint with per-task MSEs."""
    import torch

    from alfa.errors import DivergenceError
    from alfa.evaluate import evaluate
    from alfa.runs import load_run
    from alfa.train import train

    torch.set_num_threads(1)
    start = time.time()
    diverged = None
    try:
        outcome = train(config, run_dir, resume=(run_dir / "config.yaml").is_file(), progress=False)
        if outcome.status == "stopped":
            return {"stopped": True}
    except DivergenceError as exc:
        diverged = str(exc)
        if not (run_dir / "checkpoints" / "best.pt").is_file():
            return {"diverged": diverged, "seconds": time.time() - start}
    _, learner, source, state = load_run(run_dir)
    result = evaluate(
        learner,
        source,
        tasks=tasks,
        seed=config.eval.seed,
        batch=config.eval.batch,
        first_order=config.eval.first_order,
        per_task=True,
    )
    result.update(
        seconds=time.time() - start, checkpoint_iteration=state["iteration"], diverged=diverged
    )
    return result


def _ship(run_dir: Path, dest: Path, per_task: list[float] | None) -> None:
    """Copy the evidence of a cell: best checkpoint, config, log and per-task test MSEs."""
    (dest / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "config.yaml", dest / "config.yaml")
    shutil.copyfile(run_dir / "metrics.jsonl", dest / "metrics.jsonl")
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        shutil.copyfile(best, dest / "checkpoints" / "best.pt")
    if per_task is not None:
        text = json.dumps([round(v, 10) for v in per_task]) + "\n"
        (dest / "per_task_mse.json").write_text(text)


def _ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width (1.96 * population std / sqrt(n), as alfa.evaluate)."""
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
    return mean, 1.96 * std / math.sqrt(n)


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean of the per-task differences ``a - b`` with its 95% CI (paired over tasks), their
    median, and the share of tasks on which ``a`` has the lower value (robust to a heavy tail)."""
    if len(a) != len(b):
        raise AlfaError(f"paired comparison needs the same tasks; got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, ci = _ci(diffs)
    return {
        "mean_diff": mean,
        "ci95": ci,
        "median_diff": statistics.median(diffs),
        "share_a_lower": sum(d < 0 for d in diffs) / len(diffs),
        "tasks": len(a),
    }


def _summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
]


def _paired_rows(rows: list[dict[str, Any]], evidence: Path) -> list[dict[str, Any]]:
    """Paired differences (per seed) for each comparison whose both cells are done."""
    by_key = {cell_key(r["net"], r["shots"], r["method"], r["seed"]): r for r in rows}
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


def _markdown(doc: dict[str, Any]) -> str:
    rows, summary, pairs = doc["rows"], doc["summary"], doc["paired"]
    have = {cell_key(r["net"], r["shots"], r["method"], r["seed"]) for r in rows}
    missing = [cell_key(*c) for c in CELLS if cell_key(*c) not in have]
    src = doc["source"]
    lines = [
        "# Table 8, controlled: sinusoid regression, every row under one protocol",
        "",
        "MSE over 100 query points, mean and 95% CI over the same 600 fixed test tasks (seed "
        "1234) for every run; the best of 10 validation checkpoints (200 fixed validation "
        f"tasks); {doc['iterations']} meta-iterations per run.",
        "",
        "**Verdict.** " + _verdict(pairs, summary),
        "",
        "Every main row uses the same outer optimiser and the same stabilisation: Adam 1e-3 on "
        f"the meta-gradient clipped to global norm {CLIP} (`meta.grad_clip: {CLIP}`; "
        "docs/stability.md says how often it acts). Rows differ only in the inner-loop rule. "
        "The `_noclip` rows are the ablation without clipping.",
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
        "numbers come from an unstated protocol (our MAML MSE is about half of its), so compare "
        "gains, not MSEs.",
        "",
        "## Paired differences (same 600 test tasks): mean per-task MSE(a) - MSE(b)",
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
        "Negative: a has the lower MSE. The CI is 1.96 x std / sqrt(600) of the per-task "
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
        "`alfa eval results/table8/<cell>` reproduces its MSE.",
        "",
        "Cells of the recipe not run yet (running the command again trains them): "
        + (", ".join(missing) if missing else "none")
        + ". Not in the recipe, so not run: the 10- and 20-shot cells of the paper's Table 8 "
        "(both networks); only the 5-shot cells are controlled and seeded here.",
        "",
        "Methods: " + "; ".join(f"`{m}`: {LABELS[m]}" for m in (*MAIN, *ABLATION)) + ".",
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


_DROP = {"seconds"}


def _write(results: Path, doc: dict[str, Any]) -> None:
    from alfa.checkpoint import atomic_write_bytes

    order = {cell_key(*c): i for i, c in enumerate(CELLS)}
    doc["rows"].sort(key=lambda r: order[cell_key(r["net"], r["shots"], r["method"], r["seed"])])
    evidence = results / "table8"
    doc["summary"] = _summaries(doc["rows"])
    doc["paired"] = _paired_rows(doc["rows"], evidence)
    text = json.dumps(doc, indent=1) + "\n"
    atomic_write_bytes(results / "table8.json", text.encode())
    atomic_write_bytes(results / "table8.md", _markdown(doc).encode())


def run(
    results: Path,
    runs: Path,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    only: list[str] | None = None,
    tasks: int = 600,
    command: str = "python scripts/table8.py",
    deadline: float | None = None,
) -> dict[str, Any]:
    """Train the missing cells (those matching ``only``'s patterns), write the result files.

    ``deadline`` (a ``time.time()`` value): start no new cell after it.
    """
    json_path = results / "table8.json"
    doc: dict[str, Any] = {"rows": []}
    if json_path.is_file():
        try:
            doc = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AlfaError(f"cannot read '{json_path}': {exc}; repair or move it away") from None
    if doc.get("iterations", iterations) != iterations:
        raise AlfaError(
            f"'{json_path}' holds {doc['iterations']}-iteration runs; use another --results "
            f"for {iterations}"
        )
    doc["iterations"] = iterations
    doc["command"] = doc["written_by"] = command
    earlier = (doc.get("source") or {}).get("commit")
    for row in doc["rows"]:
        row.setdefault("commit", earlier)  # rows written before rows recorded their commit
    doc["source"] = _git_commit()
    done = {
        cell_key(r["net"], r["shots"], r["method"], r["seed"])
        for r in doc["rows"]
        if r["mse"] is not None or r.get("diverged")
    }
    cells = [c for c in CELLS if not only or any(fnmatch.fnmatch(cell_key(*c), p) for p in only)]
    if only and not cells:
        raise AlfaError(f"no cell matches {only}; cells look like {cell_key(*CELLS[0])}")
    todo = [c for c in cells if cell_key(*c) not in done]
    print(f"table8: {len(cells) - len(todo)} cell(s) done, {len(todo)} to run")
    results.mkdir(parents=True, exist_ok=True)
    for net, shots, method, seed in todo:
        if deadline is not None and time.time() > deadline:
            print("table8: deadline passed; no new cell started")
            break
        key = cell_key(net, shots, method, seed)
        config = controlled_config(net, shots, method, seed, iterations)
        run_dir = runs / f"{key}-{iterations}"
        r = _train_and_test(config, run_dir, tasks)
        if r.get("stopped"):
            print(f"{key}: stopped; run the command again to resume it")
            break
        _ship(run_dir, results / "table8" / key, r.get("per_task"))
        row = {
            "net": net,
            "shots": shots,
            "method": method,
            "seed": seed,
            "grad_clip": config.meta.grad_clip,
            "mse": r.get("mean"),
            "ci95": r.get("ci95"),
            "std": r.get("std"),
            "test_tasks": r.get("tasks"),
            "query_points": config.data.eval_query,
            "eval_seed": config.eval.seed,
            "iterations": iterations,
            "checkpoint_iteration": r.get("checkpoint_iteration"),
            "diverged": r.get("diverged"),
            "train_seconds": round(r.get("seconds", 0.0), 1),
            "commit": doc["source"]["commit"],
        }
        doc["rows"] = [
            x for x in doc["rows"] if cell_key(x["net"], x["shots"], x["method"], x["seed"]) != key
        ] + [row]
        _write(results, doc)  # a finished cell is saved at once
        score = "diverged" if row["mse"] is None else f"{row['mse']:.4f} +- {row['ci95']:.4f}"
        print(f"{key}: {score} (iteration {row['checkpoint_iteration']}, {row['train_seconds']} s)")
        sys.stdout.flush()
    _write(results, doc)
    return doc


def report(results: Path) -> dict[str, Any]:
    """Rewrite ``table8.md`` and ``table8.json`` from the rows already in ``table8.json``."""
    json_path = results / "table8.json"
    try:
        doc = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AlfaError(f"cannot read '{json_path}': {exc}") from None
    doc["source"] = _git_commit()
    doc["written_by"] = "python scripts/table8.py --report-only" + (
        "" if results == Path("results") else f" --results {results}"
    )
    _write(results, doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Table 8, controlled: MAML, learned-fixed, ALFA+MAML (unit and official "
        "generator init), all with meta.grad_clip 1.0, seeds 0-2; plus a no-clip ablation.",
    )
    parser.add_argument("--results", default="results", help="folder of the result files")
    parser.add_argument("--runs", default="runs/table8_controlled", help="folder of the runs")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument(
        "--only", nargs="+", help="cell patterns (fnmatch), e.g. '40x2-k5-*-s0' '*-maml-s1'"
    )
    parser.add_argument("--tasks", type=int, default=600, help="test tasks (600 in the table)")
    parser.add_argument(
        "--stop-after", help="UTC time HH:MM after which no new cell is started (e.g. 07:55)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite table8.md and table8.json from the rows of table8.json and the per-task "
        "MSEs under table8/ (trains nothing)",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        try:
            report(Path(args.results))
        except AlfaError as exc:
            print(f"alfa: error: {exc}", file=sys.stderr)
            return 2
        print((Path(args.results) / "table8.md").read_text())
        return 0
    deadline = None
    if args.stop_after:
        hours, minutes = (int(x) for x in args.stop_after.split(":"))
        now = time.gmtime()
        deadline = time.time() + ((hours * 60 + minutes) - (now.tm_hour * 60 + now.tm_min)) * 60
    command = "python scripts/table8.py" + "".join(
        f" {a}" if not any(c in a for c in " *?[") else f" '{a}'"
        for a in (argv if argv is not None else sys.argv[1:])
        if not a.startswith("--stop-after") and a != args.stop_after
    )
    try:
        run(
            Path(args.results),
            Path(args.runs),
            iterations=args.iterations,
            only=args.only,
            tasks=args.tasks,
            command=command,
            deadline=deadline,
        )
    except AlfaError as exc:
        print(f"alfa: error: {exc}", file=sys.stderr)
        return 2
    print((Path(args.results) / "table8.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
