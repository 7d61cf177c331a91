"""Command line: ``alfa train | eval | reproduce | demo | plot | adapt | export | data check |
data convert | config``.

Only parsing and dispatch live here. A user error prints one line ``alfa: error: ...`` on
stderr and exits with code 2 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from alfa.errors import AlfaError
from alfa.version import package_version

if TYPE_CHECKING:
    from alfa.config import Config
    from alfa.distributed import World

__all__ = ["main"]


def _everywhere(message: str) -> AlfaError:
    """An error about the command line, which every process of a torchrun job raises alike
    (rank 0 alone prints it)."""
    exc = AlfaError(message)
    exc.every_rank = True  # type: ignore[attr-defined]
    return exc


def _default_run_dir(config_path: str | None, name: str) -> Path:
    from alfa.runs import check_path_names

    stem = name or (Path(config_path).stem if config_path else "run")
    base = Path("runs") / stem
    check_path_names(Path(f"{base}-99"))
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


def cmd_train(args: argparse.Namespace) -> int:
    from alfa.distributed import process_group

    with process_group(args.timeout) as here:  # a torchrun job: join its process group
        return _train(args, here)


def _train(args: argparse.Namespace, here: World) -> int:
    from alfa.config import load_config
    from alfa.distributed import broadcast, launched, on_main, restart_count, share
    from alfa.runs import resume_config
    from alfa.train import check_new_run_dir, train

    if launched() and not args.resume and not args.run_dir and not args.dry_run:
        raise _everywhere(
            "a run launched by torchrun needs --run-dir (every process, and every restart of "
            "the job, must find the same folder)"
        )
    run_exists = lambda: (Path(args.run_dir) / "config.yaml").is_file()  # noqa: E731
    restarted = restart_count() and args.run_dir and not args.resume
    if restarted and broadcast(on_main(run_exists, here), here):  # torchrun restarted the job
        args.resume, args.config, args.overrides = args.run_dir, None, []
        if here.main:
            print(f"restart {restart_count()} of the job: resuming {args.run_dir}", file=sys.stderr)
    if args.resume:
        overrides = [args.config, *args.overrides] if args.config else list(args.overrides)
        if any("=" not in item for item in overrides):
            raise _everywhere(
                "--resume takes the run directory and key=value overrides of keys that may "
                "change (e.g. train.iterations=N), not a CONFIG file; drop it"
            )
        run_dir = Path(args.resume)
        config = broadcast(on_main(lambda: resume_config(run_dir, overrides), here), here)
        if args.dry_run:
            return _dry_run(config, None) if here.main else 0
        result = train(config, run_dir, resume=True, progress=not args.no_progress)
    else:
        if not args.config:
            raise _everywhere("alfa train needs a CONFIG.yaml (or --resume RUN_DIR)")
        overrides = list(args.overrides)
        if "=" in args.config:  # `alfa train key=value` with no file: defaults + overrides
            overrides.insert(0, args.config)
            config_path = None
        else:
            config_path = args.config

        def resolve() -> tuple[Config, Path]:
            config = load_config(config_path, overrides)
            run_dir = (
                Path(args.run_dir) if args.run_dir else _default_run_dir(config_path, config.name)
            )
            check_new_run_dir(run_dir)
            share(config.meta.batch_size, here)  # each process adapts its share of a meta-batch
            return config, run_dir

        config, run_dir = broadcast(on_main(resolve, here), here)
        if args.dry_run:
            return _dry_run(config, run_dir) if here.main else 0
        if here.main:
            print(f"run directory: {run_dir}", file=sys.stderr)
        result = train(config, run_dir, progress=not args.no_progress)
    if result.status == "stopped":
        return 128 + int(result.signal or 2)
    if here.main:
        print(f"finished {result.iteration} iterations; evaluate with: alfa eval {run_dir}")
    return 0


def _dry_run(config: Config, run_dir: Path | None) -> int:
    """``alfa train --dry-run``: print the config, parameter count and memory; create nothing."""
    from alfa.build import resolve_device
    from alfa.dry_run import dry_run_report
    from alfa.memory import check_memory

    sys.stdout.write(dry_run_report(config, run_dir))
    sys.stdout.flush()
    check_memory(config, resolve_device(config.train.device))  # exit 2 with what to lower
    print("dry run: nothing was created; drop --dry-run to train")
    return 0


def _config_args(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``: the file (None when the first item is an override)."""
    if config is not None and "=" in config:
        return None, [config, *overrides]
    return config, list(overrides)


def cmd_config_show(args: argparse.Namespace) -> int:
    from alfa.config import load_config
    from alfa.config_docs import config_yaml

    path, overrides = _config_args(args.config, args.overrides)
    sys.stdout.write(config_yaml(load_config(path, overrides)))
    return 0


def cmd_config_keys(args: argparse.Namespace) -> int:
    from alfa.config_docs import render_text

    sys.stdout.write(render_text(args.section))
    return 0


