"""Exact resume: a run killed (SIGKILL), stopped (SIGINT/SIGTERM) or left with a damaged
checkpoint, then resumed, ends bit for bit like an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alfa.cli.main import main
from alfa.runs.checkpoint import list_checkpoints, load_checkpoint
from alfa.runs.runlog import read_metrics

ITERATIONS = 300
ARGS = [
    f"train.iterations={ITERATIONS}",
    "train.checkpoint_every=20",
    "train.log_every=10",
    "train.val_every=50",
    "train.val_tasks=20",
    "eval.batch=20",
    "rule.name=alfa",
    "meta.batch_size=4",
    "meta.steps=2",
    "model.hidden=[8,8]",
    "train.threads=1",
    "seed=7",
]
FINAL = f"step-{ITERATIONS:07d}.pt"


def _command(run_dir: Path, *, resume: bool) -> list[str]:
    base = [sys.executable, "-m", "alfa.cli.main", "train", "--no-progress"]
    if resume:
        return [*base, "--resume", str(run_dir)]
    return [*base, *ARGS, "--run-dir", str(run_dir)]


def _start(run_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start the run, or resume it when its config.yaml was written (as a user would)."""
    resume = (run_dir / "config.yaml").is_file()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with open(log, "ab") as err:
        err.write(f"--- {'resume' if resume else 'start'}\n".encode())
        err.flush()
        return subprocess.Popen(
            _command(run_dir, resume=resume),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=run_dir.parent,
        )


