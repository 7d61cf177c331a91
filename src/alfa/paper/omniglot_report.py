"""The Omniglot protocol's statistics and report: means over seeds, paired per-episode
differences, the verdict on each of the paper's claims and ``omniglot_protocol.md`` (see
:mod:`alfa.paper.omniglot_run`).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from alfa.errors import AlfaError
from alfa.limits import read_bytes
from alfa.paper.omniglot_cells import (
    BATCH,
    CLIP,
    COMPARISONS,
    FILTERS,
    ITERATIONS,
    LABELS,
    METHODS,
    SEEDS,
    STEPS,
    VARIANTS,
    WAYS,
    cell_key,
    last_validation,
    row_key,
    table_name,
)
from alfa.paper.provenance import wall_time
from alfa.paper.statistics import paired

__all__ = [
    "CLAIMS",
    "against_protocol",
    "markdown",
    "paired_rows",
    "scored",
    "summaries",
    "verdicts",
    "ways_with_curves",
]

CLAIMS = [
    ("alfa_maml", "maml", "1. ALFA+MAML is more accurate than MAML"),
    (
        "alfa_random",
        "maml",
        "2. ALFA on a random initialisation is more accurate than MAML (meta-learning the inner "
        "loop's optimisation beats meta-learning only the initialisation)",
    ),
    (
        "alfa_maml",
        "learned_fixed",
        "3. ALFA's generated, task-adaptive hyperparameters beat the same hyperparameters "
        "meta-learned but fixed (per step and layer)",
    ),
]
"""The paper's three claims, each as the comparison (a, b) that tests it."""


def scored(row: dict[str, Any]) -> bool:
    """Whether a row was tested: a run that diverged after a checkpoint is, at that checkpoint."""
    return row.get("accuracy") is not None


def ways_with_curves(rows: list[dict[str, Any]]) -> list[int]:
    """The numbers of ways, in :data:`WAYS` order, with at least one validation curve: those the
    figure (:mod:`alfa.paper.omniglot_figure`) draws."""
    return [w for w in WAYS if any(r["ways"] == w and r.get("val_curve") for r in rows)]


def summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (ways, method): accuracy mean and std over the seeds that scored, the seeds whose
    run diverged, and the best validation accuracy's mean."""
    out = []
    for ways in WAYS:
        for method in METHODS:
            group = [r for r in rows if r["ways"] == ways and r["method"] == method]
            if not group:
                continue
            tested = [r for r in group if scored(r)]
            acc = [r["accuracy"] for r in tested]
            val = [r["best_val"] for r in tested if r.get("best_val") is not None]
            out.append(
                {
                    "ways": ways,
                    "method": method,
                    "seeds": sorted(r["seed"] for r in group),
                    "accuracy": statistics.fmean(acc) if acc else None,
                    "std_over_seeds": statistics.stdev(acc) if len(acc) > 1 else None,
                    "best_val": statistics.fmean(val) if val else None,
                    "diverged_seeds": sorted(r["seed"] for r in group if r.get("diverged")),
                }
            )
    return out


def _per_episode(cell: Path) -> list[float]:
    """A shipped cell's per-episode test accuracies, in points.

    Raises:
        AlfaError: naming the file, when it is missing, too large, not JSON or not a list of
            accuracies in [0, 1].
    """
    path = cell / "per_task_accuracy.json"
    try:
        values = json.loads(
            read_bytes(path, cap=16 << 20, what="per-episode file", error=AlfaError)
        )
    except (UnicodeDecodeError, json.JSONDecodeError):
        values = None
    ok = isinstance(values, list) and values
    if not ok or not all(type(v) in (int, float) and 0 <= v <= 1 for v in values):
        raise AlfaError(
            f"'{path}' does not hold a list of per-episode accuracies in [0, 1]; train the cell "
            "again (remove its row from the JSON file) or restore the file"
        )
    return [100.0 * v for v in values]


def paired_rows(rows: list[dict[str, Any]], evidence: Path) -> list[dict[str, Any]]:
    """Paired per-episode accuracy differences a - b (in points), seed by seed, for each
    comparison of :data:`~alfa.paper.omniglot_cells.COMPARISONS` whose both cells scored."""
    by_key = {row_key(r): r for r in rows}
    out = []
    for ways in WAYS:
        for a, b in COMPARISONS:
            per_seed = []
            for seed in SEEDS:
                ka, kb = cell_key(ways, a, seed), cell_key(ways, b, seed)
                if not all(k in by_key and scored(by_key[k]) for k in (ka, kb)):
                    continue
                ta, tb = (_per_episode(evidence / k) for k in (ka, kb))
                stats = paired(ta, tb)
                stats.pop("share_a_lower")
                stats["share_a_higher"] = sum(x > y for x, y in zip(ta, tb, strict=True)) / len(ta)
                per_seed.append({"seed": seed, **stats})
            if not per_seed:
                continue
            diffs = [p["mean_diff"] for p in per_seed]
            up = sum(p["mean_diff"] - p["ci95"] > 0 for p in per_seed)
            down = sum(p["mean_diff"] + p["ci95"] < 0 for p in per_seed)
            out.append(
                {
                    "ways": ways,
                    "a": a,
                    "b": b,
                    "per_seed": per_seed,
                    "mean_over_seeds": statistics.fmean(diffs),
                    "std_over_seeds": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
                    "seeds_a_better_beyond_ci": up,
                    "seeds_b_better_beyond_ci": down,
                }
            )
    return out


