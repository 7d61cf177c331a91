"""The hardware floor of one ALFA meta-iteration: its convolutions alone, on this machine.

A second-order meta-iteration of a convolutional base learner runs, per task, for every
convolution layer and inner step, the forward convolution, the input gradient (except for the
first layer, whose input is the image) and the weight gradient; the meta-backward then
differentiates all three, which takes two convolution kernels each (``d/dinput`` and
``d/dweight`` of the forward, ``d/ddz`` and ``d/dweight`` of the input gradient, ``d/ddz``
and ``d/dinput`` of the weight gradient), and the query set adds one forward and its two
gradients. Per layer and inner step that is three kernels of each kind (forward,
input-gradient, weight-gradient), two forward and two weight-gradient ones for the first
layer. This script

* finds the convolutions of the workload's base learner and their shapes (forward hooks);
* counts the iteration's convolution FLOPs from those shapes (``--count`` checks the count
  against ``torch.utils.flop_counter`` over one iteration of the engine);
* times each distinct kernel on random tensors of its shape with the same threads, in both
  memory layouts, and keeps the faster one (outputs into reused memory, as
  ``alfa.engine.execution.reuse_host_memory`` arranges for the engine);
* measures the memory bandwidth of an elementwise pass (``torch.add`` into reused memory; and
  into fresh memory, which the kernel maps and zeroes page by page);
* prints the floor: the kernels' time plus the activation traffic that the work between them
  cannot avoid (each kernel's activation input written once and its output read once) at that
  bandwidth.

``python benchmarks/floor.py --workload mini-conv4 --threads 2``; the last line is one JSON
object. ``speed.py --floor`` runs it beside the engine and the reference and reports each of
them over the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alfa.engine.execution import reuse_host_memory

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import WORKLOADS, build

KINDS = ("forward", "input_grad", "weight_grad")


@dataclass(frozen=True)
class Conv:
    """One convolution call's shapes: input ``[B, C, H, W]``, weight, stride, padding."""

    x: tuple[int, ...]
    w: tuple[int, ...]
    stride: int
    padding: int

    def out(self) -> tuple[int, int, int, int]:
        b, _, h, w = self.x
        o, _, kh, kw = self.w
        ho = (h + 2 * self.padding - kh) // self.stride + 1
        wo = (w + 2 * self.padding - kw) // self.stride + 1
        return b, o, ho, wo

    def flops(self) -> int:
        """Multiply-adds times two; the same for all three kinds of kernel."""
        b, o, ho, wo = self.out()
        _, c, kh, kw = self.w
        return 2 * b * o * ho * wo * c * kh * kw

    def bytes(self, kind: str, element: int = 4) -> int:
        """Activation traffic the work around the kernel cannot avoid: its activation input
        written once and its activation output read once (weights are negligible)."""
        x = torch.Size(self.x).numel() * element
        z = torch.Size(self.out()).numel() * element
        return {"forward": x + z, "input_grad": z + x, "weight_grad": 0}[kind]


def conv_layers(model: nn.Module, image: Tensor) -> list[tuple[str, Conv, bool]]:
    """``(name, shapes, reads the image)`` of every ``nn.Conv2d`` call of ``model(image)``."""
    found: list[tuple[str, Conv, bool]] = []

    def hook(name: str):
        def record(module: nn.Conv2d, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
            x = inputs[0]
            stride, padding = module.stride[0], module.padding[0]
            conv = Conv(tuple(x.shape), tuple(module.weight.shape), stride, padding)  # type: ignore[arg-type]
            found.append((name, conv, x is image))

        return record

    handles = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if type(m) is nn.Conv2d
    ]
    with torch.no_grad():
        model(image)
    for h in handles:
        h.remove()
    return found


def kernel_calls(name: str, tasks: int | None, **overrides) -> tuple[Counter, dict]:
    """How many times each kernel ``(kind, Conv)`` runs in one meta-iteration, and the
    workload's description."""
    learner, batch, w = build(name, tasks=tasks, **overrides)
    if w.model == "mlp":
        raise SystemExit(f"floor: workload {name} has no convolutions")
    calls: Counter = Counter()
    support = conv_layers(learner.model, batch.support_x[0])
    query = conv_layers(learner.model, batch.query_x[0])
    for _, conv, first in support:
        per_step = {"forward": 2, "weight_grad": 2} if first else dict.fromkeys(KINDS, 3)
        for kind, n in per_step.items():
            calls[kind, conv] += n * w.steps * batch.num_tasks
    for _, conv, first in query:
        for kind in KINDS if not first else ("forward", "weight_grad"):
            calls[kind, conv] += batch.num_tasks
    info = {"workload": name, "tasks": batch.num_tasks, "steps": w.steps, "layers": len(support)}
    return calls, info


