"""``alfa reproduce omniglot``: train, test and ship every cell of the Omniglot protocol.

The cells (rows, seeds, the shared config) are in :mod:`alfa.paper.omniglot_cells`, the
statistics, verdicts and report in :mod:`alfa.paper.omniglot_report`; this module trains and
tests the cells (:mod:`alfa.paper.cells`, several at once with ``--jobs``), ships each one's
evidence and writes ``omniglot_protocol.md`` and ``omniglot_protocol.json``.

It is resumable cell by cell: a cell already in ``omniglot_protocol.json`` with the same budget
is skipped, an interrupted one continues from its last checkpoint (``--stop-after`` starts no new
cell after a time, for machines that stop every process after a few hours). Each finished cell's
best checkpoint, ``config.yaml``, ``metrics.jsonl``, class lists and per-episode test accuracies
are copied to ``<results>/omniglot_protocol/<cell>/``, where ``alfa eval`` reproduces its number.
The shipped ``results/omniglot_protocol.*`` are written by ``python scripts/omniglot_protocol.py``;
``alfa reproduce omniglot`` writes into ``runs/omniglot_protocol``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

from alfa.errors import AlfaError
from alfa.paper.cells import deadline_from
from alfa.paper.omniglot_cells import CELLS, ITERATIONS, METHODS, cell_key, protocol_config
from alfa.paper.omniglot_report import markdown, paired_rows, summaries
from alfa.paper.provenance import source_commit

__all__ = ["add_arguments", "main", "report", "reproduce", "run", "select"]

NAME = "omniglot_protocol"

_ROW_KEYS: dict[str, tuple[type, ...]] = {
    "ways": (int,),
    "method": (str,),
    "seed": (int,),
    "accuracy": (int, float, type(None)),
    "ci95": (int, float, type(None)),
    "iterations": (int,),
}
"""What a row of ``omniglot_protocol.json`` must hold (and of which types) to be kept."""


def _key(row: dict[str, Any]) -> str:
    return cell_key(row["ways"], row["method"], row["seed"])


def _read(path: Path) -> dict[str, Any]:
    """An earlier ``omniglot_protocol.json``, checked (an empty table when there is none).

    Raises:
        AlfaError: naming the file, when it cannot be read or does not hold result rows; it is
            left as it is.
    """
    from alfa.limits import read_bytes

    if not path.exists():
        return {"rows": []}
    if not path.is_file():
        raise AlfaError(f"'{path}' is not a file; move it away or choose another --results")
    try:
        doc = json.loads(read_bytes(path, cap=64 << 20, what="result table", error=AlfaError))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise AlfaError(
            f"'{path}' is not valid JSON{where}; repair it, or move it away to run every cell again"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise AlfaError(f"'{path}' does not hold a list of result rows; repair or move it away")
    known = {cell_key(*c) for c in CELLS}
    for i, row in enumerate(doc["rows"]):
        if not isinstance(row, dict):
            raise AlfaError(f"'{path}' row {i} is not a JSON object; repair or move the file away")
        bad = [key for key, kinds in _ROW_KEYS.items() if type(row.get(key, ...)) not in kinds]
        if row.get("accuracy") is None and not isinstance(row.get("diverged"), str):
            bad.append("diverged")
        if not bad and _key(row) not in known:
            bad.append("cell (not one of the protocol's)")
        if bad:
            raise AlfaError(
                f"'{path}' row {i} lacks or has a wrong {', '.join(bad)}; repair it, or move the "
                "file away to run every cell again"
            )
    return doc


def _validation(run_dir: Path) -> dict[str, Any]:
    """The validation curve of a run (iteration, accuracy in points) from its ``metrics.jsonl``,
    and its best point (the checkpoint that is tested)."""
    curve = []
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill; the run log starts a new one
            continue
        value = record.get("accuracy") if isinstance(record, dict) else None
        if record.get("split") == "val" and isinstance(value, float) and math.isfinite(value):
            curve.append([record["iteration"], round(100.0 * value, 4)])
    best = max(curve, key=lambda p: p[1], default=None)
    return {"val_curve": curve, "best_val": best[1] if best else None}


def _ship(run_dir: Path, dest: Path, per_task: list[float] | None) -> None:
    """Copy the evidence of a cell: best checkpoint, config, log, class lists and per-episode
    test accuracies."""
    (dest / "checkpoints").mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "metrics.jsonl"):
        shutil.copyfile(run_dir / name, dest / name)
    if (run_dir / "class_lists").is_dir():
        shutil.copytree(run_dir / "class_lists", dest / "class_lists", dirs_exist_ok=True)
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        shutil.copyfile(best, dest / "checkpoints" / "best.pt")
    if per_task is not None:
        text = json.dumps([round(v, 10) for v in per_task]) + "\n"
        (dest / "per_task_accuracy.json").write_text(text)


def _write(results: Path, doc: dict[str, Any]) -> None:
    from alfa.runs.checkpoint import atomic_write_bytes

    order = {cell_key(*c): i for i, c in enumerate(CELLS)}
    doc["rows"].sort(key=lambda r: order[_key(r)])
    doc["cells"] = [list(c) for c in CELLS]
    doc["summary"] = summaries(doc["rows"])
    doc["paired"] = paired_rows(doc["rows"], results / NAME)
    atomic_write_bytes(results / f"{NAME}.json", (json.dumps(doc, indent=1) + "\n").encode())
    atomic_write_bytes(results / f"{NAME}.md", markdown(doc).encode())


def select(only: list[str] | None) -> list[tuple[int, str, int]]:
    """The cells matching any of ``only``'s patterns (fnmatch), in the protocol's order.

    Raises:
        AlfaError: a pattern matches no cell.
    """
    if not only:
        return list(CELLS)
    for pattern in only:
        if not any(fnmatch.fnmatch(cell_key(*c), pattern) for c in CELLS):
            raise AlfaError(
                f"no cell matches {pattern!r}; cells are <ways>way-<method>-s<seed>, e.g. "
                f"{cell_key(*CELLS[0])} or '20way-*-s0' (alfa reproduce omniglot --help)"
            )
    return [c for c in CELLS if any(fnmatch.fnmatch(cell_key(*c), p) for p in only)]


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
) -> dict[str, Any]:
    """Train the missing cells (those matching ``only``), write the result files.

    ``data``: the folder of the two minimal zips (default ``$ALFA_DATA/omniglot``).

    ``iterations``: meta-iterations of every cell (default: the protocol's, per number of
    ways). ``deadline`` (a ``time.time()`` value): start no new cell after it. ``jobs``: cells
    trained at once, each in its own process on one thread (the results do not depend on it).

    Raises:
        AlfaError: a bad folder, pattern, or earlier ``omniglot_protocol.json``.
    """
    from alfa.paper.cells import train_and_test_all

    for folder, what in ((results, "--results"), (runs, "--runs")):
        if folder.exists() and not folder.is_dir():
            raise AlfaError(f"{what} '{folder}' is not a folder; choose a folder")
    cells = select(only)
    json_path = results / f"{NAME}.json"
    doc = _read(json_path)
    if doc["rows"] and doc.get("budget_iterations") != iterations:
        raise AlfaError(
            f"'{json_path}' holds runs of another budget (--iterations "
            f"{doc.get('budget_iterations')}); use another --results"
        )
    doc.update(budget_iterations=iterations, command=command, written_by=command)
    doc["results"] = str(results)
    doc["source"] = source_commit()
    done = {_key(r) for r in doc["rows"]}
    todo = [c for c in cells if cell_key(*c) not in done]
    print(f"omniglot protocol: {len(cells) - len(todo)} cell(s) done, {len(todo)} to run")
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlfaError(f"cannot create '{results}': {exc.strerror or exc}") from exc
    work = []
    for ways, method, seed in todo:
        config = protocol_config(ways, method, seed, iterations, tasks, data)
        work.append((config, runs / f"{cell_key(ways, method, seed)}-{config.train.iterations}"))
    finished = train_and_test_all(work, tasks, jobs=jobs, deadline=deadline, progress=jobs == 1)
    for index, r in finished:
        (ways, method, seed), (config, run_dir) = todo[index], work[index]
        key = cell_key(ways, method, seed)
        if r.get("stopped"):  # Ctrl-C or SIGTERM: the cells that are running stop too
            print(f"{key}: stopped; run the command again to resume it")
            break
        per_task = r.get("per_task")
        _ship(run_dir, results / NAME / key, per_task)
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
            "train_seconds": round(r.get("seconds", 0.0), 1),
            "commit": doc["source"]["commit"],
            **_validation(run_dir),
        }
        doc["rows"] = [x for x in doc["rows"] if _key(x) != key] + [row]
        _write(results, doc)  # a finished cell is saved at once
        score = "diverged" if not scored else f"{row['accuracy']:.2f} +- {row['ci95']:.2f}%"
        print(f"{key}: {score} (iteration {row['checkpoint_iteration']}, {row['train_seconds']} s)")
        sys.stdout.flush()
    _write(results, doc)
    return doc


def report(results: Path, written_by: str) -> dict[str, Any]:
    """Rewrite ``omniglot_protocol.md`` and ``.json`` from the rows already in the JSON file.

    Raises:
        AlfaError: there is no such file, or it is not a table of this protocol.
    """
    json_path = results / f"{NAME}.json"
    if not json_path.is_file():
        raise AlfaError(f"'{json_path}' does not exist; there is nothing to report")
    doc = _read(json_path)
    doc.setdefault("command", written_by)
    doc.update(source=source_commit(), written_by=written_by, results=str(results))
    _write(results, doc)
    return doc


def add_arguments(parser: argparse.ArgumentParser, *, results: str, runs: str, jobs: int) -> None:
    """The options of ``alfa reproduce omniglot`` and ``scripts/omniglot_protocol.py``."""
    parser.add_argument("--results", default=results, help=f"folder of {NAME}.md and .json")
    parser.add_argument("--runs", default=runs, help="folder of the cells' run directories")
    parser.add_argument(
        "--iterations",
        type=int,
        help="meta-iterations per cell (default: the protocol's, "
        + ", ".join(f"{n} for {w}-way" for w, n in ITERATIONS.items())
        + ")",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        help="cells to run, by name or fnmatch pattern: <ways>way-<method>-s<seed>, e.g. "
        f"20way-maml-s0 '20way-*-s0'; ways 20, 5; seeds 0-2; methods {', '.join(METHODS)}",
    )
    parser.add_argument("--tasks", type=int, default=600, help="test episodes (600 in the table)")
    parser.add_argument(
        "--data",
        help="folder of images_background_small1.zip and images_background_small2.zip "
        "(default: $ALFA_DATA/omniglot, which shipped configs name)",
    )
    parser.add_argument(
        "--jobs", type=int, default=jobs, help="cells trained at once, one process and thread each"
    )
    parser.add_argument(
        "--stop-after", help="UTC time HH:MM after which no new cell is started (e.g. 07:55)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help=f"rewrite {NAME}.md and .json from the rows of the JSON file and the per-episode "
        f"accuracies under {NAME}/ (trains nothing)",
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
    if args.report_only:
        report(results, f"{program} --report-only --results {results}")
        print((results / f"{NAME}.md").read_text())
        return 0
    shown = [] if str(results) == "results" else ["--results", str(results)]
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
    )
    print((results / f"{NAME}.md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python scripts/omniglot_protocol.py``: the shipped table, written into ``results/``."""
    parser = argparse.ArgumentParser(
        description="The Omniglot protocol: MAML, learned-fixed, ALFA+MAML, ALFA+random init and "
        "ALFA+MAML with the stable generator, 20-way then 5-way 1-shot, seeds 0-2, validation-"
        "selected, paired over 600 test episodes. Resumable cell by cell.",
    )
    add_arguments(parser, results="results", runs="runs/omniglot_protocol", jobs=2)
    try:
        return reproduce(parser.parse_args(argv), "python scripts/omniglot_protocol.py")
    except AlfaError as exc:
        print(f"alfa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