def against_protocol(
    rows: list[dict[str, Any]],
    base_rows: list[dict[str, Any]],
    evidence: Path,
    base_evidence: Path,
) -> list[dict[str, Any]]:
    """Each cell of a variant against the protocol's cell of the same ways, row and seed: the
    difference of their best validation accuracies, and the paired per-episode test difference
    (variant - protocol, in points) when both scored."""
    base = {row_key(r): r for r in base_rows}
    out = []
    for row in rows:
        key = row_key(row)
        other = base.get(key)
        entry: dict[str, Any] = {
            "ways": row["ways"],
            "method": row["method"],
            "seed": row["seed"],
            "best_val": row.get("best_val"),
            "protocol_best_val": None if other is None else other.get("best_val"),
            "test": None,
        }
        if other is not None and scored(row) and scored(other):
            ta, tb = _per_episode(evidence / key), _per_episode(base_evidence / key)
            stats = paired(ta, tb)
            stats.pop("share_a_lower")
            entry["test"] = stats
        out.append(entry)
    return out


def _variant_lines(doc: dict[str, Any]) -> list[str]:
    """The comparison of a variant with the protocol, cell by cell and row by row."""
    entries = doc.get("against_protocol", [])
    lines = [
        "## Against the protocol",
        "",
        "Each cell against the protocol's cell of the same row and seed (same tasks, same "
        "initialisation): best validation accuracy (%) of both, and the paired difference "
        "variant - protocol on the 600 test episodes with its 95% CI. The variant helps on "
        "validation for a row only when its best validation accuracy is higher in every seed.",
        "",
        "| ways | method | seed | best validation (variant / protocol) | test difference |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        test = e["test"]
        shown = "-" if test is None else f"{test['mean_diff']:+.2f} +- {test['ci95']:.2f}"
        lines.append(
            f"| {e['ways']} | {LABELS[e['method']]} | {e['seed']} | {_pct(e['best_val'])} / "
            f"{_pct(e['protocol_best_val'])} | {shown} |"
        )
    lines.append("")
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for e in entries:
        if e["best_val"] is not None and e["protocol_best_val"] is not None:
            groups.setdefault((e["ways"], e["method"]), []).append(e)
    for (ways, method), group in groups.items():
        higher = sum(e["best_val"] > e["protocol_best_val"] for e in group)
        word = "helps" if higher == len(group) else "does not help"
        lines.append(
            f"- {ways}-way {LABELS[method]}: the variant {word} on validation (higher in "
            f"{higher} of {len(group)} seed(s))."
        )
    if not groups:
        lines.append("- No cell of the variant has a protocol cell to compare with yet.")
    return lines


def _verdict(pair: dict[str, Any] | None) -> str:
    """One plain sentence from a comparison's paired tests."""
    if pair is None:
        return "not tested yet (a run of either row is missing)"
    n = len(pair["per_seed"])
    up, down = pair["seeds_a_better_beyond_ci"], pair["seeds_b_better_beyond_ci"]
    seeds = f"{n} seed{'s' if n > 1 else ''}"
    diff = f"{pair['mean_over_seeds']:+.2f} points on average"
    every = {1: "the one seed run", 2: "both seeds"}.get(n, f"all {seeds}")
    so_far = "" if n >= 3 else " so far"  # fewer seeds than the protocol's 3 have run
    if up == n:
        return f"holds{so_far}: better beyond the paired 95% CI in {every} ({diff})"
    if down == n:
        return f"fails{so_far}: worse beyond the paired 95% CI in {every} ({diff})"
    return (
        f"not shown{so_far}: better beyond the CI in {up} and worse in {down} of {seeds}, "
        f"within it in {n - up - down} ({diff})"
    )


def verdicts(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The verdict on each claim of :data:`CLAIMS` for each number of ways."""
    index = {(p["ways"], p["a"], p["b"]): p for p in pairs}
    return [
        {"ways": ways, "claim": text, "verdict": _verdict(index.get((ways, a, b)))}
        for ways in WAYS
        for a, b, text in CLAIMS
    ]


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _stability(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> list[str]:
    """Sentences on divergence and on the stable generator against the paper's, by validation."""
    lines = []
    for ways in WAYS:
        s = {x["method"]: x for x in summary if x["ways"] == ways}
        if not s:
            continue
        diverged = [
            f"{LABELS[m]} {len(x['diverged_seeds'])} of {len(x['seeds'])}"
            for m, x in s.items()
            if x["diverged_seeds"]
        ]
        lines.append(
            f"- {ways}-way: "
            + (f"diverged runs: {'; '.join(diverged)}." if diverged else "no run diverged.")
        )
        by_key = {row_key(r): r for r in rows}
        worse = both = 0
        for seed in SEEDS:
            a = by_key.get(cell_key(ways, "alfa_maml_stable", seed))
            b = by_key.get(cell_key(ways, "alfa_maml", seed))
            if a and b and a.get("best_val") is not None and b.get("best_val") is not None:
                both += 1
                worse += a["best_val"] < b["best_val"]
        if both:
            lines.append(
                f"  The stable generator's best validation accuracy was below the paper "
                f"generator's in {worse} of the {both} seed(s) where both ran."
            )
    return lines


def _budget(rows: list[dict[str, Any]]) -> list[str]:
    """Sentences on the rows whose best validation accuracy came at the budget's last checkpoint:
    they may still have been improving, so their gaps hold at this budget, not beyond it."""
    lines = []
    for ways in WAYS:
        tested = [r for r in rows if r["ways"] == ways and scored(r)]
        if not tested:
            continue
        at_last = Counter(
            r["method"]
            for r in tested
            if r["checkpoint_iteration"] == last_validation(r["iterations"])
        )
        cells = Counter(r["method"] for r in tested)
        at_end = [f"{LABELS[m]} {at_last[m]} of {cells[m]}" for m in LABELS if at_last[m]]
        lines.append(
            f"- {ways}-way: the best validation accuracy came at the last checkpoint in "
            f"{sum(at_last.values())} of {len(tested)} tested cells"
            + (
                f" ({'; '.join(at_end)}): those runs may still have been improving when the "
                "budget ended, so a gap involving them is the gap at this budget."
                if at_end
                else "."
            )
        )
    return lines


def _minutes(row: dict[str, Any]) -> str:
    seconds, whole = wall_time(row)
    parts = row.get("train_parts") or 1
    count = f" ({parts} parts)" if parts > 1 else ""
    return f"{seconds / 60:.0f}{count}" if whole else f"at least {seconds / 60:.0f}{count}"


def markdown(doc: dict[str, Any]) -> str:
    """``omniglot_protocol.md`` from ``omniglot_protocol.json``'s content."""
    rows, summary, pairs = doc["rows"], doc["summary"], doc["paired"]
    hours = sum(wall_time(r)[0] for r in rows) / 3600
    resumed = [r for r in rows if not wall_time(r)[1]]
    variant = doc.get("variant")
    folder = table_name(variant)
    title = "# Omniglot (minimal background sets, real data): MAML, learned-fixed and ALFA, seeded"
    lines = [title + (f", variant `{variant}`" if variant else ""), ""]
    if variant:
        changed = ", ".join(
            f"`{section}.{k}: {v}`"
            for section, kv in VARIANTS[variant].items()
            for k, v in kv.items()
        )
        lines += [
            f"The protocol below with {changed} in every cell, compared cell by cell with the "
            "protocol's own table (`omniglot_protocol.md`) at the end.",
            "",
        ]
    lines += [
        f"Written by `{doc['written_by']}` at commit `{doc['source']['commit']}`; every cell is "
        f"shipped in `{doc['results']}/{folder}/<cell>/` (config, metrics, provenance: the "
        "commit, command and time of each process that trained it, best checkpoint, "
        "per-episode test accuracies), where `alfa eval <cell>` reproduces its number. The "
        "table is complete when every cell below has run; cells still missing are listed at "
        "the end.",
        "",
        "## Protocol",
        "",
        "- Data: the two official minimal Omniglot background sets (8 alphabets, 242 characters "
        "of 20 drawings). Meta-training: Balinese, Japanese (katakana), Korean, Latin, Sanskrit "
        "(179 characters); validation: Greek (24); test: Early_Aramaic and Tagalog (39). "
        "Rotations by 90 degrees are extra classes. 28x28, 1-shot; 5 query images per class in "
        "training, 15 in validation and test.",
        f"- Learner: 4-CONV with {FILTERS} filters (the standard is 64; the budget forces "
        f"{FILTERS}, see `alfa.paper.omniglot_cells.FILTERS`), {STEPS} inner steps in training "
        "and test, inner lr 0.1, second order.",
        f"- Outer loop, the same for every row: Adam 1e-3, meta-gradient clipped to global norm "
        f"{CLIP:g}, meta-batch {BATCH[20]} (20-way) or {BATCH[5]} (5-way), "
        f"{ITERATIONS[20]} (20-way) or {ITERATIONS[5]} (5-way) meta-iterations.",
        "- Selection: 200 fixed validation tasks every twelfth of the budget; the best checkpoint "
        "by validation accuracy is tested. Test: 600 fixed episodes (seed 1234), the same for "
        "every row and seed, so rows are compared paired over episodes.",
        f"- Seeds {', '.join(map(str, SEEDS))} for every row; one thread per run on a 2-core "
        f"CPU ({'at least ' if resumed else ''}{hours:.1f} CPU-hours of training so far"
        + (
            f"; {len(resumed)} cell(s) stopped and resumed count only the parts whose time was "
            "recorded)."
            if resumed
            else ")."
        ),
        "",
        "## Verdicts",
        "",
    ]
    for v in verdicts(pairs):
        lines.append(f"- {v['ways']}-way 1-shot, claim {v['claim']}: {v['verdict']}.")
    lines += ["", "Stability (meta-gradient clipped for every row):", ""]
    lines += _stability(rows, summary)
    lines += ["", "Budget:", ""]
    lines += _budget(rows)
    lines += [
        "",
        "## Accuracy (%)",
        "",
        *(
            [
                f"![validation curves and per-seed test accuracy of every row]({folder}.png)",
                "",
                "Left: each cell's validation accuracy along its meta-iterations, the tested "
                "checkpoint marked by a dot; right: each seed's test accuracy with its 95% CI.",
                "",
            ]
            if ways_with_curves(rows)
            else []
        ),
        "Mean over seeds (std over seeds); each seed's accuracy with its 95% CI over the 600 "
        "test episodes; the best validation accuracy, mean over seeds (each seed's); the tested "
        "checkpoint's iteration.",
        "",
        "| ways | method | accuracy | per seed | best validation | checkpoint | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    by_key = {row_key(r): r for r in rows}
    for s in summary:
        cells = [by_key[cell_key(s["ways"], s["method"], seed)] for seed in s["seeds"]]
        per_seed = ", ".join(
            f"s{r['seed']}: diverged"
            if not scored(r)
            else f"s{r['seed']}: {_pct(r['accuracy'])} +- {_pct(r['ci95'])}"
            for r in cells
        )
        std = "" if s["std_over_seeds"] is None else f" ({_pct(s['std_over_seeds'])})"
        checkpoints = ", ".join(str(r.get("checkpoint_iteration", "-")) for r in cells)
        minutes = ", ".join(_minutes(r) for r in cells)
        val = ", ".join(_pct(r.get("best_val")) for r in cells)
        lines.append(
            f"| {s['ways']} | {LABELS[s['method']]} | {_pct(s['accuracy'])}{std} | {per_seed} "
            f"| {_pct(s['best_val'])} ({val}) | {checkpoints} | {minutes} min |"
        )
    lines += [
        "",
        "## Paired differences (a - b, accuracy points)",
        "",
        "Per seed: the mean per-episode difference on the shared test episodes with its 95% CI. "
        "`beyond CI`: seeds where a is better / worse beyond it.",
        "",
        "| ways | a | b | mean over seeds | per seed | beyond CI (a better / worse) |",
        "|---|---|---|---|---|---|",
    ]
    for p in pairs:
        per_seed = ", ".join(
            f"s{x['seed']}: {x['mean_diff']:+.2f} +- {x['ci95']:.2f}" for x in p["per_seed"]
        )
        lines.append(
            f"| {p['ways']} | {LABELS[p['a']]} | {LABELS[p['b']]} | {p['mean_over_seeds']:+.2f} "
            f"| {per_seed} | {p['seeds_a_better_beyond_ci']} / {p['seeds_b_better_beyond_ci']} |"
        )
    missing = [cell_key(*c) for c in doc.get("cells", []) if cell_key(*c) not in by_key]
    if variant:  # a variant runs the cells it is asked for (--only), not a whole table
        lines += ["", *_variant_lines(doc), "", "## Cells", ""]
        lines.append(f"{len(by_key)} cell(s) run with the variant: {', '.join(by_key)}.")
    else:
        lines += ["", "## Cells", ""]
        lines.append(
            f"{len(by_key)} of {len(by_key) + len(missing)} cells done."
            + (f" Missing: {', '.join(missing)}." if missing else "")
        )
    lines += ["", f"Reproduce (resumable, cell by cell): `{doc['command']}`", ""]
    return "\n".join(lines)