def _run(kind: str, conv: Conv, x: Tensor, w: Tensor, dz: Tensor) -> None:
    s, p = [conv.stride] * 2, [conv.padding] * 2
    if kind == "forward":
        F.conv2d(x, w, None, conv.stride, conv.padding)
    else:
        mask = [kind == "input_grad", kind == "weight_grad", False]
        torch.ops.aten.convolution_backward(dz, x, w, None, s, p, [1, 1], False, [0, 0], 1, mask)


def time_kernel(kind: str, conv: Conv, seconds: float) -> tuple[float, str]:
    """Seconds of the faster layout and that layout: the fastest of at least three calls
    after a warm-up, and of as many as fit in ``seconds`` per layout (the minimum is what the
    kernel costs when nothing else competes for the cores)."""
    g = torch.Generator().manual_seed(0)
    best: tuple[float, str] = (float("inf"), "")
    for layout in ("nchw", "nhwc"):
        fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
        x = torch.randn(conv.x, generator=g).contiguous(memory_format=fmt)
        w = torch.randn(conv.w, generator=g).contiguous(memory_format=fmt)
        dz = torch.randn(conv.out(), generator=g).contiguous(memory_format=fmt)
        _run(kind, conv, x, w, dz)
        calls, spent = 0, 0.0
        while calls < 3 or (spent < seconds and calls < 100):
            start = time.perf_counter()
            _run(kind, conv, x, w, dz)
            took = time.perf_counter() - start
            best = min(best, (took, layout))
            calls, spent = calls + 1, spent + took
    return best


def bandwidth(megabytes: int = 64, repeats: int = 10) -> tuple[float, float]:
    """GB/s of ``c = a + b`` (three streams) into reused memory and into fresh memory."""
    n = megabytes * 2**20 // 4
    a, b, c = torch.randn(n), torch.randn(n), torch.empty(n)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 3 * 4 * n / min(times) / 1e9

    return best(lambda: torch.add(a, b, out=c)), best(lambda: torch.add(a, b))


