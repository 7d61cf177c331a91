"""``alfa reproduce omniglot``: train, test and ship every cell of the Omniglot protocol.

The cells (rows, seeds, the shared config) are in :mod:`alfa.paper.omniglot_cells`, the
statistics, verdicts and report in :mod:`alfa.paper.omniglot_report`; this module trains and
tests the cells (:mod:`alfa.paper.cells`, several at once with ``--jobs``), ships each one's
evidence and writes ``omniglot_protocol.md`` and ``omniglot_protocol.json``.

``--variant NAME`` runs a variant of the protocol (:data:`~alfa.paper.omniglot_cells.VARIANTS`)
as a table of its own, ``omniglot_protocol_<NAME>.{md,json}``, compared cell by cell with the
protocol's table in the same results folder.

It is resumable cell by cell: a cell already in ``omniglot_protocol.json`` with the same budget
is skipped, an interrupted one continues from its last checkpoint (``--stop-after`` starts no new
cell after a time, for machines that stop every process after a few hours). Each finished cell's
best checkpoint, ``config.yaml``, ``metrics.jsonl``, ``provenance.jsonl``, class lists and
per-episode test accuracies are copied to ``<results>/omniglot_protocol/<cell>/``, where
``alfa eval`` reproduces its number.
The shipped ``results/omniglot_protocol.*`` are written by ``python scripts/omniglot_protocol.py``;
``alfa reproduce omniglot`` writes into ``runs/omniglot_protocol``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from functools import partial
from pathlib import Path
from typing import Any

from alfa.errors import AlfaError
from alfa.paper.cells import deadline_from
from alfa.paper.omniglot_cells import (
    CELLS,
    ITERATIONS,
    METHODS,
    VARIANTS,
    cell_key,
    check_variant,
    protocol_config,
    read_protocol_table,
    row_key,
    table_name,
)
from alfa.paper.omniglot_figure import draw
from alfa.paper.omniglot_report import against_protocol, markdown, paired_rows, summaries
from alfa.paper.provenance import run_time, source_commit
from alfa.paper.result_table import (
    add_table_arguments,
    save_table,
    save_table_or_fail,
    script_main,
    select_cells,
    ship_cell,
)

__all__ = ["add_arguments", "main", "report", "reproduce", "run", "select"]


_DERIVED = ("cells", "summary", "paired", "against_protocol")
"""The keys of a table that :func:`_write` computes from its rows."""


def _validation(run_dir: Path) -> dict[str, Any]:
    """The validation curve of a run (iteration, accuracy in points) from its ``metrics.jsonl``,
    and its best point (the checkpoint that is tested).

    Raises:
        DataError: the log is damaged (:func:`alfa.runs.runlog.read_metrics`).
    """
    from alfa.runs.runlog import read_metrics

    curve = []
    for record in read_metrics(run_dir / "metrics.jsonl"):
        value = record.get("accuracy")
        if record.get("split") == "val" and isinstance(value, float) and math.isfinite(value):
            curve.append([record["iteration"], round(100.0 * value, 4)])
    best = max(curve, key=lambda p: p[1], default=None)
    return {"val_curve": curve, "best_val": best[1] if best else None}


def _write(results: Path, doc: dict[str, Any]) -> None:
    from alfa.runs.checkpoint import atomic_write_bytes

    name = table_name(doc.get("variant"))
    order = {cell_key(*c): i for i, c in enumerate(CELLS)}
    doc["rows"].sort(key=lambda r: order[row_key(r)])
    doc["cells"] = [list(c) for c in CELLS]
    doc["summary"] = summaries(doc["rows"])
    doc["paired"] = paired_rows(doc["rows"], results / name)
    if doc.get("variant"):
        base = read_protocol_table(results / f"{table_name()}.json")["rows"]
        doc["against_protocol"] = against_protocol(
            doc["rows"], base, results / name, results / table_name()
        )
    atomic_write_bytes(results / f"{name}.json", (json.dumps(doc, indent=1) + "\n").encode())
    atomic_write_bytes(results / f"{name}.md", markdown(doc).encode())
    draw(doc["rows"], results / f"{name}.png", _figure_title(doc.get("variant")))


def _figure_title(variant: str | None) -> str:
    return "Omniglot protocol (minimal background sets, 4-CONV, 5 inner steps)" + (
        f", variant {variant}" if variant else ""
    )


def select(only: list[str] | None) -> list[tuple[int, str, int]]:
    """The cells matching any of ``only``'s patterns (fnmatch), in the protocol's order.

    Raises:
        AlfaError: a pattern matches no cell.
    """
    hint = (
        f"cells are <ways>way-<method>-s<seed>, e.g. {cell_key(*CELLS[0])} or '20way-*-s0' "
        "(alfa reproduce omniglot --help)"
    )
    return select_cells(CELLS, cell_key, only, hint)


def run(
    results: Path,
    runs: Path,
    *,
    iterations: int | None = None,
    only: list[str] | None = None,
    tasks: int = 600,
    command: str = "python scripts/omniglot_protocol.py",
    deadline: float | None = None,
    jobs: int = 1,
    data: str | None = None,
    variant: str | None = None,
) -> dict[str, Any]:
    """Train the missing cells (those matching ``only``), write the result files.

    ``data``: the folder of the two minimal zips (default ``$ALFA_DATA/omniglot``).
    ``variant``: a key of :data:`~alfa.paper.omniglot_cells.VARIANTS` (None: the protocol).

    ``iterations``: meta-iterations of every cell (default: the protocol's, per number of
    ways). ``deadline`` (a ``time.time()`` value): start no new cell after it. ``jobs``: cells
    trained at once, each in its own process on one thread (the results do not depend on it).

    Raises:
        AlfaError: a bad folder, pattern, or earlier ``omniglot_protocol.json``; or, after the
            cells ran, a report that cannot be made from the shipped evidence (every finished
            cell's row is saved first: :func:`~alfa.paper.result_table.save_table`).
    """
    from alfa.paper.cells import train_and_test_all

    for folder, what in ((results, "--results"), (runs, "--runs")):
        if folder.exists() and not folder.is_dir():
            raise AlfaError(f"{what} '{folder}' is not a folder; choose a folder")
    check_variant(variant)
    cells = select(only)
    name = table_name(variant)
    json_path = results / f"{name}.json"
    doc = read_protocol_table(json_path)
    if doc["rows"] and doc.get("budget_iterations") != iterations:
        raise AlfaError(
            f"'{json_path}' holds runs of another budget (--iterations "
            f"{doc.get('budget_iterations')}); use another --results"
        )
    doc.update(budget_iterations=iterations, command=command, written_by=command, variant=variant)
    doc["results"] = str(results)
    doc["source"] = source_commit()
    done = {row_key(r) for r in doc["rows"]}
    todo = [c for c in cells if cell_key(*c) not in done]
    label = f"omniglot protocol{f' ({variant})' if variant else ''}"
    print(f"{label}: {len(cells) - len(todo)} cell(s) done, {len(todo)} to run")
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlfaError(f"cannot create '{results}': {exc.strerror or exc}") from exc
    work = []
    for ways, method, seed in todo:
        config = protocol_config(ways, method, seed, iterations, tasks, data, variant)
        work.append((config, runs / f"{config.name}-{config.train.iterations}"))

    saving = (partial(_write, results, doc), json_path, doc, _DERIVED)

    written = False  # whether the last save wrote the report as well as the rows
    finished = train_and_test_all(work, tasks, jobs=jobs, deadline=deadline, progress=jobs == 1)
    for index, r in finished:
        (ways, method, seed), (config, run_dir) = todo[index], work[index]
        key = cell_key(ways, method, seed)
        if r.get("stopped"):  # Ctrl-C or SIGTERM: the cells that are running stop too
            print(f"{key}: stopped; run the command again to resume it")
            break
        per_task = r.get("per_task")
        ship_cell(run_dir, results / name / key, per_task, "per_task_accuracy.json")
        scored = r.get("mean") is not None
        row = {
            "ways": ways,
            "method": method,
            "seed": seed,
            "accuracy": 100.0 * r["mean"] if scored else None,
            "ci95": 100.0 * r["ci95"] if scored else None,
            "test_tasks": r.get("tasks"),
            "iterations": config.train.iterations,
            "checkpoint_iteration": r.get("checkpoint_iteration"),
            "diverged": r.get("diverged"),
            **run_time(run_dir, r.get("seconds", 0.0)),
            "commit": doc["source"]["commit"],
            **_validation(run_dir),
        }
        doc["rows"] = [x for x in doc["rows"] if row_key(x) != key] + [row]
        written = save_table(*saving) is None  # the finished cell's row is saved at once
        score = "diverged" if not scored else f"{row['accuracy']:.2f} +- {row['ci95']:.2f}%"
        print(f"{key}: {score} (iteration {row['checkpoint_iteration']}, {row['train_seconds']} s)")
        sys.stdout.flush()
    if not written:  # no cell finished, or the last one's report could not be made
        save_table_or_fail(*saving)
    return doc


def report(results: Path, written_by: str, variant: str | None = None) -> dict[str, Any]:
    """Rewrite ``omniglot_protocol.md`` and ``.json`` (or a variant's) from the rows already in
    the JSON file.

    Raises:
        AlfaError: there is no such file, or it is not a table of this protocol.
    """
    json_path = results / f"{table_name(variant)}.json"
    if not json_path.is_file():
        raise AlfaError(f"'{json_path}' does not exist; there is nothing to report")
    doc = read_protocol_table(json_path)
    doc.setdefault("command", written_by)
    doc.update(source=source_commit(), written_by=written_by, results=str(results), variant=variant)
    _write(results, doc)
    return doc


def add_arguments(parser: argparse.ArgumentParser, *, results: str, runs: str, jobs: int) -> None:
    """The options of ``alfa reproduce omniglot`` and ``scripts/omniglot_protocol.py``."""
    parser.add_argument(
        "--iterations",
        type=int,
        help="meta-iterations per cell (default: the protocol's, "
        + ", ".join(f"{n} for {w}-way" for w, n in ITERATIONS.items())
        + ")",
    )
    parser.add_argument(
        "--data",
        help="folder of images_background_small1.zip and images_background_small2.zip "
        "(default: $ALFA_DATA/omniglot, which shipped configs name)",
    )
    parser.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        help="run a variant of the protocol as a table of its own, compared cell by cell with "
        "the protocol's (jitter: training images randomly turned, moved and zoomed a little)",
    )
    add_table_arguments(
        parser,
        name=table_name(),
        results=results,
        runs=runs,
        jobs=jobs,
        only_help="cells to run, by name or fnmatch pattern: <ways>way-<method>-s<seed>, e.g. "
        f"20way-maml-s0 '20way-*-s0'; ways 20, 5; seeds 0-2; methods {', '.join(METHODS)}",
        evidence="per-episode accuracies",
    )


def reproduce(args: argparse.Namespace, program: str) -> int:
    """Run (or only report) the protocol as ``args`` say; ``program`` names the command in the
    result files.

    Raises:
        AlfaError: a bad option, folder or earlier result file.
    """
    if args.jobs < 1:
        raise AlfaError(f"--jobs must be at least 1, got {args.jobs}")
    if args.iterations is not None and args.iterations < 1:
        raise AlfaError(f"--iterations must be at least 1, got {args.iterations}")
    results = Path(args.results)
    variant = getattr(args, "variant", None)
    name = table_name(variant)
    chosen = ["--variant", variant] if variant else []
    if args.report_only:
        report(
            results,
            " ".join([program, "--report-only", "--results", str(results), *chosen]),
            variant,
        )
        print((results / f"{name}.md").read_text())
        return 0
    shown = [] if str(results) == "results" else ["--results", str(results)]
    shown += chosen
    if args.iterations is not None:
        shown += ["--iterations", str(args.iterations)]
    if args.tasks != 600:
        shown += ["--tasks", str(args.tasks)]
    run(
        results,
        Path(args.runs),
        iterations=args.iterations,
        only=args.only,
        tasks=args.tasks,
        command=" ".join([program, *shown]),
        deadline=deadline_from(args.stop_after),
        jobs=args.jobs,
        data=args.data,
        variant=variant,
    )
    print((results / f"{name}.md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python scripts/omniglot_protocol.py``: the shipped table, written into ``results/``."""
    return script_main(
        argv,
        description="The Omniglot protocol: MAML, learned-fixed, ALFA+MAML, ALFA+random init and "
        "ALFA+MAML with the stable generator, 20-way then 5-way 1-shot, seeds 0-2, validation-"
        "selected, paired over 600 test episodes. Resumable cell by cell.",
        program="python scripts/omniglot_protocol.py",
        runs="runs/omniglot_protocol",
        jobs=2,
        add_arguments=add_arguments,
        reproduce=reproduce,
    )


if __name__ == "__main__":
    raise SystemExit(main())