def _eval_steps(requested: int, trained: int, rule: str) -> int:
    """Inner steps for ``alfa eval``: bounded, with a warning beyond the trained ones."""
    limit = max(100, 10 * trained)
    if requested > limit:
        raise _everywhere(
            f"--steps {requested} is too many: the run was trained with {trained} inner steps; "
            f"at most {limit} are allowed"
        )
    if requested > trained:
        reuse = (
            f"steps {trained + 1} to {requested} reuse the learned hyperparameters of step "
            f"{trained}"
            if rule != "maml"
            else "the initialisation was meta-learned for fewer steps"
        )
        print(
            f"alfa: warning: {requested} inner steps is more than the {trained} the run was "
            f"trained with; {reuse}",
            file=sys.stderr,
        )
    return requested


def cmd_eval(args: argparse.Namespace) -> int:
    from alfa.distributed import process_group

    with process_group(args.timeout) as here:  # a torchrun job: the test tasks are shared
        return _eval(args, here)


def _eval(args: argparse.Namespace, here: World) -> int:
    from alfa.build import configure_runtime, resolve_device
    from alfa.eval_overrides import eval_config
    from alfa.evaluate import evaluate
    from alfa.memory import check_memory
    from alfa.runs import load_ensemble
    from alfa.tasks.source import build_source
    from alfa.trained import open_trained, trained_config

    if args.tasks is not None and args.tasks < 1:
        raise _everywhere(f"--tasks must be at least 1; got {args.tasks}")
    if args.steps is not None and args.steps < 0:
        raise _everywhere(f"--steps must be 0 (as trained) or more; got {args.steps}")
    if args.ensemble < 0:
        raise _everywhere(f"--ensemble must be 0 (off) or more; got {args.ensemble}")
    target = Path(args.run_dir)  # a run directory or an `alfa export` file
    config = eval_config(trained_config(target), args.overrides)  # e.g. data.test_root=DIR
    tasks = args.tasks or config.eval.tasks
    steps = _eval_steps(
        args.steps or config.eval.steps or config.meta.steps, config.meta.steps, config.rule.name
    )
    check_memory(config, resolve_device(config.train.device), tasks=tasks)  # before allocating
    trained = open_trained(target, checkpoint=args.checkpoint)
    learner = trained.learner.to(configure_runtime(config))  # train.device/threads overrides
    source = build_source(config)
    learners = [learner]
    if args.ensemble > 1:
        if trained.is_export:
            raise _everywhere("--ensemble needs a run directory; an export holds one model")
        learners = load_ensemble(target, args.ensemble, config, source)
    result = evaluate(
        learners,
        source,
        split="test",
        tasks=tasks,
        seed=config.eval.seed,
        batch=config.eval.batch,
        steps=steps,
        first_order=config.eval.first_order,
        device=next(learner.parameters()).device,
        progress=not args.json,
        world=here,
    )
    if not here.main:
        return 0
    result["iteration"] = trained.iteration
    used = trained.origin.name  # best.pt, the newest periodic one when there is none, or export
    result["checkpoint"] = f"top-{args.ensemble} ensemble" if args.ensemble > 1 else used
    result["train_seed"] = config.seed
    line = f"{result['metric']}: {result['mean']:.4f} +- {result['ci95']:.4f} (95% CI"
    line += f", {result['tasks']} tasks, {result['steps']} steps, iteration {trained.iteration})"
    print(line)
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from alfa.reproduce import reproduce

    return reproduce(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from alfa.demo import demo

    if args.tasks < 1:
        raise AlfaError(f"--tasks must be at least 1; got {args.tasks}")
    return demo(args)


def cmd_data_check(args: argparse.Namespace) -> int:
    from alfa.data.check import run_check

    return run_check(args.path, args.format)


def cmd_data_convert(args: argparse.Namespace) -> int:
    from alfa.data.metadataset_convert import convert_omniglot

    print(convert_omniglot(args.zips, args.to).line())
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from alfa.adapt_command import adapt_to_images
    from alfa.pretrained import describe_pretrained, pretrained_names, pretrained_path
    from alfa.trained import open_trained

    if args.pretrained == "list":
        for name in pretrained_names():
            print(describe_pretrained(name))
        return 0
    paths = list(args.paths)
    need = 2 if args.pretrained else 3
    if len(paths) < need:
        model = "--pretrained NAME" if args.pretrained else "RUN (a run directory or export)"
        raise AlfaError(f"alfa adapt needs {model}, a SUPPORT folder and at least one QUERY image")
    if args.pretrained and args.checkpoint is not None:
        raise AlfaError("--checkpoint selects a checkpoint of a run directory, not --pretrained")
    if args.steps is not None and args.steps < 0:
        raise AlfaError(f"--steps must be 0 (no adaptation) or more; got {args.steps}")
    source = pretrained_path(args.pretrained) if args.pretrained else Path(paths.pop(0))
    norm = "transductive" if args.transductive else "support"
    trained = open_trained(source, checkpoint=args.checkpoint, norm=norm)
    trained_steps = trained.config.meta.steps
    if args.steps is not None:
        _eval_steps(args.steps, trained_steps, trained.config.rule.name)  # bound and warn
    predictions = adapt_to_images(trained, Path(paths[0]), paths[1:], steps=args.steps)
    for p in predictions:
        print(f"{p.path}\t{p.label}\t{p.probabilities[p.label]:.3f}")
    if args.json:
        print(json.dumps([p.__dict__ for p in predictions]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from alfa.export import export_run

    exported = export_run(Path(args.run_dir), Path(args.to), checkpoint=args.checkpoint)
    size = exported.path.stat().st_size
    print(
        f"exported {args.run_dir} (iteration {exported.iteration}, "
        f"{exported.metadata['checkpoint']}) to {exported.path} ({size:,} bytes)"
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from alfa.plots import plot_run

    if args.tasks < 1:
        raise AlfaError(f"--tasks must be at least 1; got {args.tasks}")
    for path in plot_run(Path(args.run_dir), tasks=args.tasks):
        print(path)
    return 0


def _timeout_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="under torchrun: how long a process waits for the others before the job stops "
        "with an error (default 600)",
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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run on fixed seeded test tasks")
    p.add_argument("run_dir", metavar="RUN", help="a run directory or an 'alfa export' file")
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
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="best|last|FILE",
        help="checkpoint of a run directory (default best; the newest one when there is none)",
    )
    p.add_argument(
        "--ensemble",
        type=int,
        default=0,
        metavar="K",
        help="average the outputs of the K best checkpoints by validation (needs "
        "train.keep_best >= K; off by default)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    _timeout_option(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("reproduce", help="run a table of the paper (resumable cell by cell)")
    p.add_argument("table", choices=["table8"])
    p.add_argument("--iterations", type=int, default=None, help="meta-iterations per cell")
    p.add_argument("--jobs", type=int, default=2, help="cells trained at the same time")
    p.add_argument("--runs", default="runs/table8", help="folder of the cells' run directories")
    p.add_argument(
        "--results",
        default="runs/table8",
        help="folder of table8.md and table8.json (results/table8.md is the controlled table of "
        "scripts/table8.py)",
    )
    p.add_argument(
        "--only", nargs="*", default=None, help="cells to run, e.g. 40x2-k5-maml 80x3-k20-alfa_maml"
    )
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser(
        "demo", help="MAML, learned-fixed and ALFA+MAML on sinusoid regression, one protocol"
    )
    p.add_argument("--iterations", type=int, default=6000)
    p.add_argument("--tasks", type=int, default=600)
    p.add_argument("--runs", default="runs/demo")
    p.set_defaults(func=cmd_demo)

    data = sub.add_parser("data", help="dataset tools")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("check", help="detect a dataset's format and report every problem")
    p.add_argument("path")
    p.add_argument("--format", default=None)
    p.set_defaults(func=cmd_data_check)
    p = dsub.add_parser(
        "convert", help="write a dataset in Meta-Dataset's record format (docs/metadataset.md)"
    )
    p.add_argument("source", choices=["omniglot"], help="the dataset (alphabets: superclasses)")
    p.add_argument("zips", nargs="+", metavar="ZIP", help="its zip files (first wins)")
    p.add_argument("--to", required=True, metavar="DIR", help="a new or empty output folder")
    p.set_defaults(func=cmd_data_convert)

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
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="best|last|FILE",
        help="checkpoint of a run directory (default best; the newest one when there is none)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="inner steps (default: as trained; 0: none)"
    )
    p.add_argument(
        "--transductive",
        action="store_true",
        help="normalise the query images with their own batch statistics (as in training) "
        "instead of the support set's; a prediction then depends on the other query images",
    )
    p.add_argument("--json", action="store_true", help="also print the predictions as JSON")
    p.set_defaults(func=cmd_adapt)

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
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("plot", help="plot a run's learning curves and generated hyperparameters")
    p.add_argument("run_dir")
    p.add_argument("--tasks", type=int, default=100, help="test tasks for the alpha/beta plots")
    p.set_defaults(func=cmd_plot)

    config = sub.add_parser("config", help="show a resolved config or list every config key")
    csub = config.add_subparsers(dest="config_command", required=True)
    p = csub.add_parser(
        "show", help="print the resolved config as YAML (defaults, then CONFIG, then overrides)"
    )
    p.add_argument("config", nargs="?", help="CONFIG.yaml (default: the defaults)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. seed=3")
    p.set_defaults(func=cmd_config_show)
    p = csub.add_parser(
        "keys", help="list every config key with its type, default and meaning (docs/config.md)"
    )
    p.add_argument("section", nargs="?", help="only this section (e.g. rule) or key")
    p.set_defaults(func=cmd_config_keys)
    return parser


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
        with warnings.catch_warnings():  # PIL warns of a decompression bomb: make it one line
            warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
            return int(args.func(args))
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
        from alfa.train import Aborted

        signum = exc.signal if isinstance(exc, Aborted) else 2
        print("alfa: interrupted", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
