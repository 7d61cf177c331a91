"""A table's recipe stopped by a signal to its process group (Ctrl-C, ``kill -TERM -PGID``):
the running cells stop with a checkpoint and report it, no new cell starts, and the recipe's own
process outlives its workers instead of leaving them waiting on it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared_paths import REPO

SCRIPT = """
import json, sys
from pathlib import Path
from alfa.config import load_config
from alfa.paper.cells import train_and_test_all

if __name__ == "__main__":  # the workers are spawned: they import this file
    root, jobs = Path(sys.argv[1]), int(sys.argv[2])
    keys = ["train.iterations=1000000", "train.val_every=0", "train.log_every=20",
            "train.checkpoint_every=1000000", "train.threads=1", "model.hidden=[4]"]
    work = [(load_config(None, [f"name=c{i}", f"seed={i}", *keys]), root / f"c{i}")
            for i in range(3)]
    for index, result in train_and_test_all(work, 5, jobs=jobs, progress=False):
        print(json.dumps({"index": index, "stopped": bool(result.get("stopped"))}), flush=True)
    print("recipe done", flush=True)
"""


def _started(run_dir: Path) -> bool:
    metrics = run_dir / "metrics.jsonl"
    return metrics.is_file() and len(metrics.read_text().splitlines()) >= 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("number", "jobs"),
    [(signal.SIGTERM, 2), (signal.SIGINT, 2), (signal.SIGTERM, 1)],
    ids=["SIGTERM-2jobs", "SIGINT-2jobs", "SIGTERM-1job"],
)
def test_a_signal_to_the_group_stops_every_running_cell_with_a_checkpoint(tmp_path, number, jobs):
    """With two jobs cells 0 and 1 run side by side; with one, cell 0 runs in this process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    script, log = tmp_path / "recipe.py", tmp_path / "recipe.log"
    script.write_text(SCRIPT)
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(jobs)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 120
        while not all(_started(tmp_path / f"c{i}") for i in range(jobs)):
            assert process.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        os.killpg(process.pid, number)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    out = log.read_text()
    assert process.returncode == 0, out[-2000:]
    reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert sorted(r["index"] for r in reports) == list(range(jobs))
    assert all(r["stopped"] for r in reports)
    said = f"{signal.Signals(number).name}: " if jobs > 1 else "stopped: "
    assert said + "no new cell started" in out
    assert out.rstrip().endswith("recipe done")
    for i in range(jobs):
        assert list((tmp_path / f"c{i}" / "checkpoints").glob("step-*.pt")), out
    for i in range(jobs, 3):
        assert not (tmp_path / f"c{i}").exists(), out[-2000:]
