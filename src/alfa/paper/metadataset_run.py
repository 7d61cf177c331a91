"""Train and evaluate on a Meta-Dataset source (variable-way, variable-shot episodes).

Usage::

    python -m alfa.paper.metadataset_run --config configs/metadataset/X.yaml --out runs/X [k=v ...]

``data.root`` is the source folder (``dataset_spec.json`` and one ``<id>.tfrecords`` per class),
``data.image_size`` the decoded image side. The base learner's head has ``data.ways`` outputs, the
largest number of ways of an episode (Meta-Dataset's ``logit_dim``: 50); ``meta.head_init``
chooses the head of each episode (``learned``: fo-MAML; ``zero``; ``proto``: fo-Proto-MAML, see
:mod:`alfa.engine.proto_head`). Training draws ``meta.batch_size`` episodes of the training split
per outer step (alphabet-aware on Omniglot, hierarchy-aware on ILSVRC), runs them one by one and
steps Adam on the mean loss (:func:`alfa.tasks.metadataset.meta_batch_loss`). Evaluation adapts
on ``eval.tasks`` fixed episodes of the test split (seed ``eval.seed``) with ``eval.steps`` first
order steps and reports the mean episode accuracy with its 95% confidence interval.

The run uses ``train.device`` (``auto``: CUDA when present): the learner, every episode and the
saved model are moved to it; the training loss is summed on the device and read once per log
line, the episode accuracies once at the end of the evaluation.

Writes ``<out>/config.yaml``, ``<out>/metrics.jsonl`` (training), ``<out>/model.pt`` and
``<out>/result.json`` (with every episode's accuracy); ``--eval-only`` evaluates the
``model.pt`` of ``--out`` again.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import yaml

from alfa.config import Config, config_to_dict, load_config
from alfa.data.metadataset import MetaDatasetSource
from alfa.engine.losses import accuracy
from alfa.engine.meta_learner import MetaLearner
from alfa.engine.proto_head import HeadInit
from alfa.errors import AlfaError, ConfigError
from alfa.runs.build import build_learner, build_optimizer, configure_runtime
from alfa.tasks.metadataset import EpisodeStream, build_episode, fixed_episodes, meta_batch_loss

__all__ = ["evaluate_source", "main", "make_learner", "train_source"]


def make_learner(config: Config) -> MetaLearner:
    """The meta-learner of ``config`` with a per-episode head (variable ways)."""
    if config.data.name != "metadataset":
        raise ConfigError("config key 'data.name' must be metadataset for a Meta-Dataset run")
    learner = build_learner(config, task="classification", in_channels=3)
    learner.head_init = HeadInit(learner.model, config.meta.head_init)
    return learner


def _device(learner: torch.nn.Module) -> torch.device:
    """The device the learner's parameters are on (where its episodes must go)."""
    return next(learner.parameters()).device


def train_source(
    config: Config, learner: MetaLearner, source: MetaDatasetSource, out: Path
) -> list[dict]:
    """``train.iterations`` outer steps on training episodes, on the learner's device; returns
    the logged lines."""
    device = _device(learner)
    optimizer = build_optimizer(config, learner)
    stream = EpisodeStream(source, "train", seed=config.seed)
    log: list[dict] = []
    start = time.perf_counter()
    running: torch.Tensor | float = 0.0
    ways = 0
    with open(out / "metrics.jsonl", "w") as f:
        for it in range(1, config.train.iterations + 1):
            batches = [stream.next_batch() for _ in range(config.meta.batch_size)]
            ways += sum(int(b.support_y.max()) + 1 for b in batches)  # on the host
            batches = [b.to(device) for b in batches]
            optimizer.zero_grad(set_to_none=True)
            loss = meta_batch_loss(learner, batches)
            if config.meta.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(learner.parameters(), config.meta.grad_clip)
            optimizer.step()
            # summed in float64 as the floats it replaces, read at the log line only
            running = running + loss.to(torch.float64)
            if it % config.train.log_every == 0 or it == config.train.iterations:
                n = (
                    config.train.log_every
                    if it % config.train.log_every == 0
                    else it % config.train.log_every
                )
                line = {
                    "iteration": it,
                    "loss": float(running) / n,
                    "mean_ways": ways / (n * config.meta.batch_size),
                    "seconds": round(time.perf_counter() - start, 1),
                }
                f.write(json.dumps(line) + "\n")
                f.flush()
                log.append(line)
                running, ways = 0.0, 0
    return log


def evaluate_source(
    config: Config, learner: MetaLearner, source: MetaDatasetSource, split: str = "test"
) -> dict:
    """Mean accuracy and 95% CI over ``eval.tasks`` fixed episodes of ``split`` (on the
    learner's device)."""
    device = _device(learner)
    episodes = fixed_episodes(source, split, config.eval.tasks, seed=config.eval.seed)
    steps = config.eval.steps or config.meta.steps
    parts = []
    start = time.perf_counter()
    for episode in episodes:
        batch = build_episode(source, episode).to(device)
        out = learner(batch, steps=steps, first_order=True, keep_graph=False)
        parts.append(accuracy(out.outputs, batch.query_y).mean().reshape(1))
    accs = torch.cat(parts).tolist()  # one read for every episode
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / max(1, len(accs) - 1))
    ways = [e.description.ways for e in episodes]
    shots = [sum(e.description.shots) for e in episodes]
    return {
        "episode_accuracies": [round(100 * a, 4) for a in accs],
        "split": split,
        "episodes": len(accs),
        "accuracy": 100 * mean,
        "ci95": 100 * 1.96 * std / math.sqrt(len(accs)),
        "steps": steps,
        "ways_min": min(ways),
        "ways_max": max(ways),
        "ways_mean": sum(ways) / len(ways),
        "support_mean": sum(shots) / len(shots),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alfa.paper.metadataset_run", description=__doc__
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="evaluate the model.pt of --out again instead of training (writes result.json)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        device = configure_runtime(config)  # train.device, TF32 as train.tf32 says
        torch.set_num_threads(config.train.threads or 1)
        source = MetaDatasetSource(config.data.root, image_size=config.data.image_size)
        learner = make_learner(config).to(device)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        extra: dict = {}
        if args.eval_only:
            if not (out / "model.pt").is_file():
                raise ConfigError(f"--eval-only: {out / 'model.pt'} not found")
            saved = torch.load(out / "model.pt", map_location=device, weights_only=True)
            learner.load_state_dict(saved)
            previous = out / "result.json"
            if previous.is_file():
                keep = ("iterations", "train_seconds", "final_train_loss")
                old = json.loads(previous.read_text())
                extra = {k: old[k] for k in keep if k in old}
        else:
            (out / "config.yaml").write_text(
                yaml.safe_dump(config_to_dict(config), sort_keys=False)
            )
            start = time.perf_counter()
            log = train_source(config, learner, source, out)
            extra = {
                "iterations": config.train.iterations,
                "train_seconds": round(time.perf_counter() - start, 1),
                "final_train_loss": log[-1]["loss"] if log else None,
            }
            torch.save(learner.state_dict(), out / "model.pt")
        result = evaluate_source(config, learner, source)
        result.update(
            {
                "name": config.name,
                "rule": config.rule.name,
                "head_init": config.meta.head_init,
                **extra,
            }
        )
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "episode_accuracies"}))
    except AlfaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
