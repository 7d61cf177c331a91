"""The commands of the command line (:mod:`alfa.cli.main` parses and dispatches to them): each
``cmd_*`` takes the parsed arguments and returns an exit code; heavy modules are imported inside
them, so ``alfa --help`` stays light.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alfa.errors import AlfaError

if TYPE_CHECKING:
    from alfa.config import Config
    from alfa.runs.distributed import World
    from alfa.runs.trained import Trained


def _everywhere(message: str) -> AlfaError:
    """An error about the command line, which every process of a torchrun job raises alike
    (rank 0 alone prints it)."""
    exc = AlfaError(message)
    exc.every_rank = True  # type: ignore[attr-defined]
    return exc


def _default_run_dir(config_path: str | None, name: str) -> Path:
    from alfa.runs.reopen import check_path_names

    stem = name or (Path(config_path).stem if config_path else "run")
    base = Path("runs") / stem
    check_path_names(Path(f"{base}-99"))
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


def cmd_train(args: argparse.Namespace) -> int:
    from alfa.runs.distributed import process_group

    with process_group(args.timeout) as here:  # a torchrun job: join its process group
        return _train(args, here)


def _train(args: argparse.Namespace, here: World) -> int:
    from alfa.config import load_config
    from alfa.runs.distributed import broadcast, launched, on_main, restart_count, share
    from alfa.runs.reopen import resume_config
    from alfa.runs.train import check_new_run_dir, train

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
            return _dry_run(config, None, resumed=run_dir) if here.main else 0
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


def _dry_run(config: Config, run_dir: Path | None, resumed: Path | None = None) -> int:
    """``alfa train --dry-run``: print the config, the data it would read (checked: exit 2 when
    it cannot be found), parameter count and memory; create nothing."""
    from alfa.runs.build import resolve_device
    from alfa.runs.class_lists import read_run_class_lists
    from alfa.runs.dry_run import dry_run_report
    from alfa.runs.memory import check_memory

    kept = read_run_class_lists(resumed) if resumed is not None else None
    sys.stdout.write(dry_run_report(config, run_dir, kept))
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
    from alfa.config.docs import config_yaml

    path, overrides = _config_args(args.config, args.overrides)
    sys.stdout.write(config_yaml(load_config(path, overrides)))
    return 0


def cmd_config_keys(args: argparse.Namespace) -> int:
    from alfa.config.docs import render_text

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
    from alfa.runs.distributed import process_group

    with process_group(args.timeout) as here:  # a torchrun job: the test tasks are shared
        return _eval(args, here)


def _eval_target(args: argparse.Namespace) -> Path:
    """The run directory or export file that ``alfa eval`` tests (``--pretrained NAME``: the
    shipped file)."""
    from alfa.runs.pretrained import pretrained_path

    if args.pretrained:
        if args.run_dir is not None:
            raise _everywhere("give either RUN or --pretrained NAME, not both")
        if args.checkpoint is not None:
            raise _everywhere("--checkpoint selects a checkpoint of a run, not --pretrained")
        return pretrained_path(args.pretrained)
    if args.run_dir is None:
        raise _everywhere("alfa eval needs RUN (a run directory or export) or --pretrained NAME")
    return Path(args.run_dir)


def _eval(args: argparse.Namespace, here: World) -> int:
    from alfa.cli.eval_overrides import eval_config
    from alfa.runs.build import configure_runtime, resolve_device
    from alfa.runs.class_lists import still_valid
    from alfa.runs.evaluate import evaluate
    from alfa.runs.memory import check_memory
    from alfa.runs.trained import open_trained, trained_config
    from alfa.tasks.source import build_source
    from alfa.tasks.within_alphabet import check_grouped

    if args.tasks is not None and args.tasks < 1:
        raise _everywhere(f"--tasks must be at least 1; got {args.tasks}")
    if args.steps is not None and args.steps < 0:
        raise _everywhere(f"--steps must be 0 (as trained) or more; got {args.steps}")
    if args.ensemble < 0:
        raise _everywhere(f"--ensemble must be 0 (off) or more; got {args.ensemble}")
    within = args.episodes == "within-alphabet"
    query = args.query
    if query is not None and not within:
        raise _everywhere(
            "--query sets the queries of within-alphabet episodes; add --episodes "
            "within-alphabet (the standard episodes take data.test_query=N)"
        )
    if query is not None and query < 1:
        raise _everywhere(f"--query must be at least 1; got {query}")
    if args.run_dir is not None and "=" in args.run_dir and args.pretrained:
        args.overrides, args.run_dir = [args.run_dir, *args.overrides], None
    target = _eval_target(args)  # a run directory or an `alfa export` file
    stored = trained_config(target)
    config = eval_config(stored, args.overrides)  # e.g. data.test_root=DIR
    if within:
        check_grouped(config)  # before any weights or data are read
    tasks = args.tasks or config.eval.tasks
    steps = _eval_steps(
        args.steps or config.eval.steps or config.meta.steps, config.meta.steps, config.rule.name
    )
    if not within:  # within-alphabet: once the source says how many queries
        check_memory(config, resolve_device(config.train.device), tasks=tasks)
    trained = open_trained(target, checkpoint=args.checkpoint)
    trained.learner.to(configure_runtime(config))  # train.device/threads overrides
    # only the test classes are read, from the lists kept with the run or export
    lists = still_valid(stored, config, trained.class_lists)
    if within:
        return _eval_within(args, here, target, config, trained, lists, tasks, steps)
    source = build_source(config, splits=("test",), class_lists=lists)
    learners = _learners(args, target, trained, config, source)
    result = evaluate(
        learners, source, split="test", **_protocol(args, config, trained, tasks, steps, here)
    )
    if not here.main:
        return 0
    _tag(result, args, trained, config)
    line = f"{result['metric']}: {result['mean']:.4f} +- {result['ci95']:.4f} (95% CI"
    line += f", {result['tasks']} tasks, {result['steps']} steps, iteration {trained.iteration})"
    print(line)
    if args.json:
        print(json.dumps(result))
    return 0


def _learners(
    args: argparse.Namespace, target: Path, trained: Trained, config: Config, source: Any
) -> list[Any]:
    """The learner that ``alfa eval`` tests, or the ``--ensemble`` of a run's best checkpoints."""
    from alfa.runs.reopen import load_ensemble

    if args.ensemble <= 1:
        return [trained.learner]
    if trained.is_export:
        raise _everywhere("--ensemble needs a run directory; an export holds one model")
    return load_ensemble(target, args.ensemble, config, source)


