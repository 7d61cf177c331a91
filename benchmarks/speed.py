"""Throughput and memory benchmarks, each against a reference measured on the same machine.

``--workload sinusoid | omniglot | mini-conv4 | mini-resnet12`` (``workloads.py``): meta-training
iterations per second of alfa's engine against ``reference.py``, which runs the same ALFA
meta-iteration the way the official code does (a Python loop over tasks, two
``torch.autograd.grad`` calls per inner step, the second with ``create_graph=True``). Both start
from the same weights and generator (official initialisation, so the generated hyperparameters
are not trivial), and the benchmark exits with status 1 when their meta-losses differ. Each side
runs in its own process, so ``peak_mem_mb`` is that side's own peak (CUDA:
``torch.cuda.max_memory_allocated``; CPU: peak resident memory, interpreter included).

On CUDA both sides run with the backend flags that ``alfa train`` sets
(``alfa.runs.build.cuda_settings``: TF32 off unless ``--tf32``, as ``train.tf32``; cuDNN's
autotuner on, the shapes being fixed), and ours steps the outer optimiser as ``alfa train`` does
(fused Adam on CUDA, the multi-tensor form compiled with ``--compile``); the reference keeps the
multi-tensor form. ``--reference-from FILE`` measures ours only and takes the reference's rate,
memory and loss from the last line of ``FILE`` (JSON lines of this script) with the same
workload, meta-batch and device: a reference is timed once for several variants of ours.
``--side-timeout S`` stops a side after ``S`` seconds and still prints the row (the side's
error in ``failed``). ``--max-memory-gb`` (an address-space limit) is for the CPU only: CUDA
maps far more address space than it uses and would not start under it.

``--processes N``: data-parallel scaling instead, 1 against N processes launched with
``torchrun`` (``scaling.py``).

``--kernels``, ``--layout``, ``--no-reuse-memory``, ``--reference-reuse-memory`` and
``--floor``: ``engine_options.py``.

``--workload episodes``: episodes per second of the image episode sampler on synthetic
in-memory Omniglot-sized data, against a plain gather of the same images.

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from alfa.config import TrainConfig
from alfa.engine.execution import meta_step, optimizer_step
from alfa.runs.build import cuda_settings
from alfa.runs.outer_optimizer import adam

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_options
from reference import ReferenceALFA
from scaling import add_arguments, bench_scaling, report
from workloads import WORKLOADS, build

ENGINE_WORKLOADS = tuple(WORKLOADS)


def _time(step, seconds: float, min_iters: int) -> float:
    step()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < min_iters:
        step()
        count += 1
    return count / (time.perf_counter() - start)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_side(args: argparse.Namespace) -> dict:
    """One side (``ours`` or ``reference``) in this process: initial loss, rate, peak memory."""
    if args.max_memory_gb:  # fail with an error, not the kernel's OOM killer (CPU only)
        limit = int(args.max_memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    device = torch.device(args.device)
    if device.type == "cuda":  # as alfa train sets them (train.tf32, fixed shapes)
        cuda_settings(tf32=args.tf32, fixed_shapes=True)
    group = None if args.group == 0 else ("auto" if args.group < 0 else args.group)
    learner, batch, w = build(
        args.workload, tasks=args.tasks, engine=args.engine, group=group, device=args.device
    )
    learner.recompute = args.recompute
    if args.side == "ours":
        module = learner
        options = TrainConfig(
            compile=args.compile,
            cuda_graph=args.cuda_graph,
            channels_last=args.channels_last,
            autocast=args.autocast,
            **engine_options.train_options(args),
        )
        forward = meta_step(learner, options, device)
        engine_options.apply_layout(args, learner)

        def loss_fn():
            return forward(batch).loss
    else:
        engine_options.prepare_reference(args, device)
        fresh, _, _ = build(args.workload, tasks=1, engine="generic")
        module = ReferenceALFA(fresh.model, learner.functional.names, w.steps, learner.task)
        module.copy_from(learner)
        module = module.to(device)
        del learner

        def loss_fn():
            return module.meta_loss(batch)

    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, 1e-3, foreach=True)  # the reference: multi-tensor Adam
    update = opt.step
    if args.side == "ours":  # as alfa train runs it: fused on CUDA, compiled with --compile
        opt = adam(params, 1e-3, compiled=args.compile or args.cuda_graph)
        update = optimizer_step(opt, options)
    start = time.perf_counter()
    initial = float(loss_fn())  # compiles, when asked to
    first_s = time.perf_counter() - start

    def step() -> None:
        opt.zero_grad()
        loss_fn().backward()
        update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rate = _time(step, args.seconds, args.min_iters)
    result = {"loss": initial, "per_s": rate, "peak_mem_mb": _peak_mb(device), "first_s": first_s}
    if args.profile:
        _profile(step, Path(f"{args.profile}-{args.side}.txt"), args)
    return result


def _profile(step, path: Path, args: argparse.Namespace) -> None:
    """One profiled meta-iteration: the operators by self time, written to ``path``."""
    from torch.profiler import profile

    with profile() as prof:
        step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    head = f"# {args.side}: benchmarks/speed.py --workload {args.workload} --threads {args.threads}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}\n# one meta-iteration after the timed ones\n{table}\n")


def _child(args: argparse.Namespace, side: str) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--workload", args.workload]
    cmd += ["--seconds", str(args.seconds), "--min-iters", str(args.min_iters)]
    cmd += ["--threads", str(args.threads), "--device", args.device, "--group", str(args.group)]
    cmd += ["--engine", args.engine] + (["--tasks", str(args.tasks)] if args.tasks else [])
    cmd += engine_options.child_args(args, side)
    cmd += ["--profile", args.profile] if args.profile else []
    if side == "ours":
        cmd += ["--recompute"] if args.recompute else []
        cmd += ["--compile"] if args.compile else []
        cmd += ["--cuda-graph"] if args.cuda_graph else []
        cmd += ["--channels-last"] if args.channels_last else []
        cmd += ["--autocast", args.autocast]
    cmd += ["--max-memory-gb", str(args.max_memory_gb)] if args.max_memory_gb else []
    cmd += ["--tf32"] if args.tf32 else []
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=args.side_timeout or None,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.side_timeout:g} s"}
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-2000:])
        killed = " (killed: out of memory?)" if done.returncode == -9 else ""
        return {"error": f"exit {done.returncode}{killed}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores)"


def _earlier_reference(args: argparse.Namespace, config: str) -> dict:
    """The reference side of the last row of ``--reference-from`` with the same workload,
    meta-batch and device (an error when there is none)."""
    path = Path(args.reference_from)
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):  # a row, or a scripts/gpu_check.sh record holding one
                rows.append(row["result"] if isinstance(row.get("result"), dict) else row)
    device = _device_name(args.device)
    for row in reversed(rows):
        same = row.get("workload") == args.workload and row.get("config") == config
        if same and row.get("device") == device and row.get("reference_per_s"):
            return {
                "per_s": row["reference_per_s"],
                "peak_mem_mb": row.get("reference_peak_mem_mb"),
                "loss": row.get("reference_loss"),
            }
    return {"error": f"no reference row for this workload, meta-batch and device in {path}"}


def bench_engine(args: argparse.Namespace) -> dict:
    w = WORKLOADS[args.workload]
    tasks = args.tasks or w.tasks
    config = f"{w.description}, meta-batch {tasks}, {w.steps} steps, alfa, second order"
    if args.reference_from:
        ref = _earlier_reference(args, config)
        ours = _child(args, "ours") if "error" not in ref else {"error": "not run"}
    else:
        ours = _child(args, "ours")
        ref = _child(args, "reference")
    failed = {k: v["error"] for k, v in (("ours", ours), ("reference", ref)) if "error" in v}
    # bfloat16 rounds the loss at the percent level; everything else agrees to float32 rounding.
    tolerance = 2e-2 if args.autocast != "none" else 1e-4
    same = (
        None if failed else abs(ours["loss"] - ref["loss"]) <= tolerance * abs(ref["loss"]) + 1e-6
    )
    ours = {"per_s": None, "peak_mem_mb": None, "loss": None} | ours
    ref = {"per_s": None, "peak_mem_mb": None, "loss": None} | ref
    rate = ours["per_s"] / ref["per_s"] if ours["per_s"] and ref["per_s"] else None
    return {
        "workload": args.workload,
        "config": config,
        "device": _device_name(args.device),
        "threads": args.threads,
        "engine": args.engine,
        "group": args.group,
        "ours_per_s": ours["per_s"],
        "reference_per_s": ref["per_s"],
        "speedup": rate,
        "peak_mem_mb": ours["peak_mem_mb"],
        "reference_peak_mem_mb": ref["peak_mem_mb"],
        "loss": ours["loss"],
        "reference_loss": ref["loss"],
        "same_loss": same,
        "recompute": args.recompute,
        "compile": args.compile,
        "cuda_graph": args.cuda_graph,
        "channels_last": args.channels_last,
        "autocast": args.autocast,
        "loss_tolerance": tolerance,
        "first_iteration_s": ours.get("first_s"),
        "tf32": args.tf32,
        "reference_from": args.reference_from or None,
        "failed": failed,
    }


def bench_episodes(seconds: float) -> dict:
    """Episodes per second from an in-memory Omniglot-sized dataset (uint8, 28x28, 1 channel).

    The reference is the cost of only copying the same number of images out of memory, so the
    ratio says how much the sampler adds on top of the unavoidable gather.
    """
    from alfa.data import TensorImageDataset, benchmark_episodes

    g = torch.Generator().manual_seed(0)
    classes, per_class = 200, 20
    images = torch.randint(0, 256, (classes * per_class, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    dataset = TensorImageDataset([f"c{i}" for i in range(classes)], images, labels)
    ways, shots, query, meta_batch = 5, 1, 15, 32
    result = benchmark_episodes(dataset, ways, shots, query, meta_batch, seconds)
    per_episode = ways * (shots + query)

    def gather() -> None:
        index = torch.randint(0, images.shape[0], (meta_batch * per_episode,), generator=g)
        images[index].float().div_(255)

    reference = _time(gather, seconds) * meta_batch
    return {
        "workload": "episodes",
        "config": f"{ways}-way {shots}-shot {query}-query, meta-batch {meta_batch}, 28x28x1",
        "threads": torch.get_num_threads(),
        "ours_per_s": result["episodes_per_second"],
        "reference_per_s": reference,
        "ratio_to_plain_gather": result["episodes_per_second"] / reference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=[*ENGINE_WORKLOADS, "episodes"], default="sinusoid")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--min-iters", type=int, default=3, help="timed iterations at least")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--tasks", type=int, default=0, help="meta-batch (0: the workload's)")
    parser.add_argument("--engine", choices=["auto", "fast", "generic"], default="auto")
    parser.add_argument(
        "--group", type=int, default=-1, help="tasks per group, fast path (-1 auto, 0 all)"
    )
    parser.add_argument(
        "--profile", default="", help="write one profiled iteration per side to PREFIX-SIDE.txt"
    )
    parser.add_argument(
        "--recompute", action="store_true", help="ours: rebuild inner steps in the backward"
    )
    parser.add_argument(
        "--compile", action="store_true", help="ours: torch.compile the meta-iteration"
    )
    parser.add_argument(
        "--cuda-graph", action="store_true", help="ours: compile and replay as CUDA graphs"
    )
    parser.add_argument("--channels-last", action="store_true", help="ours: NHWC inputs")
    parser.add_argument("--autocast", choices=["none", "bf16"], default="none", help="ours (CUDA)")
    parser.add_argument(
        "--max-memory-gb", type=float, default=0, help="address-space limit of each side (CPU)"
    )
    parser.add_argument("--tf32", action="store_true", help="CUDA: TF32 on (as train.tf32)")
    parser.add_argument(
        "--reference-from", default="", help="ours only; the reference from this JSONL file"
    )
    parser.add_argument(
        "--side-timeout", type=float, default=0, help="seconds a side may take (0: no limit)"
    )
    parser.add_argument(
        "--processes", type=int, default=0, help="scaling of 1 vs N torchrun processes (0: off)"
    )
    add_arguments(parser)
    engine_options.add_arguments(parser)
    parser.add_argument("--side", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    if args.max_memory_gb and args.device.startswith("cuda"):
        print(
            "speed.py: error: --max-memory-gb limits the address space, which CUDA needs far "
            "more of than memory (it would not start); use it with --device cpu only",
            file=sys.stderr,
        )
        raise SystemExit(2)
    torch.set_num_threads(args.threads)
    if args.side:
        print(json.dumps(measure_side(args)))
        return
    if args.processes:
        result = bench_scaling(args)
    elif args.workload == "episodes":
        result = bench_episodes(args.seconds)
    else:
        result = engine_options.finish(args, bench_engine(args))
    report(
        result,
        json_only=args.json,
        prog="speed",
        failed="a side did not finish",
        differ="the two implementations compute different losses",
    )


if __name__ == "__main__":
    main()
