"""Exact resume of an image-classification run: an Omniglot run stopped after its first
checkpoint (SIGINT), or killed (SIGKILL) after logging a later iteration, and resumed ends bit for
bit like the uninterrupted one (weights, optimiser, every random generator, best.pt and metrics),
on the real minimal sets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alfa
from alfa.cli.main import main
from alfa.runs.checkpoint import load_checkpoint
from alfa.runs.runlog import read_metrics
from shared_paths import OMNIGLOT_CONFIGS, real_omniglot_overrides
from test_resume import assert_same

TINY_OMNIGLOT = [
    "train.iterations=6",
    "train.checkpoint_every=3",
    "train.log_every=1",
    "train.val_every=3",
    "train.val_tasks=4",
    "eval.batch=4",
    "meta.batch_size=2",
    "meta.steps=1",
    "model.filters=8",
    "train.threads=1",
]


def _train(run: Path, *extra: str) -> int:
    config = str(OMNIGLOT_CONFIGS / "alfa_maml_5way_1shot.yaml")
    overrides = [*real_omniglot_overrides(), *TINY_OMNIGLOT]
    return main(["train", config, *overrides, *extra, "--run-dir", str(run), "--no-progress"])


def _stop_after_first_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT to this process as the first periodic checkpoint is written (a user's Ctrl-C)."""
    import alfa.runs.train

    real = alfa.runs.train.save_checkpoint
    sent: list[int] = []

    def save(path: Path, state: dict) -> None:
        real(path, state)
        if path.name.startswith("step-") and not sent:
            sent.append(signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(alfa.runs.train, "save_checkpoint", save)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    run = tmp_path_factory.mktemp("omniglot") / "reference"
    assert _train(run) == 0
    return run


def _assert_same_run(run: Path, reference: Path) -> None:
    final = "checkpoints/step-0000006.pt"
    expected, got = load_checkpoint(reference / final), load_checkpoint(run / final)
    for name, tensor in expected["learner"].items():
        assert torch.equal(got["learner"][name], tensor), name
    assert_same(got, expected)  # optimiser, task stream, torch/Python/NumPy generators, window
    assert_same(
        load_checkpoint(run / "checkpoints" / "best.pt"),
        load_checkpoint(reference / "checkpoints" / "best.pt"),
    )
    records = read_metrics(run / "metrics.jsonl")
    assert records == read_metrics(reference / "metrics.jsonl")
    assert [r["iteration"] for r in records if r["split"] == "val"] == [3, 6]
    assert "train_accuracy" in records[0]


@pytest.mark.slow
def test_an_interrupted_omniglot_run_resumes_bit_exactly(reference, tmp_path, monkeypatch):
    interrupted = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        _stop_after_first_checkpoint(patch)
        assert _train(interrupted) == 128 + signal.SIGINT
    assert load_checkpoint(interrupted / "checkpoints" / "step-0000003.pt")["iteration"] == 3
    assert not (interrupted / "checkpoints" / "step-0000006.pt").exists()
    torch.manual_seed(99)  # the resumed run must not depend on this process's generators
    assert main(["train", "--resume", str(interrupted), "--no-progress"]) == 0
    _assert_same_run(interrupted, reference)


_KILL_AFTER_LOGGING = """
import os, signal, sys
import alfa.runs.runlog
from alfa.cli.main import main

log = alfa.runs.runlog.RunLog.log

def log_then_die(self, split, iteration, values):
    log(self, split, iteration, values)
    if split == "train" and iteration == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)

alfa.runs.runlog.RunLog.log = log_then_die
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_killed_omniglot_run_resumes_bit_exactly(reference, tmp_path):
    killed = tmp_path / "killed"
    config = str(OMNIGLOT_CONFIGS / "alfa_maml_5way_1shot.yaml")
    argv = ["train", config, *real_omniglot_overrides(), *TINY_OMNIGLOT]
    source = str(Path(alfa.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_LOGGING, "5", *argv, "--run-dir", str(killed)],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    # what a kill leaves: the log goes past the newest checkpoint, which the resume rewinds to
    assert read_metrics(killed / "metrics.jsonl")[-1]["iteration"] == 5
    assert sorted(p.name for p in (killed / "checkpoints").glob("*.pt")) == [
        "best.pt",
        "step-0000003.pt",
    ]
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    _assert_same_run(killed, reference)
