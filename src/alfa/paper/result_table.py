"""What every seeded, resumable result table shares: reading its JSON file back (checked),
choosing cells by pattern, shipping a finished cell's evidence, and the command-line options.

The tables are Table 8 (:mod:`alfa.paper.table8_run`) and the Omniglot protocol
(:mod:`alfa.paper.omniglot_run`); each names its cells, its rows' keys and its score.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from alfa.errors import AlfaError
from alfa.limits import read_bytes

__all__ = [
    "add_table_arguments",
    "copy_run_record",
    "read_table",
    "save_table",
    "save_table_or_fail",
    "script_main",
    "select_cells",
    "ship_cell",
]

Cell = TypeVar("Cell", bound=tuple)

TABLE_CAP = 64 << 20
"""The largest result table read back (a full table is well under a megabyte)."""


def read_table(
    path: Path,
    *,
    row_keys: dict[str, tuple[type, ...]],
    score: str,
    key: Callable[[dict[str, Any]], str],
    known: set[str],
) -> dict[str, Any]:
    """An earlier result table, checked (an empty table when there is none).

    Every row must hold ``row_keys`` with values of the listed types, a ``score`` or, when the
    score is None, a ``diverged`` message, and be one of the ``known`` cells (by ``key(row)``).

    Raises:
        AlfaError: naming the file (and the row), when it cannot be read or does not hold result
            rows; it is left as it is.
    """
    if not path.exists():
        return {"rows": []}
    if not path.is_file():
        raise AlfaError(f"'{path}' is not a file; move it away or choose another --results")
    try:
        doc = json.loads(read_bytes(path, cap=TABLE_CAP, what="result table", error=AlfaError))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise AlfaError(
            f"'{path}' is not valid JSON{where}; repair it, or move it away to run every cell again"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise AlfaError(f"'{path}' does not hold a list of result rows; repair or move it away")
    for i, row in enumerate(doc["rows"]):
        if not isinstance(row, dict):
            raise AlfaError(f"'{path}' row {i} is not a JSON object; repair or move the file away")
        bad = [k for k, kinds in row_keys.items() if type(row.get(k, ...)) not in kinds]
        if row.get(score) is None and not isinstance(row.get("diverged"), str):
            bad.append("diverged")
        if not bad and key(row) not in known:
            bad.append("cell (not one of the recipe's)")
        if bad:
            raise AlfaError(
                f"'{path}' row {i} lacks or has a wrong {', '.join(bad)}; repair it, or move the "
                "file away to run every cell again"
            )
    return doc


def save_table(
    write: Callable[[], None], json_path: Path, doc: dict[str, Any], derived: Sequence[str]
) -> str | None:
    """Write a table's result files with ``write``; None when it did.

    When they cannot be made (``write`` raised :class:`AlfaError`: a shipped cell's evidence was
    moved away or damaged), ``doc`` is written to ``json_path`` without its ``derived`` keys,
    so that no finished cell's row is lost and a later ``--report-only`` rebuilds the rest; the
    reason is printed as a warning and returned.
    """
    try:
        write()
    except AlfaError as exc:
        from alfa.runs.checkpoint import atomic_write_bytes

        rows_only = {k: v for k, v in doc.items() if k not in derived}
        atomic_write_bytes(json_path, (json.dumps(rows_only, indent=1) + "\n").encode())
        print(
            f"warning: {exc}; the rows are saved in '{json_path}', the report is not",
            file=sys.stderr,
        )
        sys.stderr.flush()
        return str(exc)
    return None


def save_table_or_fail(
    write: Callable[[], None], json_path: Path, doc: dict[str, Any], derived: Sequence[str]
) -> None:
    """:func:`save_table`, for a recipe's last save: a report that cannot be made stops it.

    Raises:
        AlfaError: naming the reason and ``json_path``, where every finished row is saved.
    """
    failure = save_table(write, json_path, doc, derived)
    if failure:
        raise AlfaError(
            f"{failure}; every finished cell's row is saved in '{json_path}': mend that and write "
            "the report with --report-only"
        )


def select_cells(
    cells: Sequence[Cell], name: Callable[..., str], only: list[str] | None, hint: str
) -> list[Cell]:
    """The cells whose ``name(*cell)`` matches any of ``only``'s fnmatch patterns, in order.

    Raises:
        AlfaError: a pattern matches no cell (``hint`` says what names look like).
    """
    if not only:
        return list(cells)
    for pattern in only:
        if not any(fnmatch.fnmatch(name(*c), pattern) for c in cells):
            raise AlfaError(f"no cell matches {pattern!r}; {hint}")
    return [c for c in cells if any(fnmatch.fnmatch(name(*c), p) for p in only)]


def copy_run_record(run_dir: Path, dest: Path) -> None:
    """Copy what a run wrote about itself into ``dest`` (made if missing): its config, its log
    (``metrics.jsonl``) and its provenance (older runs lack it)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "metrics.jsonl", "provenance.jsonl"):
        if name != "provenance.jsonl" or (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, dest / name)


def ship_cell(run_dir: Path, dest: Path, per_task: list[float] | None, per_task_file: str) -> None:
    """Copy the evidence of a finished cell into ``dest``: its best checkpoint, config, log,
    provenance (the commit, command and time of each process that trained it), class lists (when
    the run kept any) and per-task test values (10 digits)."""
    copy_run_record(run_dir, dest)
    (dest / "checkpoints").mkdir(exist_ok=True)
    if (run_dir / "class_lists").is_dir():
        shutil.copytree(run_dir / "class_lists", dest / "class_lists", dirs_exist_ok=True)
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        shutil.copyfile(best, dest / "checkpoints" / "best.pt")
    if per_task is not None:
        text = json.dumps([round(v, 10) for v in per_task]) + "\n"
        (dest / per_task_file).write_text(text)


def add_table_arguments(
    parser: argparse.ArgumentParser,
    *,
    name: str,
    results: str,
    runs: str,
    jobs: int,
    only_help: str,
    evidence: str,
) -> None:
    """The options every table's command has (``--iterations`` is each table's own):
    ``--results``, ``--runs``, ``--only``, ``--tasks``, ``--jobs``, ``--stop-after`` and
    ``--report-only``. ``name`` is the table's file name, ``evidence`` what its cells' folders
    hold per task."""
    parser.add_argument("--results", default=results, help=f"folder of {name}.md and {name}.json")
    parser.add_argument("--runs", default=runs, help="folder of the cells' run directories")
    parser.add_argument("--only", nargs="+", help=only_help)
    parser.add_argument("--tasks", type=int, default=600, help="test tasks (600 in the table)")
    parser.add_argument(
        "--jobs", type=int, default=jobs, help="cells trained at once, one process and thread each"
    )
    parser.add_argument(
        "--stop-after", help="UTC time HH:MM after which no new cell is started (e.g. 07:55)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help=f"rewrite {name}.md and {name}.json from the rows of {name}.json and the {evidence} "
        f"under {name}/ (trains nothing)",
    )


def script_main(
    argv: list[str] | None,
    *,
    description: str,
    program: str,
    runs: str,
    jobs: int,
    add_arguments: Callable[..., None],
    reproduce: Callable[[argparse.Namespace, str], int],
) -> int:
    """The ``scripts/<table>.py`` entry point of a table: its options with ``results/`` as the
    results folder, then ``reproduce``; a user error is one line on stderr and exit code 2."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser, results="results", runs=runs, jobs=jobs)
    try:
        return reproduce(parser.parse_args(argv), program)
    except AlfaError as exc:
        print(f"alfa: error: {exc}", file=sys.stderr)
        return 2
