"""Each speed lever of the fast path, measured against the reference in one process.

``speed.py`` runs each side in its own process, which is right for peak memory but lets the
machine's load drift between the two measurements. Here the reference and variants of the
engine, each lever added in turn, run round-robin in one process: one meta-iteration of each
per round, the same meta-batch, the same threads, so a change in the load reaches every
variant alike. The median over the rounds is reported with each variant's speedup over the
reference and over the variant before it.

Variants (cumulative), for a 4-CONV workload:

``unfused-nchw``
    the fast path with the separate layers, NCHW images (the engine before the fused blocks);
``unfused-nhwc``
    the same in channels-last memory layout;
``eager``
    the fused blocks (:mod:`alfa.engine.fast.fused`), kernels run eagerly, the convolution's
    gradients differentiated by autograd's double backward;
``eager-convgrads``
    and their derivative written out as plain convolutions;
``compiled``
    and the kernels compiled (``train.kernels: compiled``);
``auto``
    the default: compiled kernels for activations of at least 2^18 elements, eager below.

``--reuse-memory`` applies ``train.reuse_memory`` to the whole process (reference included:
it is a property of the process), so the allocator's effect is the ratio of two runs, with
and without it. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alfa.config import TrainConfig
from alfa.engine.execution import meta_step, reuse_host_memory
from floor import _cpu_name
from reference import ReferenceALFA
from workloads import WORKLOADS, build

VARIANTS = {  # name: (train.kernels, channels-last, autograd convolution gradients)
    "unfused-nchw": ("unfused", False, True),
    "unfused-nhwc": ("unfused", True, True),
    "eager": ("eager", True, True),
    "eager-convgrads": ("eager", True, False),
    "compiled": ("compiled", True, False),
    "auto": ("auto", True, False),
}


def _engine(name: str, variant: str):
    kernels, nhwc, autograd_grads = VARIANTS[variant]
    learner, batch, _ = build(name)
    options = TrainConfig(kernels=kernels, reuse_memory=False)
    forward = meta_step(learner, options, torch.device("cpu"))
    learner.functional.channels_last = nhwc  # type: ignore[attr-defined]
    learner.functional.program.kernels.autograd_conv_grads = autograd_grads  # type: ignore[attr-defined]
    return learner, lambda: forward(batch).loss


def _reference(name: str):
    learner, batch, w = build(name)
    fresh, _, _ = build(name, tasks=1, engine="generic")
    module = ReferenceALFA(fresh.model, learner.functional.names, w.steps, learner.task)
    module.copy_from(learner)
    return module, lambda: module.meta_loss(batch)


def measure(args: argparse.Namespace) -> dict:
    if args.reuse_memory:
        reuse_host_memory()
    sides = {"reference": _reference(args.workload)}
    for variant in args.variants:
        sides[variant] = _engine(args.workload, variant)

    def step(name: str) -> float:
        module, loss_fn = sides[name]
        for p in module.parameters():
            p.grad = None
        loss = loss_fn()
        loss.backward()
        return float(loss.detach())

    load_before = os.getloadavg()
    first, losses = {}, {}
    for name in sides:  # warm-up; compiles the kernels of the compiled variant
        start = time.perf_counter()
        losses[name] = step(name)
        first[name] = time.perf_counter() - start
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name in sides:
            start = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    names = list(sides)
    rows = []
    for i, name in enumerate(names):
        before = names[i - 1] if i > 1 else None
        rows.append(
            {
                "variant": name,
                "median_s": median[name],
                "min_s": min(times[name]),
                "speedup": median["reference"] / median[name],
                "over_previous": median[before] / median[name] if before else None,
                "loss": losses[name],
                "first_s": first[name],
            }
        )
    ref_loss = losses["reference"]
    same = all(abs(r["loss"] - ref_loss) <= 1e-4 * abs(ref_loss) for r in rows)
    return {
        "workload": args.workload,
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "rounds": args.rounds,
        "reuse_memory": args.reuse_memory,
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "same_loss": same,
        "variants": rows,
        "times": times,
    }


def report(result: dict) -> str:
    lines = [
        f"{result['workload']}, {result['threads']} threads, {result['cpu']}, "
        f"{result['rounds']} rounds, reuse_memory {result['reuse_memory']}, load "
        f"{result['load_before'][0]:.1f} -> {result['load_after'][0]:.1f}",
        f"{'variant':<16} {'median s':>9} {'min s':>8} {'vs reference':>13} {'vs previous':>12}",
    ]
    for r in result["variants"]:
        previous = f"{r['over_previous']:.2f}x" if r["over_previous"] else "-"
        lines.append(
            f"{r['variant']:<16} {r['median_s']:>9.3f} {r['min_s']:>8.3f} "
            f"{r['speedup']:>12.2f}x {previous:>12}"
        )
    lines.append(f"same loss: {result['same_loss']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    conv = [n for n, w in WORKLOADS.items() if w.model == "conv4"]
    parser.add_argument("--workload", choices=conv, default="mini-conv4")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS)[:-1], metavar="V"
    )
    parser.add_argument("--reuse-memory", action="store_true", help="train.reuse_memory, all")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args)
    if not args.json:
        print(report(result))
    print(json.dumps(result))
    if not result["same_loss"]:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