def _wait_for(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> bool:
    """Poll until ``ready()`` (True) or the process ends or the time is up (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.005)
    return False


def _new_checkpoint(run_dir: Path) -> Callable[[], bool]:
    """A test for a periodic checkpoint that did not exist when this was called."""
    before = {p.name for p in list_checkpoints(run_dir / "checkpoints")}
    return lambda: bool({p.name for p in list_checkpoints(run_dir / "checkpoints")} - before)


def _config_written(run_dir: Path) -> Callable[[], bool]:
    return lambda: (run_dir / "config.yaml").is_file()


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Bit-for-bit equality of nested checkpoint states."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_run(run: Path, reference: Path) -> None:
    """Final checkpoint (learner tensors and everything else), best.pt and metrics all equal."""
    final = load_checkpoint(run / "checkpoints" / FINAL)
    expected = load_checkpoint(reference / "checkpoints" / FINAL)
    assert final["learner"].keys() == expected["learner"].keys()
    for name, tensor in expected["learner"].items():
        assert torch.equal(final["learner"][name], tensor), name
    assert any(name.startswith("rule.") for name in final["learner"])  # update-rule meta-params
    assert_same(final, expected)
    assert_same(
        load_checkpoint(run / "checkpoints" / "best.pt"),
        load_checkpoint(reference / "checkpoints" / "best.pt"),
    )
    assert read_metrics(run / "metrics.jsonl") == read_metrics(reference / "metrics.jsonl")
    assert len(read_metrics(run / "metrics.jsonl")) == ITERATIONS // 10 + ITERATIONS // 50
    assert not [p for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The uninterrupted run, in a subprocess like the others, and its wall time."""
    run = tmp_path_factory.mktemp("reference") / "run"
    start = time.monotonic()
    proc = _start(run, run.parent / "stderr.txt")
    assert proc.wait(timeout=300) == 0, (run.parent / "stderr.txt").read_text()
    return run, time.monotonic() - start


def _finish(run: Path, log: Path) -> None:
    proc = _start(run, log)
    assert proc.wait(timeout=300) == 0, log.read_text()


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_exact(reference, tmp_path):
    ref, seconds = reference
    rng = random.Random(20240611)
    # Kill triggers, each (what to wait for, extra random delay): "time" counts from the start
    # of the process (so a kill may land during start-up, before config.yaml or before the first
    # checkpoint); "config" fires as config.yaml appears (before any checkpoint); "checkpoint"
    # once a checkpoint exists (mid-run).
    trials = [
        [("time", rng.uniform(0.05, 0.5) * seconds), ("time", rng.uniform(0.3, 0.9) * seconds)],
        [("config", 0.0), ("checkpoint", rng.uniform(0.0, 0.4) * seconds)],
    ]
    for n, kills in enumerate(trials):
        run, log = tmp_path / f"trial{n}" / "run", tmp_path / f"trial{n}" / "stderr.txt"
        run.parent.mkdir()
        for what, delay in kills:
            proc = _start(run, log)
            if what == "time":
                _wait_for(proc, lambda: False, delay)
            else:
                ready = _config_written(run) if what == "config" else _new_checkpoint(run)
                _wait_for(proc, ready, 120)
                _wait_for(proc, lambda: False, delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) in (0, -signal.SIGKILL), log.read_text()
        _finish(run, log)
        assert_same_run(run, ref)
        text = log.read_text()
        if n == 1:  # killed before the first checkpoint, then after one
            assert "no checkpoint in" in text and "starting from iteration 0" in text
            assert "from step-" in text


@pytest.mark.slow
def test_sigint_and_sigterm_stop_cleanly_and_resume_exactly(reference, tmp_path):
    ref, _ = reference
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    stops = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        ready = _new_checkpoint(run)
        proc = _start(run, log)
        assert _wait_for(proc, ready, 120), log.read_text()
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 128 + signum, log.read_text()
        message = log.read_text().strip().splitlines()[-1]
        assert f"stopped by {signal.Signals(signum).name}" in message
        assert f"alfa train --resume {run}" in message
        newest = list_checkpoints(run / "checkpoints")[-1]
        stopped_at = int(load_checkpoint(newest)["iteration"])
        assert f"after iteration {stopped_at};" in message and str(newest) in message
        assert 0 < stopped_at < ITERATIONS
        stops.append(stopped_at)
    assert "Traceback" not in log.read_text()
    assert stops[0] < stops[1]
    _finish(run, log)
    assert_same_run(run, ref)
    records = [json.loads(x) for x in (run / "provenance.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["stopped", "stopped", "finished"]
    spans = [[0, stops[0]], [stops[0], stops[1]], [stops[1], ITERATIONS]]
    assert [r["iterations"] for r in records] == spans
    assert all(r["train_seconds"] > 0 and r["ended"] >= r["started"] for r in records)


def _train_in_process(run: Path, *extra: str) -> int:
    return main(["train", *ARGS, *extra, "--run-dir", str(run), "--no-progress"])


SHORT = ["train.iterations=40", "train.checkpoint_every=10", "train.keep_last=3"]


def test_resume_falls_back_past_a_damaged_checkpoint(tmp_path, capsys):
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert _train_in_process(reference, *SHORT) == 0
    shutil.copytree(reference, run)
    newest = run / "checkpoints" / "step-0000040.pt"
    newest.write_bytes(newest.read_bytes()[:-50])  # truncated
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "warning" in line]
    assert len(lines) == 1 and str(newest) in lines[0] and "step-0000030.pt" in lines[0]
    assert "falling back" in lines[0]
    assert "from step-0000030.pt (iteration 30)" in err
    assert_same(
        load_checkpoint(run / "checkpoints" / "step-0000040.pt"),
        load_checkpoint(reference / "checkpoints" / "step-0000040.pt"),
    )
    assert read_metrics(run / "metrics.jsonl") == read_metrics(reference / "metrics.jsonl")


def test_resume_when_every_checkpoint_is_damaged_names_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train_in_process(run, *SHORT) == 0
    for path in list_checkpoints(run / "checkpoints"):
        path.write_bytes(b"garbage")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("alfa: error:")]
    assert len(errors) == 1 and "step-0000040.pt" in errors[0]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_resume_of_a_finished_run_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train_in_process(run, *SHORT) == 0
    before = {
        p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.parts
    }
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    after = {
        p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.parts
    }
    assert after == before
