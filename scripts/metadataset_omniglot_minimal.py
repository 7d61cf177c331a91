"""fo-MAML and fo-Proto-MAML, each with and without ALFA, on Omniglot in Meta-Dataset's format.

Converts the two minimal Omniglot background zips into Meta-Dataset's record format
(scripts/omniglot_to_metadataset.py, into ``<runs>/records/omniglot``), trains and tests the four
runs of configs/metadataset/omniglot_minimal_protomaml.yaml one after another on one thread
(``python -m alfa.paper.metadataset_run``), then writes results/metadataset_omniglot_minimal.json
and results/metadataset_omniglot_minimal.md: each run's test accuracy with its 95% CI over the fixed
test episodes (and every episode's accuracy), the paired differences (+ALFA minus without) on the
same episodes, the commands, the commit of the code and the command that wrote them.

    ALFA_DATA=/path/to/data python scripts/metadataset_omniglot_minimal.py \\
        [--runs DIR] [--results DIR]

from the repository root, with the two zips in ``$ALFA_DATA/omniglot`` (README, Getting the data),
or ``--data`` naming their folder. A run whose folder already holds the result of the same
config is collected as it is. ``--iterations`` and ``--tasks`` shorten it (the tests run it so).
``--from-runs COMMIT`` converts and trains nothing: it collects the runs already in ``--runs``,
recorded as produced by the code at COMMIT (``--note`` says how, in the files it writes).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import torch
import yaml

from alfa.config import config_to_dict, load_config
from alfa.data._files import as_path
from alfa.errors import AlfaError
from alfa.paper.metadataset_run import main as metadataset_run
from alfa.paper.provenance import command_line, source_commit
from alfa.runs.checkpoint import atomic_write_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import omniglot_to_metadataset  # scripts beside this one
from metadataset_report import markdown

CONFIG = "configs/metadataset/omniglot_minimal_protomaml.yaml"
# run folder -> (label, config overrides)
RUNS = {
    "protomaml": ("fo-Proto-MAML", []),
    "protomaml_alfa": ("fo-Proto-MAML + ALFA", ["rule.name=alfa", "rule.generator=paper"]),
    "fomaml": ("fo-MAML", ["meta.head_init=learned"]),
    "fomaml_alfa": (
        "fo-MAML + ALFA",
        ["meta.head_init=learned", "rule.name=alfa", "rule.generator=paper"],
    ),
}
PAIRS = [("protomaml", "protomaml_alfa"), ("fomaml", "fomaml_alfa")]
NAME = "metadataset_omniglot_minimal"


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95% confidence half-width (1.96 standard errors) of ``values``."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, n - 1))
    return mean, 1.96 * std / math.sqrt(n)


def paired(results: dict[str, dict]) -> dict[str, dict]:
    """ALFA's per-episode accuracy minus the same method's without ALFA, on the same episodes."""
    out = {}
    for base, alfa in PAIRS:
        a, b = results[base]["episode_accuracies"], results[alfa]["episode_accuracies"]
        diff = [y - x for x, y in zip(a, b, strict=True)]
        mean, ci = mean_ci(diff)
        out[f"{alfa}-{base}"] = {
            "base": base,
            "alfa": alfa,
            "mean": mean,
            "ci95": ci,
            "alfa_better": sum(d > 0 for d in diff),
            "episodes": len(diff),
        }
    return out


def _run_done(run: Path, config_dict: dict) -> bool:
    """Whether ``run`` holds the finished result of exactly this config."""
    if not (run / "result.json").is_file() or not (run / "config.yaml").is_file():
        return False
    return yaml.safe_load((run / "config.yaml").read_text()) == config_dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/metadataset")
    parser.add_argument("--results", default="results")
    parser.add_argument("--data", help="folder of images_background_small1/2.zip")
    parser.add_argument("--iterations", type=int, help="meta-iterations per run (config: 300)")
    parser.add_argument("--tasks", type=int, help="test episodes (config: 600)")
    parser.add_argument(
        "--from-runs",
        metavar="COMMIT",
        help="collect the finished runs in --runs, produced by the code at COMMIT",
    )
    parser.add_argument("--note", help="with --from-runs: how the runs were produced")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    runs = Path(args.runs)
    overrides = []
    if args.iterations is not None:
        overrides.append(f"train.iterations={args.iterations}")
    if args.tasks is not None:
        overrides.append(f"eval.tasks={args.tasks}")
    if args.from_runs is not None and not re.fullmatch(r"[0-9a-f]{40}", args.from_runs):
        print(
            f"error: --from-runs {args.from_runs}: give the full 40-digit commit", file=sys.stderr
        )
        return 2
    try:
        if args.from_runs:
            runs_source = {"commit": args.from_runs, "collected": True, "note": args.note}
            records = None
        else:
            runs_source = {**source_commit(), "collected": False}
            records = runs / "records" / "omniglot"
            overrides.insert(0, f"data.root={records}")
            data = as_path(args.data or "${ALFA_DATA}/omniglot")
            zips = [str(data / f"images_background_small{i}.zip") for i in (1, 2)]
            for z in zips:
                if not Path(z).is_file():
                    print(f"error: Omniglot zip not found: {z} (see --data)", file=sys.stderr)
                    return 2
        results, commands = {}, {}
        for key, (_, extra) in RUNS.items():
            run = runs / key
            run_args = ["--config", CONFIG, "--out", str(run), *overrides, *extra]
            commands[key] = command_line("python -m alfa.paper.metadataset_run", run_args)
            if records is not None:
                config = load_config(CONFIG, [*overrides, *extra])
                if not _run_done(run, config_to_dict(config)):
                    if not (records / "dataset_spec.json").is_file():
                        code = omniglot_to_metadataset.main([*zips, "--out", str(records)])
                        if code:
                            return code
                    torch.set_num_threads(1)
                    code = metadataset_run(run_args)
                    if code:
                        return code
            if not (run / "result.json").is_file():
                print(f"error: {run / 'result.json'} not found (a finished run)", file=sys.stderr)
                return 2
            results[key] = json.loads((run / "result.json").read_text())
    except AlfaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    conversion = (
        None
        if records is None
        else command_line(
            "python scripts/omniglot_to_metadataset.py", [*zips, "--out", str(records)]
        )
    )
    doc = {
        "command": command_line(f"python scripts/{NAME}.py", argv),
        "source": source_commit(),
        "runs_source": runs_source,
        "config": CONFIG,
        "conversion": conversion,
        "runs": {
            key: {"label": RUNS[key][0], "command": commands[key], **results[key]} for key in RUNS
        },
        "paired": paired(results),
    }
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / f"{NAME}.json", (json.dumps(doc, indent=1) + "\n").encode())
    atomic_write_bytes(out / f"{NAME}.md", markdown(doc).encode())
    print(f"wrote {out / (NAME + '.json')} and {out / (NAME + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