def _protocol(
    args: argparse.Namespace, config: Config, trained: Trained, tasks: int, steps: int, here: World
) -> dict[str, Any]:
    """The fixed test protocol that both kinds of ``alfa eval`` episodes are scored under."""
    return {
        "tasks": tasks,
        "seed": config.eval.seed,
        "batch": config.eval.batch,
        "steps": steps,
        "first_order": config.eval.first_order,
        "device": next(trained.learner.parameters()).device,
        "progress": not args.json,
        "world": here,
    }


def _tag(
    result: dict[str, Any], args: argparse.Namespace, trained: Trained, config: Config
) -> None:
    """What ``alfa eval`` adds to a result: the iteration, the checkpoint and the train seed."""
    used = trained.origin.name  # best.pt, the newest periodic one when there is none, or export
    result["iteration"] = trained.iteration
    result["checkpoint"] = f"top-{args.ensemble} ensemble" if args.ensemble > 1 else used
    result["train_seed"] = config.seed


def _eval_within(
    args: argparse.Namespace,
    here: World,
    target: Path,
    config: Config,
    trained: Trained,
    lists: dict[str, list[str]],
    tasks: int,
    steps: int,
) -> int:
    """``alfa eval --episodes within-alphabet``: the run's test characters in episodes of one
    alphabet each (:mod:`alfa.runs.within_alphabet`), with the accuracy per alphabet."""
    from dataclasses import replace

    from alfa.runs.build import resolve_device
    from alfa.runs.memory import check_memory
    from alfa.runs.within_alphabet import evaluate_within_alphabet, report_lines
    from alfa.tasks.within_alphabet import WithinAlphabetSource

    source = WithinAlphabetSource.from_config(config, lists, query=args.query)
    queried = replace(config, data=replace(config.data, test_query=source.query))
    check_memory(queried, resolve_device(config.train.device), tasks=tasks)
    learners = _learners(args, target, trained, config, source.sources[0])
    result = evaluate_within_alphabet(
        learners, source, **_protocol(args, config, trained, tasks, steps, here)
    )
    if not here.main:
        return 0
    _tag(result, args, trained, config)
    for line in report_lines(result, f", iteration {trained.iteration}"):
        print(line)
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    if args.table == "omniglot":
        from alfa.paper.omniglot_run import reproduce
    else:
        from alfa.paper.table8_run import reproduce
    return reproduce(args, f"alfa reproduce {args.table}")


