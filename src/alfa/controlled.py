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

Run: ``python scripts/table8.py`` (``--help`` for the options). The rows and their configs are
in :mod:`alfa.table8_cells`, the statistics and the report in :mod:`alfa.table8_report`; this
module trains, tests and ships the cells.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alfa.config import Config
from alfa.errors import AlfaError
from alfa.provenance import source_commit
from alfa.reproduce import DEFAULT_ITERATIONS
from alfa.table8_cells import CELLS, MAIN, cell_key, controlled_config
from alfa.table8_report import markdown, paired, paired_rows, summaries

__all__ = ["CELLS", "MAIN", "controlled_config", "main", "paired", "report", "run"]


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


_DROP = {"seconds"}


def _write(results: Path, doc: dict[str, Any]) -> None:
    from alfa.checkpoint import atomic_write_bytes

    order = {cell_key(*c): i for i, c in enumerate(CELLS)}
    doc["rows"].sort(key=lambda r: order[cell_key(r["net"], r["shots"], r["method"], r["seed"])])
    evidence = results / "table8"
    doc["summary"] = summaries(doc["rows"])
    doc["paired"] = paired_rows(doc["rows"], evidence)
    text = json.dumps(doc, indent=1) + "\n"
    atomic_write_bytes(results / "table8.json", text.encode())
    atomic_write_bytes(results / "table8.md", markdown(doc).encode())


Cell = tuple[str, int, str, int]


def _cell(cell: Cell, runs: Path, iterations: int, tasks: int) -> tuple[Cell, Config, dict]:
    config = controlled_config(*cell, iterations)
    return cell, config, _train_and_test(config, runs / f"{cell_key(*cell)}-{iterations}", tasks)


def _trained(
    todo: list[Cell], runs: Path, iterations: int, tasks: int, jobs: int, deadline: float | None
) -> Iterator[tuple[Cell, Config, dict]]:
    """Train and test the cells, ``jobs`` at a time (each in its own process on one thread),
    yielding each as it finishes; no new cell starts after ``deadline``."""

    def late() -> bool:
        if deadline is not None and time.time() > deadline:
            print("table8: deadline passed; no new cell started")
            return True
        return False

    if jobs <= 1:
        for cell in todo:
            if late():
                return
            yield _cell(cell, runs, iterations, tasks)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    waiting = list(todo)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        running = set()
        while waiting or running:
            while waiting and len(running) < jobs and not late():
                running.add(pool.submit(_cell, waiting.pop(0), runs, iterations, tasks))
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
            if late():
                waiting.clear()


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
    doc["source"] = source_commit()
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
    for (net, shots, method, seed), config, r in _trained(
        todo, runs, iterations, tasks, jobs, deadline
    ):
        key = cell_key(net, shots, method, seed)
        if r.get("stopped"):
            print(f"{key}: stopped; run the command again to resume it")
            break
        run_dir = runs / f"{key}-{iterations}"
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
    doc["source"] = source_commit()
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
        "--jobs", type=int, default=1, help="cells trained at once, one process and thread each"
    )
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
        if not a.startswith(("--stop-after", "--jobs"))
        and a not in (args.stop_after, str(args.jobs))
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
            jobs=args.jobs,
        )
    except AlfaError as exc:
        print(f"alfa: error: {exc}", file=sys.stderr)
        return 2
    print((Path(args.results) / "table8.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
