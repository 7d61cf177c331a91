"""The pretrained Omniglot models, trained with what the Omniglot protocol showed works best.

For each number of ways, a row of the protocol (:mod:`alfa.paper.omniglot_cells`, optionally a
variant such as ``jitter``) is trained twice with the protocol's config, seed 0, no validation,
for the number of meta-iterations the protocol's validation chose for that row (the median of
its seeds' tested checkpoints):

- the *twin*, on the 6 training alphabets of ``configs/omniglot/splits/minimal_train.txt`` (the
  protocol's 5 and its validation alphabet), tested on the 600 fixed episodes of the 2 held-out
  alphabets and on within-alphabet one-shot episodes (:mod:`alfa.runs.within_alphabet`): the
  accuracy reported for the pretrained model;
- the *model*, on all 8 alphabets (``minimal_all.txt``), exported with its config and class
  lists as ``omniglot-<N>way.safetensors`` (:mod:`alfa.runs.export`); it is not tested, as no
  alphabet is held out from it.

The results go to ``pretrained_omniglot.{md,json}``, the runs' evidence to
``pretrained_omniglot/<run>/`` beside them (the twin's checkpoint and per-episode accuracies,
both runs' configs and logs). The recipe is resumable run by run.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from alfa.config import Config, config_from_dict, config_to_dict
from alfa.errors import AlfaError
from alfa.paper.omniglot_cells import (
    LABELS,
    SPLITS,
    VARIANTS,
    WAYS,
    check_variant,
    protocol_config,
    read_protocol_table,
    table_name,
)
from alfa.paper.provenance import run_time, source_commit, wall_time
from alfa.paper.result_table import copy_run_record, ship_cell
from alfa.paper.row_choice import choose_row

__all__ = ["BEST", "PARTS", "pretrained_config", "run", "selected_iterations"]

NAME = "pretrained_omniglot"

PARTS = {"twin": "minimal_train.txt", "model": "minimal_all.txt"}
"""The training classes of each of a number of ways' two runs."""

BEST = "best"
"""The ``--method`` that lets the protocol's validation choose each number of ways' row and
variant (:func:`alfa.paper.row_choice.choose_row`)."""


def selected_iterations(table: Path, ways: int, method: str) -> int:
    """The meta-iterations the protocol's validation chose for a row: the median (rounded down to
    a tested checkpoint) of the iterations of its seeds' tested checkpoints in ``table`` (an
    ``omniglot_protocol*.json``).

    Raises:
        AlfaError: the table cannot be read, or holds no scored cell of the row.
    """
    rows = read_protocol_table(table)["rows"]
    chosen = sorted(
        r["checkpoint_iteration"]
        for r in rows
        if (r["ways"], r["method"]) == (ways, method)
        and r.get("accuracy") is not None
        and isinstance(r.get("checkpoint_iteration"), int)
    )
    if not chosen:
        raise AlfaError(
            f"'{table}' holds no tested {ways}-way {method} cell; run it first "
            f"(alfa reproduce omniglot --only '{ways}way-{method}-s*')"
        )
    return int(statistics.median_low(chosen))


def pretrained_config(
    ways: int,
    method: str,
    part: str,
    iterations: int,
    *,
    variant: str | None = None,
    data: str | None = None,
) -> Config:
    """The protocol's config of ``method`` (seed 0, ``variant``) trained on ``part``'s classes
    (:data:`PARTS`) for ``iterations`` meta-iterations, without validation.

    Raises:
        AlfaError: an unknown part, method, number of ways or variant.
    """
    if part not in PARTS:
        raise AlfaError(f"unknown part {part!r}; the parts are {', '.join(PARTS)}")
    base = config_to_dict(protocol_config(ways, method, 0, iterations, data=data, variant=variant))
    base["name"] = f"omniglot-{ways}way-{part}"
    base["data"].update(split_file=f"{SPLITS}/{PARTS[part]}", val_split_file="")
    base["train"].update(val_every=0)
    return config_from_dict(base)


