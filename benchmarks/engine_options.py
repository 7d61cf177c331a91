"""The fused-kernel, layout and host-memory options of ``speed.py``, and its ``--floor``.

``--kernels`` (``train.kernels``), ``--layout`` (the fast path's image layout; ``auto``:
channels-last where the fused blocks run on the CPU), ``--no-reuse-memory`` (ours with
``train.reuse_memory: false``) and ``--reference-reuse-memory`` (the reference with the same
allocator setting as ours, to see what of the speed-up is the allocator's) change one side;
``--floor`` runs ``floor.py`` for the same workload and threads in a third process and adds
the floor and each side's time over it. Every row also records the CPU (``lscpu``'s name,
family, model and stepping) and the load average before and after it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from alfa.engine.execution import reuse_host_memory
from floor import _cpu_name

__all__ = [
    "add_arguments",
    "apply_layout",
    "child_args",
    "finish",
    "prepare_reference",
    "train_options",
]

_LOAD_BEFORE = list(os.getloadavg())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kernels",
        choices=["auto", "compiled", "eager", "unfused"],
        default="auto",
        help="ours: train.kernels (fused 4-CONV blocks)",
    )
    parser.add_argument(
        "--layout",
        choices=["auto", "nchw", "nhwc"],
        default="auto",
        help="ours: image memory layout of the fast path (auto: NHWC for fused CPU blocks)",
    )
    parser.add_argument(
        "--no-reuse-memory", action="store_true", help="ours: train.reuse_memory false"
    )
    parser.add_argument(
        "--reference-reuse-memory",
        action="store_true",
        help="the reference too keeps freed memory for reuse (as train.reuse_memory does)",
    )
    parser.add_argument(
        "--floor", action="store_true", help="also measure the floor (floor.py) and report over it"
    )


def train_options(args: argparse.Namespace) -> dict:
    """``TrainConfig`` keys of ours."""
    return {"kernels": args.kernels, "reuse_memory": not args.no_reuse_memory}


def apply_layout(args: argparse.Namespace, learner) -> None:
    if args.layout != "auto" and learner.engine == "fast":
        learner.functional.channels_last = args.layout == "nhwc"


def prepare_reference(args: argparse.Namespace, device: torch.device) -> None:
    if args.reference_reuse_memory and device.type == "cpu":
        reuse_host_memory()


def child_args(args: argparse.Namespace, side: str) -> list[str]:
    """The options above for the child process of ``side``."""
    if side == "ours":
        cmd = ["--kernels", args.kernels, "--layout", args.layout]
        return cmd + (["--no-reuse-memory"] if args.no_reuse_memory else [])
    return ["--reference-reuse-memory"] if args.reference_reuse_memory else []


def _floor(args: argparse.Namespace) -> dict:
    """``floor.py`` for the same workload and threads, in its own process."""
    cmd = [sys.executable, str(Path(__file__).with_name("floor.py")), "--json"]
    cmd += ["--workload", args.workload, "--threads", str(args.threads)]
    cmd += ["--tasks", str(args.tasks)] if args.tasks else []
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-2000:])
        return {"error": f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def finish(args: argparse.Namespace, result: dict) -> dict:
    """``result`` of ``bench_engine`` with this module's options, the floor (``--floor``), the
    CPU and the load."""
    floor = _floor(args) if args.floor else {}
    floor_s = floor.get("floor_s")

    def over_floor(per_s: float | None) -> float | None:
        return 1.0 / (per_s * floor_s) if per_s and floor_s else None

    failed = dict(result.get("failed") or {})
    if "error" in floor:
        failed["floor"] = floor["error"]
    return result | {
        "cpu": _cpu_name(),
        "kernels": args.kernels,
        "layout": args.layout,
        "reuse_memory": not args.no_reuse_memory,
        "reference_reuse_memory": args.reference_reuse_memory,
        "floor_s": floor_s,
        "floor_conv_s": floor.get("conv_s"),
        "ours_over_floor": over_floor(result.get("ours_per_s")),
        "reference_over_floor": over_floor(result.get("reference_per_s")),
        "load_before": _LOAD_BEFORE,
        "load_after": list(os.getloadavg()),
        "failed": failed,
    }
