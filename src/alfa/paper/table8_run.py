"""``alfa reproduce table8``: train, test and ship every cell of Table 8, write the table.

The cells (rows, seeds, configs) are in :mod:`alfa.paper.table8_cells`, the statistics and the
report in :mod:`alfa.paper.table8_report`; this module trains and tests the cells
(:mod:`alfa.paper.cells`, several at once with ``--jobs``), ships each one's evidence and writes
``table8.md`` and ``table8.json``.

Because every run is tested on the same tasks, two rows are compared paired over tasks: the
per-task MSE differences of each seed give a mean difference with its 95% CI.

It is resumable cell by cell: a cell already in ``table8.json`` with the same iteration budget
is skipped, and an interrupted cell continues from its last checkpoint. Each finished cell's best
checkpoint, ``config.yaml``, ``metrics.jsonl`` and per-task test MSEs are copied to
``<results>/table8/<cell>/``, where ``alfa eval`` reproduces its number. The shipped
``results/table8.md`` and ``results/table8.json`` are this table
(``python scripts/table8.py`` writes there; ``alfa reproduce table8`` into ``runs/table8``).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

from alfa.errors import AlfaError
from alfa.paper.cells import deadline_from
from alfa.paper.provenance import source_commit
from alfa.paper.result_table import (
    add_table_arguments,
    read_table,
    save_table,
    save_table_or_fail,
    script_main,
    select_cells,
    ship_cell,
)
from alfa.paper.table8_cells import (
    CELLS,
    DEFAULT_ITERATIONS,
    LABELS,
    cell_key,
    controlled_config,
    row_key,
)
from alfa.paper.table8_report import markdown, paired_rows, summaries

__all__ = ["main", "report", "reproduce", "run"]

_ROW_KEYS: dict[str, tuple[type, ...]] = {
    "net": (str,),
    "shots": (int,),
    "method": (str,),
    "seed": (int,),
    "mse": (int, float, type(None)),
    "ci95": (int, float, type(None)),
    "iterations": (int,),
}
"""What a row of ``table8.json`` must hold (and of which types) to be kept and shown."""


def _read(path: Path) -> dict[str, Any]:
    """An earlier ``table8.json``, checked (:func:`~alfa.paper.result_table.read_table`)."""
    return read_table(
        path,
        row_keys=_ROW_KEYS,
        score="mse",
        key=row_key,
        known={cell_key(*c) for c in CELLS},
    )


def _write(results: Path, doc: dict[str, Any]) -> None:
    from alfa.runs.checkpoint import atomic_write_bytes

    order = {cell_key(*c): i for i, c in enumerate(CELLS)}
    doc["rows"].sort(key=lambda r: order[row_key(r)])
    evidence = results / "table8"
    doc["summary"] = summaries(doc["rows"])
    doc["paired"] = paired_rows(doc["rows"], evidence)
    text = json.dumps(doc, indent=1) + "\n"
    atomic_write_bytes(results / "table8.json", text.encode())
    atomic_write_bytes(results / "table8.md", markdown(doc).encode())


def select(only: list[str] | None) -> list[tuple[str, int, str, int]]:
    """The cells matching any of ``only``'s patterns (fnmatch), in the recipe's order; every
    pattern must match a cell."""
    hint = (
        f"cells are <net>-k<shots>-<method>-s<seed>, e.g. {cell_key(*CELLS[0])} or "
        "'80x3-k20-alfa_maml-*' (alfa reproduce table8 --help)"
    )
    return select_cells(CELLS, cell_key, only, hint)


def run(
    results: Path,
    runs: Path,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    only: list[str] | None = None,
    tasks: int = 600,
    command: str = "python scripts/table8.py",
    deadline: float | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Train the missing cells (those matching ``only``'s patterns), write the result files.

    ``deadline`` (a ``time.time()`` value): start no new cell after it. ``jobs``: cells trained
    at once, each in its own process on one thread (the results do not depend on it).

    Raises:
        AlfaError: a bad folder, pattern, or earlier ``table8.json``; or, after the cells ran,
            a report that cannot be made from the shipped evidence (every finished cell's row
            is saved first: :func:`~alfa.paper.result_table.save_table`).
    """
    from alfa.paper.cells import train_and_test_all

    for folder, what in ((results, "--results"), (runs, "--runs")):
        if folder.exists() and not folder.is_dir():
            raise AlfaError(f"{what} '{folder}' is not a folder; choose a folder")
    cells = select(only)
    json_path = results / "table8.json"
    doc = _read(json_path)
    if doc["rows"] and doc.get("iterations", iterations) != iterations:
        raise AlfaError(
            f"'{json_path}' holds {doc['iterations']}-iteration runs; use another --results "
            f"for {iterations}"
        )
    doc["iterations"] = iterations
    doc["command"] = doc["written_by"] = command
    doc["results"] = str(results)
    earlier = (doc.get("source") or {}).get("commit")
    for row in doc["rows"]:
        row.setdefault("commit", earlier)  # rows written before rows recorded their commit
    doc["source"] = source_commit()
    done = {row_key(r) for r in doc["rows"] if r["mse"] is not None or r.get("diverged")}
    todo = [c for c in cells if cell_key(*c) not in done]
    print(f"table8: {len(cells) - len(todo)} cell(s) done, {len(todo)} to run")
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlfaError(f"cannot create '{results}': {exc.strerror or exc}") from exc
    work = [
        (controlled_config(*c, iterations=iterations), runs / f"{cell_key(*c)}-{iterations}")
        for c in todo
    ]

    saving = (partial(_write, results, doc), json_path, doc, ("summary", "paired"))

    written = False  # whether the last save wrote the report as well as the rows
    finished = train_and_test_all(work, tasks, jobs=jobs, deadline=deadline, progress=False)
    for index, r in finished:
        (net, shots, method, seed), (config, run_dir) = todo[index], work[index]
        key = cell_key(net, shots, method, seed)
        if r.get("stopped"):  # Ctrl-C or SIGTERM: the cells that are running stop too
            print(f"{key}: stopped; run the command again to resume it")
            break
        ship_cell(run_dir, results / "table8" / key, r.get("per_task"), "per_task_mse.json")
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
        doc["rows"] = [x for x in doc["rows"] if row_key(x) != key] + [row]
        written = save_table(*saving) is None  # the finished cell's row is saved at once
        score = "diverged" if row["mse"] is None else f"{row['mse']:.4f} +- {row['ci95']:.4f}"
        print(f"{key}: {score} (iteration {row['checkpoint_iteration']}, {row['train_seconds']} s)")
        sys.stdout.flush()
    if not written:  # no cell finished, or the last one's report could not be made
        save_table_or_fail(*saving)
    return doc