def _within(run_dir: Path, tasks: int) -> dict[str, Any]:
    """The within-alphabet one-shot accuracy of a run's last checkpoint, without per-task lists."""
    from alfa.runs.class_lists import read_run_class_lists
    from alfa.runs.reopen import load_run
    from alfa.runs.within_alphabet import evaluate_within_alphabet
    from alfa.tasks.within_alphabet import WithinAlphabetSource

    config, learner, _, _ = load_run(run_dir, checkpoint="last")
    source = WithinAlphabetSource.from_config(config, read_run_class_lists(run_dir))
    result = evaluate_within_alphabet(
        learner, source, tasks=tasks, seed=config.eval.seed, batch=config.eval.batch
    )
    result.pop("per_task")
    result.pop("task_alphabets")
    for entry in result["separate"].values():
        entry.pop("per_task", None)
    return result


def _ship(twin_dir: Path, model_dir: Path, evidence: Path, per_task: list[float]) -> None:
    """Copy the evidence of a number of ways' runs into ``evidence``: the twin's as a protocol
    cell's (config, log, class lists, per-episode test accuracy) with its tested checkpoint,
    the last (it trains without validation), and the model's config, log and provenance (its
    weights are the exported file)."""
    from alfa.runs.checkpoint import list_checkpoints

    ship_cell(twin_dir, evidence / twin_dir.name, per_task, "per_task_accuracy.json")
    last = list_checkpoints(twin_dir / "checkpoints")[-1]
    shutil.copyfile(last, evidence / twin_dir.name / "checkpoints" / last.name)
    copy_run_record(model_dir, evidence / model_dir.name)


def _kept(results: Path, ways: tuple[int, ...]) -> list[dict[str, Any]]:
    """The entries of an earlier ``pretrained_omniglot.json`` in ``results`` for other numbers
    of ways than ``ways``: a recipe run for one number of ways keeps the other's model."""
    path = results / f"{NAME}.json"
    if not path.is_file():
        return []
    try:
        models = json.loads(path.read_text())["models"]
        return [m for m in models if m["ways"] not in ways]
    except (ValueError, KeyError, TypeError) as exc:
        message = f"'{path}' is not a pretrained_omniglot.json ({exc}); move it away"
        raise AlfaError(message) from None


def _percent(mean: float | None, ci: float | None) -> str:
    return "-" if mean is None else f"{100 * mean:.2f} +- {100 * (ci or 0):.2f}%"