def cmd_demo(args: argparse.Namespace) -> int:
    from alfa.cli.demo import demo

    if args.tasks < 1:
        raise AlfaError(f"--tasks must be at least 1; got {args.tasks}")
    return demo(args)


def cmd_data_check(args: argparse.Namespace) -> int:
    from alfa.data.check import run_check

    if args.support and args.format:
        raise AlfaError("--support checks a support folder of alfa adapt; it takes no --format")
    if args.min_images < 1:
        raise AlfaError(f"--min-images must be at least 1; got {args.min_images}")
    return run_check(args.path, args.format, min_images=args.min_images, support=args.support)


def cmd_data_convert(args: argparse.Namespace) -> int:
    from alfa.data.metadataset_convert import convert_omniglot

    print(convert_omniglot(args.zips, args.to, keep_png=args.keep_png).line())
    return 0


def _per_step(rule: object) -> bool:
    """Whether an update rule learned a table of hyperparameters per inner step (ALFA's
    post-multipliers, learned-fixed values), which more steps than trained cannot extend."""
    return getattr(rule, "name", "maml") != "maml" and bool(getattr(rule, "per_step", False))


def cmd_adapt(args: argparse.Namespace) -> int:
    from alfa.cli.adapt import adapt_to_images
    from alfa.runs.pretrained import describe_pretrained, pretrained_names, pretrained_path
    from alfa.runs.trained import open_trained

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
        rule = trained.config.rule
        if args.steps > trained_steps and _per_step(rule) and not args.force:
            raise AlfaError(
                f"--steps {args.steps} is more than the {trained_steps} inner steps the rule "
                f"learned hyperparameters for ({rule.name}, rule.per_step): steps "
                f"{trained_steps + 1} to {args.steps} would reuse those of step {trained_steps} "
                "and the model was never trained so; add --force to do it anyway"
            )
        _eval_steps(args.steps, trained_steps, rule.name)  # bound and warn
    predictions = adapt_to_images(
        trained, Path(paths[0]), paths[1:], steps=args.steps, strict=args.strict
    )
    for p in predictions:
        print(f"{p.path}\t{p.label}\t{p.probabilities[p.label]:.3f}")
    if args.json:
        print(json.dumps([p.__dict__ for p in predictions]))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``alfa models``: the backbones a config can name and the pretrained models shipped."""
    from alfa.models import BACKBONES
    from alfa.runs.pretrained import describe_pretrained, pretrained_names

    print("backbones (model.name):")
    width = max(map(len, BACKBONES))
    for name, what in BACKBONES.items():
        print(f"  {name:<{width}}  {what}")
    print("pretrained models (alfa adapt --pretrained NAME, alfa eval --pretrained NAME):")
    for name in pretrained_names():
        print(f"  {describe_pretrained(name)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from alfa.runs.export import export_run

    exported = export_run(Path(args.run_dir), Path(args.to), checkpoint=args.checkpoint)
    size = exported.path.stat().st_size
    print(
        f"exported {args.run_dir} (iteration {exported.iteration}, "
        f"{exported.metadata['checkpoint']}) to {exported.path} ({size:,} bytes)"
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from alfa.runs.plots import plot_run

    if args.tasks < 1:
        raise AlfaError(f"--tasks must be at least 1; got {args.tasks}")
    for path in plot_run(Path(args.run_dir), tasks=args.tasks):
        print(path)
    return 0
