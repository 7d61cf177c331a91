"""The Quick-start demo: MAML, learned-fixed and ALFA+MAML side by side, under one protocol.

Three runs of the Table 8 recipe (:mod:`alfa.paper.table8_cells`) on the 40x2 5-shot
sinusoid cell at a small budget: the same outer optimiser and the same clipped meta-gradient
for every row, differing only in the inner-loop rule, so the printout compares the rules and
nothing else (learned-fixed is the baseline that isolates what ALFA's generated, task-adaptive
hyperparameters add over meta-learned per-step, per-layer ones). The three runs share the
machine's cores, one thread each.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

from alfa.paper.cells import train_and_test_all
from alfa.paper.table8_cells import PAPER_TABLE8, controlled_config

__all__ = ["METHODS", "demo"]

METHODS = ("maml", "learned_fixed", "alfa_maml")
LABELS = {"maml": "MAML", "learned_fixed": "learned-fixed", "alfa_maml": "ALFA+MAML"}


def demo(args: argparse.Namespace) -> int:
    """Train the three rows in parallel, test each on ``args.tasks`` fixed tasks, print them."""
    runs = Path(args.runs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = []
    for method in METHODS:
        config = replace(controlled_config("40x2", 5, method, 0, args.iterations), name=method)
        work.append((config, runs / f"{method}-{stamp}-{os.getpid()}"))
    jobs = max(1, min(len(work), os.cpu_count() or 1))
    print(
        f"meta-training {', '.join(LABELS[m] for m in METHODS)} on 5-shot sinusoid regression "
        f"({args.iterations} iterations each, the same outer optimiser and clipped "
        f"meta-gradient for all, {jobs} at a time), then testing on {args.tasks} tasks"
    )
    results = {METHODS[i]: r for i, r in train_and_test_all(work, args.tasks, jobs=jobs)}
    print()
    print(f"{'method':<14} {'test MSE':>10} {'95% CI':>8} {'paper':>6}   run directory")
    for (_, run_dir), method in zip(work, METHODS, strict=True):
        r = results[method]
        paper = PAPER_TABLE8[("40x2", 5)].get(method)
        shown = f"{paper[0]:>6.2f}" if paper else f"{'-':>6}"
        if "mean" not in r:
            print(f"{LABELS[method]:<14} {r.get('diverged') or 'stopped'}")
            continue
        print(f"{LABELS[method]:<14} {r['mean']:>10.3f} {r['ci95']:>8.3f} {shown}   {run_dir}")
    return 0