def markdown(doc: dict[str, Any]) -> str:
    """``pretrained_omniglot.md`` from its JSON content."""
    lines = [
        "# The pretrained Omniglot models",
        "",
        "Each model is a row of the protocol (`results/omniglot_protocol.md`) trained on all 8 "
        "minimal alphabets for the meta-iterations its validation chose; its twin, trained on 6 "
        "alphabets the same way, is tested on the 2 held-out ones (Early_Aramaic, Tagalog): on "
        "the protocol's 600 test episodes, and on within-alphabet one-shot episodes (the "
        "characters of one alphabet, unrotated, one drawing each as the support set).",
        "",
        "| ways | row | meta-iterations | twin: 600 test episodes | twin: within one alphabet "
        "| exported model | twin wall time | model wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in doc["models"]:
        within = entry["within"]
        parts = [
            f"{name} {_percent(a['mean'], a['ci95'])}" for name, a in within["alphabets"].items()
        ]
        parts += [
            f"{name} ({s['characters']}-way) {_percent(s['mean'], s['ci95'])}"
            for name, s in within["separate"].items()
        ]
        row = LABELS[entry["method"]] + (f", {entry['variant']}" if entry["variant"] else "")
        lines.append(
            f"| {entry['ways']} | {row} | {entry['iterations']} | "
            f"{_percent(entry['test']['mean'], entry['test']['ci95'])} | {'; '.join(parts)} | "
            f"`{entry['export']}` | {_minutes(entry, 'twin')} | {_minutes(entry, 'model')} |"
        )
    lines += [
        "",
        "Wall time: one thread per run; the sum of the training times of the processes that "
        "trained it (at least that, when one was killed before it could record its time); "
        '"last process": an entry from before that record, the time of the process that '
        "finished the run, tests included (one that only resumed a finished run tested it).",
        "",
    ]
    chosen = [e for e in doc["models"] if "choice" in e]
    if chosen:
        lines += ["Chosen on validation (`--method best`, `alfa.paper.row_choice`):", ""]
        lines += [f"- {e['ways']}-way: {e['choice']['reason']}" for e in chosen]
        lines.append("")
    lines += ["Written by:", ""]
    lines += [f"- {e['ways']}-way: `{e['command']}`" for e in doc["models"] if "command" in e]
    return "\n".join([*lines, ""])


def _minutes(entry: dict[str, Any], part: str) -> str:
    """A run's wall time: what its processes recorded (:func:`alfa.paper.provenance.wall_time`),
    or for an entry from before that record, that of the process that finished it."""
    if part in entry.get("training", {}):
        seconds, whole = wall_time(entry["training"][part])
        return f"{seconds / 60:.1f} min" if whole else f"at least {seconds / 60:.1f} min"
    seconds = entry.get("train_seconds", {}).get(part)
    return "-" if seconds is None else f"{seconds / 60:.1f} min (last process)"


def run(
    results: Path,
    runs: Path,
    out: Path,
    method: str,
    *,
    ways: tuple[int, ...] = WAYS,
    variant: str | None = None,
    table: Path | None = None,
    iterations: int | None = None,
    tasks: int = 600,
    data: str | None = None,
    jobs: int = 2,
    command: str = "python scripts/pretrained_omniglot.py",
) -> dict[str, Any]:
    """Train (or resume) the twin and the model of each number of ``ways``, test the twin,
    export the model to ``out/omniglot-<N>way.safetensors`` and write the result files.

    ``method``: a row of the protocol, or :data:`BEST` to let validation choose the row and
    variant of each number of ways (:func:`~alfa.paper.row_choice.choose_row`; the entry records
    why). ``table``: the protocol table that chooses the meta-iterations (default: the
    protocol's, or the variant's, in ``results``); ``iterations`` overrides it.

    Raises:
        AlfaError: an unknown method or variant, a table without the row, or (:data:`BEST`) a
            number of ways whose protocol cells have not all run.
    """
    from alfa.paper.cells import train_and_test_all
    from alfa.runs.checkpoint import atomic_write_bytes
    from alfa.runs.export import export_run

    if method != BEST and method not in LABELS:
        raise AlfaError(f"unknown row {method!r}; the rows are {', '.join(LABELS)}, or {BEST}")
    if method == BEST and variant is not None:
        raise AlfaError(f"--variant goes with a named --method; {BEST} chooses the variant too")
    check_variant(variant)
    choices = {n: choose_row(results, n) for n in ways} if method == BEST else {}
    rows = {n: (c.method, c.variant) for n, c in choices.items()} or dict.fromkeys(
        ways, (method, variant)
    )
    kept = _kept(results, ways)
    source = source_commit()  # before this run writes anything
    work: list[tuple[Config, Path]] = []
    counts: list[int] = []  # test episodes of each run
    tables: dict[int, Path] = {}
    for n in ways:
        row, row_variant = rows[n]
        tables[n] = results / f"{table_name(row_variant)}.json" if table is None else table
        budget = selected_iterations(tables[n], n, row) if iterations is None else iterations
        for part in PARTS:
            config = pretrained_config(n, row, part, budget, variant=row_variant, data=data)
            work.append((config, runs / config.name))
            # the model, trained on every alphabet, has no held-out one to be tested on
            counts.append(tasks if part == "twin" else 0)
    tested = dict(train_and_test_all(work, counts, jobs=jobs, progress=jobs == 1))
    if len(tested) < len(work) or any(r.get("stopped") for r in tested.values()):
        raise AlfaError("training stopped before every run finished; run the command again")
    diverged = [work[i][0].name for i, r in tested.items() if r.get("diverged")]
    if diverged:
        raise AlfaError(f"{', '.join(diverged)} diverged; the recipe does not ship it")
    models = []
    for index in range(0, len(work), len(PARTS)):
        (twin, twin_dir), (_, model_dir) = work[index], work[index + 1]
        n = twin.data.ways
        to = out / f"omniglot-{n}way.safetensors"
        out.mkdir(parents=True, exist_ok=True)
        exported = export_run(model_dir, to, checkpoint="last")
        result = tested[index]
        _ship(twin_dir, model_dir, results / NAME, result["per_task"])
        models.append(
            {
                "ways": n,
                "method": rows[n][0],
                "variant": rows[n][1],
                "iterations": twin.train.iterations,
                "test": {k: result[k] for k in ("mean", "ci95", "tasks", "steps")},
                "within": _within(twin_dir, tasks),
                "export": to.name,
                "export_sha256": exported.metadata.get("sha256"),
                "training": {
                    "twin": run_time(twin_dir, result["seconds"]),
                    "model": run_time(model_dir, tested[index + 1]["seconds"]),
                },
                "command": command,
                "table": str(tables[n]),
                "source": source,
            }
            | ({"choice": choices[n].as_dict()} if n in choices else {})
        )
    doc = {"models": sorted(models + kept, key=lambda m: WAYS.index(m["ways"]))}
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(results / f"{NAME}.json", (json.dumps(doc, indent=1) + "\n").encode())
    atomic_write_bytes(results / f"{NAME}.md", markdown(doc).encode())
    return doc


def main(argv: list[str] | None = None) -> int:
    """``python scripts/pretrained_omniglot.py --method ROW``: the shipped models and their
    results; a user error is one line on stderr and exit code 2."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        description="Train the pretrained Omniglot models with a row of the Omniglot protocol "
        "(its validation-chosen budget), test their 6-alphabet twins and export the models."
    )
    parser.add_argument(
        "--method",
        required=True,
        choices=[*LABELS, BEST],
        help=f"the row; {BEST}: the row and variant the protocol's validation chooses",
    )
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="a variant of the protocol")
    parser.add_argument("--ways", type=int, nargs="+", default=list(WAYS), choices=WAYS)
    parser.add_argument("--iterations", type=int, help="meta-iterations (default: the table's)")
    parser.add_argument("--results", default="results", help="folder of the protocol's tables")
    parser.add_argument("--runs", default="runs/pretrained_omniglot", help="run directories")
    parser.add_argument(
        "--out", default="src/alfa/resources/pretrained", help="folder of the exported models"
    )
    parser.add_argument("--data", help="folder of the two minimal zips (default $ALFA_DATA/...)")
    parser.add_argument("--tasks", type=int, default=600, help="test episodes")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once")
    args = parser.parse_args(argv)
    shown = [f"--method {args.method}", *([f"--variant {args.variant}"] if args.variant else [])]
    if sorted(args.ways) != sorted(WAYS):
        shown.append("--ways " + " ".join(map(str, args.ways)))
    try:
        if args.iterations is not None and args.iterations < 1:
            raise AlfaError(f"--iterations must be at least 1, got {args.iterations}")
        doc = run(
            Path(args.results),
            Path(args.runs),
            Path(args.out),
            args.method,
            ways=tuple(args.ways),
            variant=args.variant,
            iterations=args.iterations,
            tasks=args.tasks,
            data=args.data,
            jobs=args.jobs,
            command=" ".join(["python scripts/pretrained_omniglot.py", *shown]),
        )
    except AlfaError as exc:
        print(f"alfa: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
