"""Evaluate a trained run from Python: the fixed seeded test tasks of ``alfa eval``, and one task.

    python examples/evaluate_run.py RUN_DIR      # a folder written by `alfa train`
    python examples/evaluate_run.py              # trains a small sinusoid run first

``load_run`` gives the run's config, its meta-learner with the best checkpoint loaded and its
task source; ``evaluate`` adapts to each fixed test task and scores its query set, exactly as
``alfa eval RUN_DIR`` does (same tasks, same seed, same inner steps).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from alfa.config import load_config
from alfa.runs.evaluate import evaluate
from alfa.runs.reopen import load_run
from alfa.runs.train import train


def small_run(folder: Path, iterations: int) -> Path:
    """A sinusoid run of ``iterations`` meta-iterations, trained here."""
    config = load_config(
        None,
        [
            "data.name=sinusoid",
            "model.hidden=[40,40]",
            "rule.name=alfa",
            f"train.iterations={iterations}",
            f"train.checkpoint_every={iterations}",
            f"train.val_every={iterations}",
            "train.val_tasks=50",
            f"train.log_every={iterations}",
            "train.threads=1",
        ],
    )
    run_dir = folder / "run"
    train(config, run_dir, progress=False)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a run directory (default: train one)")
    parser.add_argument("--iterations", type=int, default=200, help="of the run trained here")
    parser.add_argument("--tasks", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(args.run_dir) if args.run_dir else small_run(Path(scratch), args.iterations)
        config, learner, source, state = load_run(run_dir)
        result = evaluate(
            learner,
            source,
            tasks=args.tasks,
            seed=config.eval.seed,
            batch=config.eval.batch,
            steps=config.eval.steps or config.meta.steps,
            first_order=config.eval.first_order,
        )
        print(
            f"{result['metric']}: {result['mean']:.4f} +- {result['ci95']:.4f} (95% CI, "
            f"{result['tasks']} tasks, iteration {state['iteration']})"
        )

        # one task by hand: adapt on its support set, predict its query set
        task = next(source.fixed("test", 1, config.eval.seed, 1))
        with torch.no_grad():
            params, hyper = learner.adapt(task.support_x, task.support_y, keep_graph=False)
            prediction = learner.predict(params, task.query_x)
        print(
            f"first test task: query MSE {(prediction - task.query_y).pow(2).mean():.4f}, "
            f"learning rates of step 1 per layer {hyper[0].alpha[0].tolist()}"
        )


if __name__ == "__main__":
    main()
