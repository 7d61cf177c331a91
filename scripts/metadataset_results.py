"""Collect the runs of scripts/metadataset_omniglot_minimal.sh into one JSON file and tables.

Usage (from the repository root, after the runs)::

    python scripts/metadataset_results.py runs/metadataset results/metadataset_omniglot_minimal.json

Prints the Markdown tables of results/metadataset_omniglot_minimal.md: accuracy with its 95% CI
over the 600 fixed test episodes, and the paired difference (+ALFA minus without) on the same
episodes with its 95% CI.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

RUNS = {
    "protomaml": "fo-Proto-MAML",
    "protomaml_alfa": "fo-Proto-MAML + ALFA",
    "fomaml": "fo-MAML",
    "fomaml_alfa": "fo-MAML + ALFA",
}
PAIRS = [("protomaml", "protomaml_alfa"), ("fomaml", "fomaml_alfa")]


def mean_ci(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, 1.96 * std / math.sqrt(n)


def main(runs: str, out: str) -> int:
    results = {k: json.loads((Path(runs) / k / "result.json").read_text()) for k in RUNS}
    print("| method | accuracy (%) | 95% CI | train time (s) | final train loss |")
    print("|---|---|---|---|---|")
    for key, label in RUNS.items():
        r = results[key]
        print(
            f"| {label} | {r['accuracy']:.2f} | {r['ci95']:.2f} | {r['train_seconds']:.0f} "
            f"| {r['final_train_loss']:.3f} |"
        )
    print()
    print("| comparison (same 600 episodes) | mean difference (points) | 95% CI | ALFA better in |")
    print("|---|---|---|---|")
    pairs = {}
    for base, alfa in PAIRS:
        a, b = results[base]["episode_accuracies"], results[alfa]["episode_accuracies"]
        diff = [y - x for x, y in zip(a, b, strict=True)]
        mean, ci = mean_ci(diff)
        better = sum(d > 0 for d in diff)
        pairs[f"{alfa}-{base}"] = {"mean": mean, "ci95": ci, "alfa_better": better}
        print(f"| {RUNS[alfa]} - {RUNS[base]} | {mean:+.2f} | {ci:.2f} | {better} of {len(diff)} |")
    Path(out).write_text(json.dumps({"runs": results, "paired": pairs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
