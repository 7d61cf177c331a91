"""``alfa train`` and ``alfa eval`` under ``torchrun`` (a subprocess, gloo on the CPU), and the
one-line errors of a job that cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from alfa.cli.main import main
from alfa.errors import AlfaError
from alfa.runs.checkpoint import load_checkpoint
from alfa.runs.distributed import process_group
from alfa.runs.runlog import read_metrics
from distributed_helpers import free_port

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = [
    "rule.name=alfa",
    "meta.batch_size=4",
    "meta.steps=2",
    "model.hidden=[8,8]",
    "train.log_every=1",
    "train.val_every=0",
    "train.threads=1",
    "seed=3",
]


def _torchrun(*args: str, processes: int = 2, restarts: int = 0) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    # --standalone: the c10d rendezvous on a free port, a fresh store for every restart
    command += ["--standalone", "--max-restarts", str(restarts)]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("alfa: error:")]


def test_a_meta_batch_two_processes_cannot_share_is_one_line(tmp_path):
    run = tmp_path / "run"
    done = _torchrun(
        "-m", "alfa", "train", *TINY, "meta.batch_size=3", "--run-dir", str(run), "--no-progress"
    )
    assert done.returncode != 0
    assert _errors(done.stderr) == [
        "alfa: error: config key 'meta.batch_size' is 3, which the 2 processes of the job cannot "
        "share equally; use a multiple of 2 (each process adapts meta.batch_size / processes "
        "tasks) or another number of processes"
    ]
    assert str(SRC) not in done.stderr  # no traceback from alfa (torchrun prints its summary)
    assert not run.exists()  # nothing was created


@pytest.mark.slow
def test_torchrun_restarts_a_job_that_lost_a_rank_from_its_last_checkpoint(tmp_path):
    """Rank 1 dies in iteration 15 of the first attempt; ``--max-restarts 1`` starts the job
    again, which resumes from the checkpoint of iteration 10 and ends like a job never
    interrupted (the same command, run without the fault)."""
    script = tmp_path / "dying.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            from alfa.tasks.source import SinusoidSource
            real, drawn = SinusoidSource.sample, [0]
            def sample(self, tasks):
                drawn[0] += 1
                first = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
                if first and os.environ["RANK"] == "1" and drawn[0] == 15:
                    os._exit(9)
                return real(self, tasks)
            if os.environ.get("ALFA_TEST_FAULT") == "1":
                SinusoidSource.sample = sample
            from alfa.cli.main import exit_with, main
            exit_with(main(sys.argv[1:]))
            """
        )
    )
    args = [*TINY, "train.iterations=20", "train.checkpoint_every=10", "--no-progress"]
    os.environ["ALFA_TEST_FAULT"] = "1"
    try:
        faulty = _torchrun(
            str(script), "train", *args, "--run-dir", str(tmp_path / "a"), restarts=1
        )
    finally:
        del os.environ["ALFA_TEST_FAULT"]
    assert faulty.returncode == 0, faulty.stderr[-3000:]
    assert "restart 1 of the job: resuming" in faulty.stderr
    assert "resuming " in faulty.stderr and "from step-0000010.pt (iteration 10)" in faulty.stderr
    clean = _torchrun(str(script), "train", *args, "--run-dir", str(tmp_path / "b"))
    assert clean.returncode == 0, clean.stderr[-3000:]
    logs = [read_metrics(tmp_path / r / "metrics.jsonl") for r in ("a", "b")]
    assert [r["iteration"] for r in logs[0]] == list(range(1, 21))
    assert logs[0] == logs[1]
    final = [load_checkpoint(tmp_path / r / "checkpoints" / "step-0000020.pt") for r in "ab"]
    for key, value in final[0]["learner"].items():
        assert value.equal(final[1]["learner"][key]), key
    # alfa eval on the same two processes: the single-process numbers
    shared = _torchrun("-m", "alfa", "eval", str(tmp_path / "a"), "--tasks", "30")
    assert shared.returncode == 0, shared.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "alfa", "eval", str(tmp_path / "a"), "--tasks", "30"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"},
    )
    assert single.returncode == 0
    assert shared.stdout.strip().splitlines()[-1] == single.stdout.strip().splitlines()[-1]


def test_a_job_without_its_rendezvous_environment_is_refused(monkeypatch):
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(AlfaError, match="missing: MASTER_ADDR, MASTER_PORT"), process_group():
        pass


def test_an_unreachable_rendezvous_is_one_error_within_the_timeout(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # a client: waits for rank 0's store, which never comes
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    with (
        pytest.raises(AlfaError, match=r"rank 1 of 2 cannot join the process group at 127\.0"),
        process_group(timeout=2),
    ):
        pass


def test_a_torchrun_job_needs_a_run_dir(monkeypatch, capsys):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert main(["train", "train.iterations=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "alfa: error: a run launched by torchrun needs --run-dir (every process, and every "
        "restart of the job, must find the same folder)"
    ]


def test_an_error_of_one_rank_names_it_and_a_shared_one_is_printed_by_rank_0(
    monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "1")  # as rank 1 of a job sees it
    assert main(["train", "train.iterations=1"]) == 2  # the same on every rank: rank 0 prints it
    assert capsys.readouterr().err == ""
    missing = tmp_path / "absent"
    assert main(["eval", str(missing)]) == 2  # this process's own view of its filesystem
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alfa: error: rank 1: ") and str(missing) in err[0]
