"""Command line: ``alfa train | eval | reproduce | demo | plot | adapt | export | models |
data check | data convert | config``.

Only parsing and dispatch live here; the commands are in :mod:`alfa.cli.commands`. A user error
prints one line ``alfa: error: ...`` on stderr and exits with code 2 (``--debug`` shows the
traceback instead).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import NoReturn

from alfa.cli import commands
from alfa.errors import AlfaError
from alfa.limits import check_address_space
from alfa.version import package_version

__all__ = ["exit_with", "main", "out_of_memory", "resource_problem"]


def _timeout_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="under torchrun: how long a process waits for the others before the job stops "
        "with an error (default 600)",
    )


def _checkpoint_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="best|last|FILE",
        help="checkpoint of a run directory (default best; the newest one when there is none)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alfa", description="ALFA: meta-learning with adaptive hyperparameters"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument(
        "--version", action="version", version=f"alfa {package_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="meta-train from a YAML config (or resume a run)")
    p.add_argument("config", nargs="?", help="CONFIG.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. seed=3")
    p.add_argument("--run-dir", help="where to write the run (default: runs/<config name>)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint; key=value overrides may change only "
        "train.iterations (to extend it), logging, checkpointing, device and eval.* keys",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config, the meta-parameter count and the estimated peak memory, "
        "then stop (exit 2 if it cannot fit); creates nothing",
    )
    _timeout_option(p)
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser(
        "eval",
        help="evaluate a run on fixed seeded test tasks",
        usage="alfa eval [-h] (RUN | --pretrained NAME) [key=value ...] [options]",
    )
    p.add_argument(
        "run_dir",
        metavar="RUN",
        nargs="?",
        help="a run directory or an 'alfa export' file (not with --pretrained)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides of the test data and protocol, e.g. data.test_split_file=F "
        "(data.test_*, data.shots, eval.*)",
    )
    p.add_argument("--tasks", type=int, default=None, help="number of test tasks (default 600)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="inner steps (default: as trained; at most 10x the trained steps or 100)",
    )
    _checkpoint_option(p)
    p.add_argument(
        "--ensemble",
        type=int,
        default=0,
        metavar="K",
        help="average the outputs of the K best checkpoints by validation (needs "
        "train.keep_best >= K; off by default)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument(
        "--pretrained",
        metavar="NAME",
        help="evaluate a model shipped with alfa (alfa models lists them) on its test classes",
    )
    p.add_argument(
        "--episodes",
        choices=("standard", "within-alphabet"),
        default="standard",
        help="standard: the run's N-way episodes of all its test classes (default); "
        "within-alphabet (Omniglot): every episode's characters from one alphabet, unrotated, "
        "with the accuracy per alphabet (Lake et al.'s one-shot task)",
    )
    p.add_argument(
        "--query",
        type=int,
        default=None,
        metavar="N",
        help="query drawings per class of a within-alphabet episode (default: every drawing "
        "not in the support set, 19 for Omniglot at 1 shot)",
    )
    _timeout_option(p)
    p.set_defaults(func=commands.cmd_eval)

    p = sub.add_parser(
        "reproduce",
        help="run a table of the paper with seeds, every row under one protocol (resumable)",
    )
    tables = p.add_subparsers(dest="table", metavar="TABLE", required=True)
    from alfa.paper import omniglot_run, table8_run

    t = tables.add_parser(
        "table8", help="Table 8 (sinusoid): MAML, learned-fixed, ALFA+MAML, seeds 0-2, ablations"
    )
    table8_run.add_arguments(t, results="runs/table8", runs="runs/table8", jobs=2)
    t.set_defaults(func=commands.cmd_reproduce)
    t = tables.add_parser(
        "omniglot",
        help="the Omniglot protocol on the minimal sets: MAML, learned-fixed, ALFA+MAML, "
        "ALFA+random init, stable ALFA+MAML; 20- and 5-way 1-shot, seeds 0-2",
    )
    omniglot_run.add_arguments(
        t, results="runs/omniglot_protocol", runs="runs/omniglot_protocol", jobs=2
    )
    t.set_defaults(func=commands.cmd_reproduce)

    p = sub.add_parser(
        "demo", help="MAML, learned-fixed and ALFA+MAML on sinusoid regression, one protocol"
    )
    p.add_argument("--iterations", type=int, default=6000)
    p.add_argument("--tasks", type=int, default=600)
    p.add_argument("--runs", default="runs/demo")
    p.set_defaults(func=commands.cmd_demo)

    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("check", help="detect a dataset's format and report every problem")
    p.add_argument("path")
    p.add_argument("--format", default=None)
    p.add_argument(
        "--support",
        action="store_true",
        help="the folder is a support set of alfa adapt: every sub-folder is a class, one "
        "image per class is enough",
    )
    p.add_argument(
        "--min-images",
        type=int,
        default=20,
        metavar="N",
        help="report classes with fewer images (default 20: 5 shots + 15 queries)",
    )
    p.set_defaults(func=commands.cmd_data_check)
    p = dsub.add_parser(
        "convert", help="write a dataset in Meta-Dataset's record format (docs/metadataset.md)"
    )
    p.add_argument("source", choices=["omniglot"], help="the dataset (alphabets: superclasses)")
    p.add_argument("zips", nargs="+", metavar="ZIP", help="its zip files (first wins)")
    p.add_argument("--to", required=True, metavar="DIR", help="a new or empty output folder")
    p.add_argument(
        "--keep-png",
        action="store_true",
        help="store the zips' PNG bytes unchanged (black strokes on white) instead of what "
        "Meta-Dataset's converter writes: RGB, inverted (white strokes on black), JPEG of "
        "quality 75",
    )
    p.set_defaults(func=commands.cmd_data_convert)

    p = sub.add_parser(
        "adapt",
        help="adapt a trained classifier to your own labelled images and classify more",
        usage="alfa adapt [-h] (RUN | --pretrained NAME) SUPPORT QUERY... [options]",
        description="Adapt a run, an export file or a shipped pretrained model to the labelled "
        "images in SUPPORT (one sub-folder per class) and classify each QUERY image (or every "
        "image in a QUERY folder). No training data is needed.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="RUN SUPPORT QUERY",
        help="a run directory or 'alfa export' file (not with --pretrained), the support folder, "
        "then query images or folders",
    )
    p.add_argument(
        "--pretrained",
        metavar="NAME",
        help="use a model shipped with alfa (e.g. omniglot-20way); 'list' names them",
    )
    _checkpoint_option(p)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="inner steps (default: as trained; 0: none; more than trained needs --force when "
        "the rule learned per-step hyperparameters)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="adapt with more --steps than the rule learned hyperparameters for",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse images that do not fit the model (colour, size, polarity, blank, uneven "
        "shots) instead of warning",
    )
    p.add_argument(
        "--transductive",
        action="store_true",
        help="normalise the query images with their own batch statistics (as in training) "
        "instead of the support set's; a prediction then depends on the other query images",
    )
    p.add_argument("--json", action="store_true", help="also print the predictions as JSON")
    p.set_defaults(func=commands.cmd_adapt)

    p = sub.add_parser(
        "export", help="write a run's meta-learned weights and config to a .safetensors file"
    )
    p.add_argument("run_dir", metavar="RUN", help="a run directory")
    p.add_argument(
        "--checkpoint",
        default="best",
        metavar="best|last|FILE",
        help="which checkpoint (default best; the newest one when there is none)",
    )
    p.add_argument("--to", required=True, metavar="FILE.safetensors", help="the file to write")
    p.set_defaults(func=commands.cmd_export)

    p = sub.add_parser("models", help="list the backbones and the pretrained models shipped")
    p.set_defaults(func=commands.cmd_models)

    p = sub.add_parser("plot", help="plot a run's learning curves and generated hyperparameters")
    p.add_argument("run_dir")
    p.add_argument("--tasks", type=int, default=100, help="test tasks for the alpha/beta plots")
    p.set_defaults(func=commands.cmd_plot)

    config = sub.add_parser("config", help="show a resolved config or list every config key")
    csub = config.add_subparsers(dest="config_command", required=True)
    p = csub.add_parser(
        "show", help="print the resolved config as YAML (defaults, then CONFIG, then overrides)"
    )
    p.add_argument("config", nargs="?", help="CONFIG.yaml (default: the defaults)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. seed=3")
    p.set_defaults(func=commands.cmd_config_show)
    p = csub.add_parser(
        "keys", help="list every config key with its type, default and meaning (docs/config.md)"
    )
    p.add_argument("section", nargs="?", help="only this section (e.g. rule) or key")
    p.set_defaults(func=commands.cmd_config_keys)
    return parser


def exit_with(code: int) -> NoReturn:
    """End the process with ``code``, as ``python -m alfa`` does.

    A process of a torchrun job has finished its command and left the process group together
    with the others; at interpreter exit, the destructors of the communication library's
    threads can abort the process ("terminate called without an active exception"), which
    torchrun reports as a failed job. Nothing is left to clean up, so such a process leaves
    without running them (``os._exit``); any other leaves normally.
    """
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is PyTorch's report of an allocation that failed (CPU or CUDA)."""
    text = str(exc).lower()
    return any(s in text for s in ("out of memory", "can't allocate memory", "not enough memory"))


