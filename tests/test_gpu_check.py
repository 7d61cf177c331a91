"""``scripts/gpu_check.sh --dry-run``: the GPU check's plan end to end on the CPU (its budget,
per-step limits, JSON lines appended as steps end, the ours-only rows reusing a reference)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
BUDGET = 210  # seconds: 3.5 minutes of the loan
FIRST_BLOCK_LAST_STEP = "mini-resnet12-mb2-memory"


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _lines(folder: Path) -> list[dict]:
    (jsonl,) = folder.glob("gpu-dryrun-*.jsonl")
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


@pytest.mark.slow
def test_the_dry_run_goes_through_the_whole_plan(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = _lines(tmp_path)
    names = [line["step"] for line in lines]
    assert len(names) == len(set(names)) >= 15
    assert names[:3] == ["environment", "cuda-tests", "mini-conv4-mb2"]
    # the time of every step is printed, and the total
    for name in names:
        assert f"== {name}: " in done.stdout
    assert "== GPU check done: " in done.stdout
    # its own accounting: the first block fits the budget, and no step is longer than it
    first = names.index(FIRST_BLOCK_LAST_STEP) + 1
    assert sum(line["limit_s"] for line in lines[:first]) <= BUDGET
    assert all(0 < line["limit_s"] <= BUDGET and line["budget_s"] == BUDGET for line in lines)
    assert [line["total_s"] for line in lines] == sorted(line["total_s"] for line in lines)
    # the first step of each kind ran (in its CPU form), the others are listed
    ran = {}
    for line in lines:
        if line["kind"] not in ran:
            ran[line["kind"]] = line
            assert line["status"] == "ok" and line["rc"] == 0, line
        else:
            assert line["status"] == "planned" and line["rc"] is None, line
    assert set(ran) == {"environment", "tests", "bench", "ours"}
    environment = json.loads(ran["environment"]["summary"])
    assert environment["gpus"] == 0  # CPU: what alfa train would set on a GPU is still shown
    assert environment["tf32_matmul"] is False and environment["tf32_cudnn"] is False
    assert "skipped" in ran["tests"]["summary"]  # the GPU tests, skipped on the CPU
    bench, ours = ran["bench"]["result"], ran["ours"]["result"]
    assert bench["same_loss"] is True and bench["failed"] == {} and bench["tf32"] is False
    assert ours["reference_from"] and ours["failed"] == {}
    assert ours["reference_per_s"] == bench["reference_per_s"]  # not timed again
    assert ours["reference_loss"] == bench["reference_loss"] and ours["same_loss"] is True
    log = next(tmp_path.glob("gpu-dryrun-*.log")).read_text()
    assert ran["tests"]["summary"] in log  # pytest's output is kept


def test_steps_that_do_not_fit_the_budget_are_skipped_and_recorded(tmp_path):
    args = ["bash", str(SCRIPT), "--dry-run", "--results", str(tmp_path), "--budget", "6"]
    done = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = _lines(tmp_path)
    assert lines[0]["step"] == "environment" and lines[0]["status"] == "ok"
    assert {line["status"] for line in lines[1:]} == {"skipped: budget"}
    assert all(line["seconds"] == 0 for line in lines[1:])


def test_a_killed_check_keeps_the_steps_that_ended(tmp_path):
    process = subprocess.Popen(
        ["bash", str(SCRIPT), "--dry-run", "--results", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = list(tmp_path.glob("gpu-dryrun-*.jsonl"))
            if found and found[0].read_text().count("\n") >= 1:
                break
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    lines = _lines(tmp_path)
    assert lines and lines[0]["step"] == "environment" and lines[0]["status"] == "ok"


def test_an_unknown_argument_is_one_line(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT), "--device", "tpu"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("gpu_check.sh: error: unknown argument '--device'")
    assert done.stderr.count("\n") == 1