def report(results: Path, written_by: str) -> dict[str, Any]:
    """Rewrite ``table8.md`` and ``table8.json`` from the rows already in ``table8.json``."""
    json_path = results / "table8.json"
    if not json_path.is_file():
        raise AlfaError(f"'{json_path}' does not exist; there is nothing to report")
    doc = _read(json_path)
    doc["source"] = source_commit()
    doc["written_by"] = written_by
    doc["results"] = str(results)
    _write(results, doc)
    return doc


def add_arguments(parser: argparse.ArgumentParser, *, results: str, runs: str, jobs: int) -> None:
    """The options of ``alfa reproduce table8`` and ``scripts/table8.py`` (defaults differ)."""
    parser.add_argument(
        "--iterations", type=int, default=DEFAULT_ITERATIONS, help="meta-iterations per cell"
    )
    add_table_arguments(
        parser,
        name="table8",
        results=results,
        runs=runs,
        jobs=jobs,
        only_help="cells to run, by name or fnmatch pattern: <net>-k<shots>-<method>-s<seed>, "
        "e.g. 40x2-k5-maml-s0 '40x2-k5-*-s0' '80x3-k20-alfa_maml-*'; nets 40x2, 80x3; shots 5, "
        f"10, 20 (ablations: 5); seeds 0-2; methods {', '.join(LABELS)}",
        evidence="per-task MSEs",
    )


def reproduce(args: argparse.Namespace, program: str) -> int:
    """Run (or only report) the table as ``args`` say; ``program`` names the command in the
    result files (``alfa reproduce table8`` or ``python scripts/table8.py``).

    Raises:
        AlfaError: a bad option, folder or earlier ``table8.json``.
    """
    if args.jobs < 1:
        raise AlfaError(f"--jobs must be at least 1, got {args.jobs}")
    results = Path(args.results)
    if args.report_only:
        report(results, f"{program} --report-only --results {results}")
        print((results / "table8.md").read_text())
        return 0
    # The recipe's command (it trains every missing cell; --only and --jobs do not change a
    # result, so they are not part of it).
    shown = [] if str(results) == "results" else ["--results", str(results)]
    if args.iterations != DEFAULT_ITERATIONS:
        shown += ["--iterations", str(args.iterations)]
    if args.tasks != 600:
        shown += ["--tasks", str(args.tasks)]
    command = " ".join([program, *shown])
    run(
        results,
        Path(args.runs),
        iterations=args.iterations,
        only=args.only,
        tasks=args.tasks,
        command=command,
        deadline=deadline_from(args.stop_after),
        jobs=args.jobs,
    )
    print((results / "table8.md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python scripts/table8.py``: the shipped table, written into ``results/``."""
    return script_main(
        argv,
        description="Table 8: MAML, learned-fixed and ALFA+MAML (unit and official generator "
        "init) under one protocol (meta.grad_clip 1.0 for all), seeds 0-2; plus the no-clip "
        "and generator-switch ablations. Resumable cell by cell.",
        program="python scripts/table8.py",
        runs="runs/table8_controlled",
        jobs=1,
        add_arguments=add_arguments,
        reproduce=reproduce,
    )


if __name__ == "__main__":
    raise SystemExit(main())