def resource_problem(exc: BaseException) -> str:
    """One line for a command that ran out of memory or could not load a library."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = detail if len(detail) <= 160 else f"{detail[:157]}..."
    if isinstance(exc, ImportError):
        return (
            f"cannot load a library ({detail}); too little memory under the address-space "
            "limit (ulimit -v), or a broken installation"
        )
    return (
        f"out of memory ({detail}); lower meta.batch_size, eval.batch or the model's size "
        "(train.recompute=true saves memory too); checkpoints already written are kept"
    )


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides after a flag (`alfa train CONFIG --dry-run seed=3`)
        if getattr(args, "overrides", None) is None or any(
            "=" not in item or item.startswith("-") for item in extra
        ):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        check_address_space()
        with warnings.catch_warnings():  # PIL warns of a decompression bomb: make it one line
            warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
            return int(args.func(args))
    except (MemoryError, RuntimeError, ImportError) as exc:
        if args.debug or not (isinstance(exc, MemoryError | ImportError) or out_of_memory(exc)):
            raise
        print(f"alfa: error: {resource_problem(exc)}", file=sys.stderr)
        return 2
    except AlfaError as exc:
        if args.debug:
            raise
        rank = os.environ.get("RANK", "0")
        if getattr(exc, "every_rank", False) and rank != "0":
            return exc.exit_code  # rank 0 prints the error that every process of the job saw
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if rank != "0" and not message.startswith("rank "):
            message = f"rank {rank}: {message}"  # an error of this process alone
        print(f"alfa: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        from alfa.runs.train import Aborted

        signum = exc.signal if isinstance(exc, Aborted) else 2
        print("alfa: interrupted", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    exit_with(main())
