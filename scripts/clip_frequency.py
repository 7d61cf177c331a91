"""How often does ``meta.grad_clip: 1.0`` act? (issue 9, item 1; docs/stability.md)

Replays the first N meta-iterations (default 1,000) of the controlled Table 8 runs
(src/alfa/paper/table8_cells.py: 40x2 MLP, 5-shot, seed 0) with the same set-up as
``alfa.runs.train`` (runtime, seeds, source, learner and optimiser built in the same order, the same
meta-batches) and records, before each Adam step, the global norm of the meta-gradient. With
clipping on, the norm is the one the clip sees (so the trajectory is that of the clipped run); the
``_noclip`` rows follow the unclipped trajectory. Writes ``results/clip_frequency.json`` and prints
a table.

    python scripts/clip_frequency.py [--iterations 1000] [--out results/clip_frequency.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from alfa.paper.provenance import command_line, source_commit
from alfa.paper.table8_cells import controlled_config
from alfa.runs.build import build_learner, build_optimizer, configure_runtime
from alfa.tasks.source import build_source

METHODS = (
    "maml",
    "learned_fixed",
    "alfa_maml",
    "alfa_maml_official",
    "maml_noclip",
    "alfa_maml_noclip",
)


def norms(
    method: str, iterations: int, net: str = "40x2", seed: int = 0
) -> tuple[list[float], list[float]]:
    """The meta-gradient's global norm (before clipping) and the meta-loss at each of the first
    iterations."""
    config = controlled_config(net, 5, method, seed)
    configure_runtime(config)
    torch.set_num_threads(1)
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    source = build_source(config)
    learner = build_learner(config, task=source.task, in_channels=source.in_channels)
    optimizer = build_optimizer(config, learner)
    clip = config.meta.grad_clip if config.meta.grad_clip > 0 else math.inf
    out, losses = [], []
    for _ in range(iterations):
        batch = source.sample(config.meta.batch_size)
        result = learner(batch)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        losses.append(float(result.loss.detach()))
        norm = torch.nn.utils.clip_grad_norm_(learner.parameters(), clip)
        out.append(float(norm))
        if not math.isfinite(out[-1]):
            break
        optimizer.step()
    return out, losses


def summary(values: list[float], threshold: float = 1.0) -> dict[str, float]:
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        "iterations": len(values),
        "fraction_above_1": sum(v > threshold for v in values) / len(values),
        "median": statistics.median(values),
        "p10": q(0.10),
        "p90": q(0.90),
        "max": max(values),
        "fraction_above_1_first_100": sum(v > threshold for v in values[:100]) / 100,
        "fraction_above_1_last_100": sum(v > threshold for v in values[-100:]) / 100,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--out", default="results/clip_frequency.json")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    source = source_commit()
    rows = {}
    print(f"{'method':<20} {'clip':>5} {'> 1':>6} {'median':>8} {'p10':>8} {'p90':>8} {'max':>9}")
    for method in args.methods:
        start = time.time()
        values, losses = norms(method, args.iterations)
        s = summary(values) | {"clip": 0.0 if method.endswith("_noclip") else 1.0}
        # the mean meta-loss of iterations 1-100: metrics.jsonl's train loss at iteration 100
        s["train_loss_first_100"] = statistics.fmean(losses[:100])
        s["seconds"] = round(time.time() - start, 1)
        rows[method] = s
        print(
            f"{method:<20} {s['clip']:>5g} {100 * s['fraction_above_1']:>5.1f}% "
            f"{s['median']:>8.3g} {s['p10']:>8.3g} {s['p90']:>8.3g} {s['max']:>9.3g}",
            flush=True,
        )
    doc = {
        "what": "global norm of the meta-gradient before clipping, first iterations of the "
        "controlled Table 8 runs (40x2 MLP, 5-shot, seed 0)",
        "command": command_line("python scripts/clip_frequency.py", argv),
        "commit": source["commit"],
        "modified_src": source["modified_src"],
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
