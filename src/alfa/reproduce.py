"""Runnable recipes for the paper's regression table (Table 8).

``alfa reproduce table8`` trains the 12 cells (2 networks x 3 shot counts x MAML and ALFA+MAML)
plus one ablation cell that shows the official generator initialisation, evaluates each on 600
fixed test tasks x 100 query points, and writes ``table8.md`` and ``table8.json`` into
``--results`` (default ``runs/table8``). It is resumable cell by cell: a cell already in
``table8.json`` with the same iteration budget is skipped, and an interrupted cell continues
from its last checkpoint.

It trains one seed and clips the meta-gradient of the ALFA+MAML rows only, so its MAML vs ALFA
comparison is confounded by the outer optimiser; the shipped ``results/table8.md`` is the
controlled table of :mod:`alfa.controlled` (``python scripts/table8.py``), every row alike.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from alfa.config import Config, config_from_dict
from alfa.errors import AlfaError

__all__ = ["PAPER_TABLE8", "reproduce", "table8_config", "write_table8_configs"]

# Paper Table 8 (MSE, 95% CI): (net, shots) -> {method: (mse, ci95)}
PAPER_TABLE8: dict[tuple[str, int], dict[str, tuple[float, float]]] = {
    ("40x2", 5): {"maml": (1.24, 0.21), "alfa_maml": (0.92, 0.19)},
    ("40x2", 10): {"maml": (0.75, 0.15), "alfa_maml": (0.62, 0.16)},
    ("40x2", 20): {"maml": (0.49, 0.11), "alfa_maml": (0.34, 0.07)},
    ("80x3", 5): {"maml": (0.84, 0.14), "alfa_maml": (0.70, 0.15)},
    ("80x3", 10): {"maml": (0.56, 0.09), "alfa_maml": (0.51, 0.10)},
    ("80x3", 20): {"maml": (0.33, 0.06), "alfa_maml": (0.25, 0.06)},
}
NETS = {"40x2": [40, 40], "80x3": [80, 80, 80]}
METHODS = ("maml", "alfa_maml")
# Ablations of our stabilisation (docs/stability.md), on the 40x2 5-shot cell:
# unit generator init without outer gradient clipping, and the official code (neither).
ABLATIONS = [("40x2", 5, "alfa_maml_noclip"), ("40x2", 5, "alfa_maml_official")]
DEFAULT_ITERATIONS = 20000


def table8_config(
    net: str, shots: int, method: str, iterations: int = DEFAULT_ITERATIONS
) -> Config:
    """The config of one Table 8 cell (the shipped ``configs/sinusoid/*.yaml`` hold the same)."""
    rule: dict[str, Any] = {"name": "maml", "lr": 0.01}
    meta: dict[str, Any] = {"steps": 5, "batch_size": 25, "lr": 0.001, "first_order": False}
    if method.startswith("alfa_maml"):
        rule = {"name": "alfa", "lr": 0.01, "weight_decay": 0.0005}
        if method == "alfa_maml":  # our stabilisation: unit generator init + clipped meta-gradient
            meta["grad_clip"] = 1.0
        elif method == "alfa_maml_official":
            rule["generator_init"] = "official"
    return config_from_dict(
        {
            "seed": 0,
            "name": f"{net}-k{shots}-{method}",
            "data": {"name": "sinusoid", "family": "paper", "shots": shots, "eval_query": 100},
            "model": {"name": "mlp", "hidden": NETS[net]},
            "rule": rule,
            "meta": meta,
            "train": {
                "iterations": iterations,
                "log_every": 100,
                "val_every": max(1, iterations // 10),
                "val_tasks": 200,
                "checkpoint_every": max(1, iterations // 10),
                "threads": 1,
            },
            "eval": {"tasks": 600, "seed": 1234, "batch": 100},
        }
    )


def write_table8_configs(folder: Path) -> list[Path]:
    """Write ``configs/sinusoid``: every Table 8 cell, the two 5-shot 40x2 defaults and the
    stabilisation ablations."""
    from alfa.config_writer import write_config

    labels = {"maml": "MAML", "alfa_maml": "ALFA+MAML"}
    tail = "\nKeys not listed keep the defaults of alfa.config. Whole table: alfa reproduce table8"
    written = []
    for (net, shots), method in [(cell, m) for cell in PAPER_TABLE8 for m in METHODS]:
        title = f"Table 8 cell: {labels[method]}, {shots}-shot sinusoid regression, MLP {net}"
        path = folder / f"{method}_k{shots}_{net}.yaml"
        written.append(write_config(path, table8_config(net, shots, method), title + tail))
    for method in METHODS:
        title = f"{labels[method]}, 5-shot sinusoid regression, MLP 40x2 (Table 8)"
        written.append(
            write_config(folder / f"{method}.yaml", table8_config("40x2", 5, method), title + tail)
        )
    ablations = {
        "alfa_maml_official": "ALFA+MAML as the official code: default generator init, "
        "no clipping (ablation, docs/stability.md)",
        "alfa_maml_noclip": "ALFA+MAML with the unit generator init but no meta-gradient "
        "clipping (ablation, docs/stability.md)",
    }
    for method, title in ablations.items():
        path = folder / f"{method}.yaml"
        written.append(write_config(path, table8_config("40x2", 5, method), title + tail))
    return written


def _train_and_test(
    config: Config, run_dir: str, position: int | None, tasks: int
) -> dict[str, Any]:
    """Train (or resume) one cell and evaluate it; runs in a worker process."""
    import torch

    from alfa.errors import DivergenceError
    from alfa.evaluate import evaluate
    from alfa.runs import load_run
    from alfa.train import train

    torch.set_num_threads(1)
    path = Path(run_dir)
    start = time.time()
    diverged = None
    try:
        resume = (path / "config.yaml").is_file()
        outcome = train(config, path, resume=resume, position=position)
        if outcome.status == "stopped":
            return {"name": config.name, "stopped": True, "seconds": time.time() - start}
    except DivergenceError as exc:
        diverged = str(exc)
        if not (path / "checkpoints" / "best.pt").is_file():
            return {"name": config.name, "diverged": diverged, "seconds": time.time() - start}
    # The best checkpoint by validation (early stopping), also when training later diverged.
    _, learner, source, state = load_run(path)
    result = evaluate(learner, source, tasks=tasks, seed=config.eval.seed, batch=config.eval.batch)
    result.update(
        name=config.name,
        seconds=time.time() - start,
        checkpoint_iteration=state["iteration"],
        diverged=diverged,
    )
    return result


def _run_cells(jobs: int, cells: list[tuple[Config, str]], tasks: int):
    """Train and test cells in ``jobs`` worker processes; yield each result as it finishes."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context) as pool:
        futures = [
            pool.submit(_train_and_test, config, run_dir, i % max(1, jobs), tasks)
            for i, (config, run_dir) in enumerate(cells)
        ]
        for future in as_completed(futures):
            yield future.result()


def _cell_key(net: str, shots: int, method: str) -> str:
    return f"{net}-k{shots}-{method}"


def _markdown(rows: list[dict[str, Any]], iterations: int) -> str:
    lines = [
        "# Table 8: sinusoid regression (MSE over 100 query points, 95% CI over 600 test tasks)",
        "",
        "Produced by `alfa reproduce table8` "
        f"(iterations per cell: {iterations}; `--iterations` changes it).",
        "",
        "| net | shots | method | ours MSE | paper MSE | at or below paper | seed | iterations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["mse"] is None:
            ours = f"diverged ({r['diverged']})"
            ok = "-"
        elif r.get("diverged"):
            ours = (
                f"{r['mse']:.3f} +- {r['ci95']:.3f} (best checkpoint, iteration "
                f"{r.get('best_checkpoint_iteration')}; then diverged: {r['diverged']})"
            )
            ok = "-" if r["paper_mse"] is None else ("yes" if r["mse"] <= r["paper_mse"] else "no")
        else:
            ours = f"{r['mse']:.3f} +- {r['ci95']:.3f}"
            ok = "-" if r["paper_mse"] is None else ("yes" if r["mse"] <= r["paper_mse"] else "no")
        paper = "-" if r["paper_mse"] is None else f"{r['paper_mse']:.2f} +- {r['paper_ci95']:.2f}"
        lines.append(
            f"| {r['net']} | {r['shots']} | {r['method']} | {ours} | {paper} | {ok} "
            f"| {r['seed']} | {r['iterations']} |"
        )
    lines += [
        "",
        "Settings (the paper leaves them unstated; ours): the paper's task family (amplitude "
        "U[0.1, 5], frequency U[0.8, 1.2], phase U[0, pi], x U[-5, 5]); K support + K query "
        "points per training task; meta-batch 25; 5 inner steps for training and testing; "
        "inner lr 0.01; Adam 1e-3; second order; PyTorch's default initialisation of the MLP; "
        "the checkpoint with the best MSE on 200 fixed validation tasks (evaluated every tenth "
        "of the run) is tested on 600 fixed test tasks (seed 1234) with 100 query points each.",
        "",
        "ALFA+MAML uses the official two-layer generator with our stabilisation "
        "(docs/stability.md): the generator's last layer starts at weights 0 and bias 1 "
        "(`rule.generator_init: unit`), so training starts from the post-multipliers' plain "
        "rule, and the meta-gradient's global norm is clipped at 1 (`meta.grad_clip: 1.0`). "
        "Ablations on the 40x2 5-shot cell, all else equal: `alfa_maml_noclip` keeps the unit "
        "initialisation without clipping; `alfa_maml_official` is the official code "
        "(PyTorch's default initialisation of every generator layer, no clipping). MAML rows "
        "use no clipping. A diverged run is stopped where the first NaN or inf appears; its "
        "best checkpoint by validation before that point is what the row reports.",
    ]
    return "\n".join(lines) + "\n"


_ROW_KEYS: dict[str, tuple[type, ...]] = {
    "net": (str,),
    "shots": (int,),
    "method": (str,),
    "mse": (int, float, type(None)),
    "ci95": (int, float, type(None)),
    "paper_mse": (int, float, type(None)),
    "paper_ci95": (int, float, type(None)),
    "seed": (int,),
    "iterations": (int,),
}
"""What a row of ``table8.json`` must hold (and of which types) to be kept and shown."""


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier ``table8.json``, checked (none when there is no such file).

    Raises:
        AlfaError: naming the file, when it cannot be read or is not a list of result rows; it
            is left as it is.
    """
    if not path.exists():
        return []
    if not path.is_file():
        raise AlfaError(f"'{path}' is not a file; move it away or choose another --results")
    try:
        rows = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise AlfaError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise AlfaError(
            f"'{path}' is not valid JSON{where}; repair it, or move it away to run every cell again"
        ) from None
    if not isinstance(rows, list):
        raise AlfaError(f"'{path}' does not hold a list of result rows; repair or move it away")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise AlfaError(f"'{path}' row {i} is not a JSON object; repair or move the file away")
        bad = [key for key, kinds in _ROW_KEYS.items() if type(row.get(key, ...)) not in kinds]
        if row.get("mse") is None and not isinstance(row.get("diverged"), str):
            bad.append("diverged")
        for value, spread in (("mse", "ci95"), ("paper_mse", "paper_ci95")):
            if row.get(value) is not None and row.get(spread) is None and spread not in bad:
                bad.append(spread)
        if bad:
            raise AlfaError(
                f"'{path}' row {i} lacks or has a wrong {', '.join(bad)}; repair it, or move the "
                "file away to run every cell again"
            )
    return rows


def reproduce(args: argparse.Namespace) -> int:
    """``alfa reproduce table8``: train missing cells, then (re)write the result files."""
    iterations = args.iterations or DEFAULT_ITERATIONS
    results_dir, runs_dir = Path(args.results), Path(args.runs)
    if results_dir.exists() and not results_dir.is_dir():
        raise AlfaError(f"--results '{results_dir}' is not a folder; choose a folder for table8.*")
    if runs_dir.exists() and not runs_dir.is_dir():
        raise AlfaError(f"--runs '{runs_dir}' is not a folder; choose a folder for the cells' runs")
    json_path = results_dir / "table8.json"
    done: dict[str, dict[str, Any]] = {}
    rows = _read_rows(json_path)
    cells = [(n, k, m) for (n, k) in PAPER_TABLE8 for m in METHODS] + ABLATIONS
    if args.only:
        names = [_cell_key(*c) for c in cells]
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            raise AlfaError(
                f"unknown cell(s) {', '.join(unknown)}; the cells are {', '.join(names)}"
            )
        cells = [c for c in cells if _cell_key(*c) in args.only]
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlfaError(f"cannot create '{results_dir}': {exc.strerror or exc}") from exc
    if rows:
        for row in rows:
            key = _cell_key(row["net"], row["shots"], row["method"])
            best = runs_dir / f"{key}-{iterations}" / "checkpoints" / "best.pt"
            # a diverged cell without a score is retried when a best checkpoint exists
            if row.get("iterations") == iterations and (
                row["mse"] is not None or not best.is_file()
            ):
                done[key] = row
    todo = [c for c in cells if _cell_key(*c) not in done]
    print(f"table8: {len(cells) - len(todo)} cell(s) done, {len(todo)} to run ({iterations} it)")
    work = [
        (table8_config(n, k, m, iterations), str(runs_dir / f"{_cell_key(n, k, m)}-{iterations}"))
        for n, k, m in todo
    ]
    keys = {_cell_key(n, k, m): (n, k, m) for n, k, m in todo}
    for r in _run_cells(args.jobs, work, 600) if work else []:
        if r.get("stopped"):
            print(f"{r['name']}: stopped; run the command again to resume it")
            continue
        n, k, m = keys[r["name"]]
        paper = PAPER_TABLE8[(n, k)]["alfa_maml" if m.startswith("alfa_maml") else m]
        done[r["name"]] = {
            "net": n,
            "shots": k,
            "method": m,
            "mse": r.get("mean"),
            "ci95": r.get("ci95"),
            "paper_mse": paper[0] if paper else None,
            "paper_ci95": paper[1] if paper else None,
            "seed": 0,
            "iterations": iterations,
            "test_tasks": 600,
            "query_points": 100,
            "best_checkpoint_iteration": r.get("checkpoint_iteration"),
            "diverged": r.get("diverged"),
        }
        _write(results_dir, done, iterations)  # a finished cell is saved at once
    _write(results_dir, done, iterations)
    print((results_dir / "table8.md").read_text())
    return 0


def _write(results_dir: Path, done: dict[str, dict[str, Any]], iterations: int) -> None:
    from alfa.checkpoint import atomic_write_bytes

    order = [_cell_key(n, k, m) for (n, k) in PAPER_TABLE8 for m in METHODS]
    order += [_cell_key(*cell) for cell in ABLATIONS]
    rows = [done[c] for c in order if c in done]
    atomic_write_bytes(results_dir / "table8.json", (json.dumps(rows, indent=1) + "\n").encode())
    atomic_write_bytes(results_dir / "table8.md", _markdown(rows, iterations).encode())