def count_flops(name: str, tasks: int | None, **overrides) -> dict[str, int]:
    """Convolution FLOPs that ``torch.utils.flop_counter`` counts in one meta-iteration
    (forward and meta-backward) of the engine (its fused kernels run eagerly here) and of the
    reference (``reference.py``), and all the engine's FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    from alfa.config import TrainConfig
    from alfa.engine.execution import meta_step
    from reference import ReferenceALFA

    learner, batch, w = build(name, tasks=tasks, **overrides)
    step = meta_step(learner, TrainConfig(kernels="eager", reuse_memory=False), torch.device("cpu"))
    fresh, _, _ = build(name, tasks=1, engine="generic", **overrides)
    reference = ReferenceALFA(fresh.model, learner.functional.names, w.steps, learner.task)
    reference.copy_from(learner)
    counts = {}
    for side, loss in (
        ("ours", lambda: step(batch).loss),
        ("ref", lambda: reference.meta_loss(batch)),
    ):
        with FlopCounterMode(display=False) as counter:
            loss().backward()
        counts[side] = counter.get_flop_counts()["Global"]
    return {
        "conv": sum(v for k, v in counts["ours"].items() if "convolution" in str(k)),
        "total": sum(counts["ours"].values()),
        "reference_conv": sum(v for k, v in counts["ref"].items() if "convolution" in str(k)),
    }


def measure(args: argparse.Namespace) -> dict:
    overrides = {k: v for k, v in (("image_size", args.image_size), ("filters", args.filters)) if v}
    calls, info = kernel_calls(args.workload, args.tasks or None, **overrides)
    reused, fresh = bandwidth()  # before reuse_host_memory, to see what fresh memory costs
    reuse_host_memory()  # kernels write into reused memory, as the engine's do
    kernels, conv_s = [], 0.0
    flops: Counter = Counter()
    traffic = 0
    for (kind, conv), n in calls.items():
        seconds, layout = time_kernel(kind, conv, args.kernel_seconds)
        conv_s += n * seconds
        flops[kind] += n * conv.flops()
        traffic += n * conv.bytes(kind)
        kernels.append(
            {
                "kind": kind,
                "input": list(conv.x),
                "weight": list(conv.w),
                "calls": n,
                "ms": round(seconds * 1e3, 3),
                "gflop_per_s": round(conv.flops() / seconds / 1e9, 1),
                "layout": layout,
            }
        )
    total_flops = sum(flops.values())
    elementwise_s = traffic / (reused * 1e9)
    result = info | {
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
        "conv_gflop": round(total_flops / 1e9, 2),
        "conv_gflop_by_kind": {k: round(v / 1e9, 2) for k, v in flops.items()},
        "conv_s": conv_s,
        "conv_gflop_per_s": total_flops / conv_s / 1e9,
        "bandwidth_gb_per_s": reused,
        "fresh_memory_gb_per_s": fresh,
        "activation_traffic_gb": traffic / 1e9,
        "elementwise_s": elementwise_s,
        "floor_s": conv_s + elementwise_s,
        "kernels": kernels,
    }
    if args.count:
        counted = count_flops(args.workload, args.tasks or None, **overrides)
        result["counted_conv_gflop"] = counted["conv"] / 1e9
        result["counted_total_gflop"] = counted["total"] / 1e9
        result["reference_conv_gflop"] = counted["reference_conv"] / 1e9
        result["count_matches"] = counted["conv"] == total_flops
    return result


def _cpu_name() -> str:
    """The CPU as ``lscpu`` names it, with family, model and stepping (a virtual machine may
    show only the vendor's brand), and the cores."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name", "cpu")
    ident = ", ".join(
        f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields
    )
    return f"{name} ({ident + ', ' if ident else ''}{os.cpu_count()} cores)"


def report(result: dict) -> str:
    lines = [
        f"{result['workload']}: {result['tasks']} tasks, {result['steps']} steps, "
        f"{result['layers']} convolutions, {result['threads']} threads, {result['cpu']}",
        f"{'kind':<12} {'input':<20} {'weight':<16} {'calls':>5} {'ms':>9} {'GFLOP/s':>8} layout",
    ]
    for k in result["kernels"]:
        lines.append(
            f"{k['kind']:<12} {'x'.join(map(str, k['input'])):<20} "
            f"{'x'.join(map(str, k['weight'])):<16} {k['calls']:>5} {k['ms']:>9.3f} "
            f"{k['gflop_per_s']:>8.1f} {k['layout']}"
        )
    lines += [
        f"convolutions: {result['conv_gflop']:.1f} GFLOP in {result['conv_s']:.3f} s "
        f"({result['conv_gflop_per_s']:.0f} GFLOP/s)",
        f"elementwise: {result['activation_traffic_gb']:.2f} GB at "
        f"{result['bandwidth_gb_per_s']:.1f} GB/s = {result['elementwise_s']:.3f} s "
        f"(fresh memory: {result['fresh_memory_gb_per_s']:.1f} GB/s)",
        f"floor: {result['floor_s']:.3f} s per meta-iteration",
    ]
    if "counted_conv_gflop" in result:
        lines.append(
            f"flop_counter over one iteration: {result['counted_conv_gflop']:.2f} GFLOP of "
            f"convolutions (matches: {result['count_matches']}), "
            f"{result['counted_total_gflop']:.2f} in all; the reference's convolutions: "
            f"{result['reference_conv_gflop']:.2f} GFLOP"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kernel-seconds", type=float, default=0.3, help="timing budget per kernel and layout"
    )
    parser.add_argument("--image-size", type=int, default=0, help="override the workload's")
    parser.add_argument("--filters", type=int, default=0, help="override the workload's")
    parser.add_argument(
        "--count", action="store_true", help="also count FLOPs of one engine iteration"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    conv = [n for n, w in WORKLOADS.items() if w.model != "mlp"]
    parser.add_argument("--workload", choices=conv, default="mini-conv4")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--tasks", type=int, default=0, help="meta-batch (0: the workload's)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    add_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args)
    if not args.json:
        print(report(result))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
