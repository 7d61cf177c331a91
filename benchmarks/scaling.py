"""Data-parallel scaling: meta-iterations per second with 1 and with N processes (torchrun).

``python benchmarks/speed.py --workload W --processes N`` (or this file directly) launches
``torchrun --nproc-per-node P`` for P = 1 and P = N on this machine, each process with
``--threads`` CPU threads (or one GPU each with ``--device cuda``). Every process builds the
workload's learner and fixed meta-batch (the same on every rank), adapts its share of the tasks
and joins the meta-gradient ``all_reduce`` of :func:`alfa.runs.distributed.mean_over_ranks`, then
Adam steps, exactly as ``alfa train`` does. A meta-iteration is the whole meta-batch, so

    scaling efficiency = rate(N processes) / (N * rate(1 process))

is 1 for perfect scaling. The meta-batch is the workload's, rounded down to a multiple of N (the
processes must share it equally). The initial meta-loss, averaged over the ranks, must equal the
1-process one (exit 1 otherwise). The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import WORKLOADS, build

__all__ = ["bench_scaling"]


def _worker(args: argparse.Namespace) -> None:
    """One rank of the job: time the data-parallel meta-iteration; rank 0 prints the JSON."""
    from alfa.runs.distributed import mean_over_ranks, process_group, share

    torch.set_num_threads(args.threads)
    with process_group(timeout=600) as here:
        device = args.device
        if device == "cuda":
            device = f"cuda:{torch.cuda.current_device()}"
        learner, batch, _ = build(args.workload, tasks=args.tasks, device=device)
        start, stop = share(args.tasks, here)
        mine = type(batch)(*(t[start:stop] for t in batch))
        params = [p for p in learner.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, 1e-3, foreach=True)

        def step() -> float:
            opt.zero_grad()
            out = learner(mine)
            out.loss.backward()
            stats, _ = mean_over_ranks(learner, out.loss.detach().reshape(1), False, here)
            opt.step()
            return float(stats[0])  # also waits for the device

        initial = step()  # the warm-up iteration; its loss is the initial meta-loss
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < args.seconds or count < args.min_iters:
            step()
            count += 1
        elapsed = time.perf_counter() - began
        if here.main:
            print(json.dumps({"per_s": count / elapsed, "iterations": count, "loss": initial}))


def _launch(args: argparse.Namespace, processes: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    cmd += ["--master-port", str(args.port), __file__, "--worker", "--workload", args.workload]
    cmd += ["--tasks", str(args.tasks), "--threads", str(args.threads), "--device", args.device]
    cmd += ["--seconds", str(args.seconds), "--min-iters", str(args.min_iters)]
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-3000:])
        return {"error": f"exit {done.returncode}"}
    return json.loads(lines[-1])


def bench_scaling(args: argparse.Namespace) -> dict:
    """1 process against ``args.processes`` processes on workload ``args.workload``."""
    w = WORKLOADS[args.workload]
    n = args.processes
    args.tasks = (args.tasks or w.tasks) // n * n
    if args.tasks < n:
        raise SystemExit(f"scaling: a meta-batch of at least {n} tasks is needed")
    one = _launch(args, 1)
    many = _launch(args, n)
    failed = {k: v["error"] for k, v in (("1", one), (str(n), many)) if "error" in v}
    result: dict = {
        "workload": args.workload,
        "config": f"{w.description}, meta-batch {args.tasks}, {w.steps} steps, alfa, second order",
        "device": args.device if args.device != "cpu" else f"cpu ({os.cpu_count()} cores)",
        "threads_per_process": args.threads,
        "processes": n,
        "failed": failed,
    }
    if failed:
        return result
    efficiency = many["per_s"] / (n * one["per_s"])
    same = abs(one["loss"] - many["loss"]) <= 1e-5 * abs(one["loss"]) + 1e-6
    return result | {
        "per_s_1": one["per_s"],
        f"per_s_{n}": many["per_s"],
        "speedup": many["per_s"] / one["per_s"],
        "scaling_efficiency": efficiency,
        "loss_1": one["loss"],
        f"loss_{n}": many["loss"],
        "same_loss": same,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=29517, help="rendezvous port on localhost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="sinusoid")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--min-iters", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    report(bench_scaling(args), json_only=False)


def report(
    result: dict,
    *,
    json_only: bool,
    prog: str = "scaling",
    failed: str = "a launch did not finish",
    differ: str = "the processes compute another meta-loss than one process",
) -> None:
    """Print a benchmark's result (the last line is its JSON) and exit 1 when a side
    ``failed`` or the losses ``differ``."""
    if not json_only:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    print(json.dumps(result))
    if result.get("failed"):
        print(f"{prog}: {failed}: {result['failed']}", file=sys.stderr)
        raise SystemExit(1)
    if result.get("same_loss") is False:
        print(f"{prog}: {differ}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
