"""Checkpoint files, retention, numerical faults, determinism and run-directory locking."""

from __future__ import annotations

import io
import json
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from alfa.cli.main import main
from alfa.config import load_config
from alfa.errors import DivergenceError
from alfa.rules.generator import HyperparameterGenerator
from alfa.runs import checkpoint as ckpt
from alfa.runs.build import build_learner
from alfa.runs.checkpoint import (
    CheckpointError,
    latest_good_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    remove_temporaries,
    save_checkpoint,
)
from alfa.runs.divergence import meta_parameters_finite
from alfa.runs.runlog import RunLog, read_metrics
from alfa.runs.train import _better, _rng_state, _set_rng_state
from alfa.tasks.source import SinusoidSource
from alfa.typing import TaskBatch

BASE = [
    "rule.name=alfa",
    "meta.batch_size=4",
    "meta.steps=2",
    "model.hidden=[8,8]",
    "train.threads=1",
    "train.log_every=5",
    "train.val_tasks=10",
    "eval.batch=10",
]


def train_cli(run: Path, *extra: str) -> int:
    return main(["train", *BASE, *extra, "--run-dir", str(run), "--no-progress"])


def state(step: int = 3) -> dict:
    return {"iteration": step, "learner": {"w": torch.arange(5.0) * step}, "best": None}


# --- the file format ----------------------------------------------------------------------------


def test_save_load_round_trip_leaves_no_temporaries(tmp_path):
    path = tmp_path / "c" / "step-0000003.pt"
    save_checkpoint(path, state())
    loaded = load_checkpoint(path)
    assert loaded["iteration"] == 3 and torch.equal(loaded["learner"]["w"], torch.arange(5.0) * 3)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    plain = torch.load(path, weights_only=True)  # a plain torch file, nothing alfa-specific
    assert plain["iteration"] == 3 and torch.equal(plain["learner"]["w"], torch.arange(5.0) * 3)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _bare_torch_save() -> bytes:
    buffer = io.BytesIO()
    torch.save(state(), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:20], "truncated"),
        (lambda b: b"", "truncated"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum"),  # one flipped bit in the digest
        (lambda b: _flip(b, len(b) // 2), "checksum"),  # one flipped bit in the archive
        (lambda b: b"junk" + b[4:], "not an alfa checkpoint"),
        (lambda b: _bare_torch_save(), "not an alfa checkpoint"),  # no checksum
    ],
)
def test_damage_is_detected_and_names_the_file(tmp_path, damage, words):
    path = tmp_path / "step-0000003.pt"
    save_checkpoint(path, state())
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read") as info:
        load_checkpoint(tmp_path / "nope.pt")
    assert "nope.pt" in str(info.value)
    save_checkpoint(tmp_path / "x.pt", {"something": 1})
    with pytest.raises(CheckpointError, match="training state"):
        load_checkpoint(tmp_path / "x.pt")


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "step-0000001.pt"
    save_checkpoint(path, state(1))
    old = path.read_bytes()

    def fail(_fd: int) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    expected = CheckpointError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        save_checkpoint(path, state(2))
    if expected is CheckpointError:
        assert str(path) in str(info.value) and "No space left" in str(info.value)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_remove_temporaries_keeps_finished_files(tmp_path):
    save_checkpoint(tmp_path / "step-0000001.pt", state(1))
    (tmp_path / ".step-0000002.pt.tmp-4242-0").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("mine")
    remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "step-0000001.pt"]


def test_latest_good_checkpoint_falls_back_and_says_so(tmp_path, capsys):
    assert latest_good_checkpoint(tmp_path / "none") is None
    for step in (10, 20, 30):
        save_checkpoint(tmp_path / ckpt.checkpoint_name(step), state(step))
    for step in (20, 30):
        (tmp_path / ckpt.checkpoint_name(step)).write_bytes(b"ALFACKPT1\n" + b"\0" * 40)
    path, loaded = latest_good_checkpoint(tmp_path)
    assert path.name == "step-0000010.pt" and loaded["iteration"] == 10
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("alfa: warning: ") for line in lines)
    assert "step-0000030.pt" in lines[0] and "step-0000020.pt" in lines[1]
    assert all("falling back" in line and "step-0000010.pt" in line for line in lines)
    (tmp_path / "step-0000010.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"step-0000030\.pt") as info:
        latest_good_checkpoint(tmp_path)
    assert "2 older checkpoint(s) are damaged too" in str(info.value)


def test_prune_keeps_the_newest_and_best(tmp_path):
    for step in (5, 10, 15, 20):
        save_checkpoint(tmp_path / ckpt.checkpoint_name(step), state(step))
    save_checkpoint(tmp_path / "best.pt", state(5))
    prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt",
        "step-0000015.pt",
        "step-0000020.pt",
    ]


def test_runlog_resume_drops_later_and_torn_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"split": "train", "iteration": i, "loss": 1.0 / i} for i in (5, 10, 15)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"split": "tr')
    log = RunLog(tmp_path, resume_iteration=10, tensorboard=False)
    log.log("train", 15, {"loss": float("nan")})
    log.close()
    assert read_metrics(path) == [*records[:2], {"split": "train", "iteration": 15, "loss": "nan"}]


def test_rng_states_round_trip():
    before = _rng_state(torch.device("cpu"))
    draws = (torch.rand(3), random.random(), np.random.rand(2))
    _set_rng_state(before)
    again = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(draws[0], again[0]) and draws[1] == again[1]
    assert np.array_equal(draws[2], again[2])


# --- a real run: retention and what a checkpoint holds ------------------------------------------


def test_retention_and_checkpoint_contents(tmp_path):
    run = tmp_path / "run"
    extra = ["train.iterations=60", "train.checkpoint_every=10", "train.keep_last=2"]
    assert train_cli(run, *extra, "train.val_every=20") == 0
    folder = run / "checkpoints"
    assert [p.name for p in list_checkpoints(folder)] == ["step-0000050.pt", "step-0000060.pt"]
    assert (folder / "best.pt").is_file()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["best.pt", "step-0000050.pt", "step-0000060.pt"]
    )
    vals = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "val"]
    best_record = min(vals, key=lambda r: r["mse"])
    best = load_checkpoint(folder / "best.pt")
    assert best["iteration"] == best_record["iteration"] and best["best"] == best_record["mse"]

    last = load_checkpoint(folder / "step-0000060.pt")
    assert {"iteration", "learner", "optimizer", "source", "rng", "best", "window"} <= set(last)
    assert last["iteration"] == 60
    names = set(last["learner"])
    assert any(n.startswith("rule.alpha0") for n in names)
    assert any(n.startswith("rule.generator") for n in names)
    assert any(n.startswith("model.") for n in names)
    assert len(last["optimizer"]["state"]) == len(last["optimizer"]["param_groups"][0]["params"])
    assert {"torch", "python", "numpy"} <= set(last["rng"])
    assert "generator" in last["source"]
    assert last["window"] == {"loss": 0.0, "count": 0, "alpha": [], "beta": []}
    # a checkpoint between two log lines keeps the partial window
    assert train_cli(tmp_path / "odd", *extra, "train.log_every=7", "train.val_every=0") == 0
    odd = load_checkpoint(tmp_path / "odd" / "checkpoints" / "step-0000060.pt")
    assert odd["window"]["count"] == 60 % 7 and len(odd["window"]["alpha"]) == 2
    # the state loads into a freshly built learner
    learner = build_learner(load_config(None, BASE), task="regression", in_channels=1)
    learner.load_state_dict(last["learner"])


# --- numerical faults ---------------------------------------------------------------------------


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("alfa: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_huge_learning_rate_diverges_with_step_layer_and_task(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_cli(run, "rule.name=maml", "rule.lr=1e6", "train.iterations=20") == 3
    line = error_line(capsys)
    assert re.search(
        r"training diverged: iteration 1: non-finite (support loss at|query loss after) inner "
        r"step \d, layer 'net\.\d' \(first non-finite output\), task \d+; "
        r"no checkpoint was written yet; to stabilise it, try a smaller rule\.lr or meta\.lr, "
        r"or meta\.grad_clip=1\.0 \(docs/stability\.md\)$",
        line,
    ), line
    assert list_checkpoints(run / "checkpoints") == []
    events = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "event"]
    assert events and events[-1]["event"] == "diverged"


def _poison_from(monkeypatch: pytest.MonkeyPatch, call: int, poison) -> None:
    """Make the training sampler's ``call``-th and later meta-batches go through ``poison``."""
    original = SinusoidSource.sample
    calls = {"n": 0}

    def sample(self: SinusoidSource, tasks: int) -> TaskBatch:
        batch = original(self, tasks)
        calls["n"] += 1
        return poison(batch) if calls["n"] >= call else batch

    monkeypatch.setattr(SinusoidSource, "sample", sample)


def _check_kept(run: Path) -> None:
    """Only the checkpoint from before the fault exists, intact, with finite weights."""
    paths = list_checkpoints(run / "checkpoints")
    assert [p.name for p in paths] == ["step-0000020.pt"]
    kept = load_checkpoint(paths[0])
    assert kept["iteration"] == 20
    assert all(bool(torch.isfinite(t).all()) for t in kept["learner"].values())
    learner = build_learner(load_config(None, BASE), task="regression", in_channels=1)
    learner.load_state_dict(kept["learner"])


def test_inf_data_after_a_checkpoint_stops_and_keeps_it(tmp_path, capsys, monkeypatch):
    def inf_inputs(batch: TaskBatch) -> TaskBatch:
        support_x = batch.support_x.clone()
        support_x[2, 1] = float("inf")
        return TaskBatch(support_x, batch.support_y, batch.query_x, batch.query_y)

    _poison_from(monkeypatch, 25, inf_inputs)
    run = tmp_path / "run"
    argv = ["train.iterations=40", "train.checkpoint_every=20", "train.val_every=0"]
    assert train_cli(run, *argv) == 3
    line = error_line(capsys)
    assert "iteration 25: non-finite support loss at inner step 0, layer 'net.0'" in line
    assert "task 2" in line and "step-0000020.pt" in line and "is kept" in line
    _check_kept(run)


def test_a_non_finite_generated_alpha_names_step_layer_and_task(tmp_path, capsys, monkeypatch):
    poisoned = {"on": False}
    forward = HyperparameterGenerator.forward

    def generate(self: HyperparameterGenerator, tau: torch.Tensor) -> torch.Tensor:
        out = forward(self, tau)
        if poisoned["on"] and tau.shape[0] == 4:
            out = out.clone()
            out[1, 2] = float("nan")  # alpha of the third adapted tensor, task 1
        return out

    def switch_on(batch: TaskBatch) -> TaskBatch:
        poisoned["on"] = True
        return batch

    monkeypatch.setattr(HyperparameterGenerator, "forward", generate)
    _poison_from(monkeypatch, 23, switch_on)
    run = tmp_path / "run"
    argv = ["train.iterations=40", "train.checkpoint_every=20", "train.val_every=0"]
    assert train_cli(run, *argv) == 3
    line = error_line(capsys)
    assert "iteration 23: non-finite generated alpha at inner step 0" in line
    assert "layer 'net.2.weight', task 1" in line
    _check_kept(run)
    (record,) = [json.loads(x) for x in (run / "provenance.jsonl").read_text().splitlines()]
    assert record["status"] == "diverged" and record["iterations"] == [0, None]


def test_non_finite_meta_parameters_are_never_checkpointed():
    learner = build_learner(load_config(None, BASE), task="regression", in_channels=1)
    meta_parameters_finite(learner, 7)
    with torch.no_grad():
        learner.rule.alpha0.value[1, 0] = float("inf")
    with pytest.raises(
        DivergenceError, match=r"iteration 7: non-finite meta-parameter 'rule\.alpha0"
    ):
        meta_parameters_finite(learner, 7)


def test_a_nan_validation_score_is_never_the_best():
    assert not _better("mse", float("nan"), None)
    assert not _better("accuracy", float("nan"), 0.5)
    assert _better("mse", 0.5, 1.0) and _better("accuracy", 0.6, 0.5)


# --- determinism and locking --------------------------------------------------------------------


def test_same_config_and_seed_give_identical_runs(tmp_path):
    argv = ["train.iterations=30", "train.checkpoint_every=15", "train.val_every=15", "seed=3"]
    for name in ("a", "b"):
        assert train_cli(tmp_path / name, *argv) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    for name in ("step-0000030.pt", "best.pt"):
        x = load_checkpoint(a / "checkpoints" / name)
        y = load_checkpoint(b / "checkpoints" / name)
        assert x["learner"].keys() == y["learner"].keys()
        assert all(torch.equal(x["learner"][k], y["learner"][k]) for k in x["learner"])
    assert train_cli(tmp_path / "c", *argv[:-1], "seed=4") == 0
    assert (a / "metrics.jsonl").read_bytes() != (tmp_path / "c" / "metrics.jsonl").read_bytes()


def test_a_run_in_use_cannot_be_resumed_twice(tmp_path, capsys):
    fcntl = pytest.importorskip("fcntl")
    run = tmp_path / "run"
    assert train_cli(run, "train.iterations=10", "train.val_every=0") == 0
    capsys.readouterr()
    with open(run / ".lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "in use by another" in error_line(capsys)


def test_the_divergence_hint_names_only_the_stabilisers_a_config_lacks():
    from alfa.runs.divergence import remedies

    paper = remedies(load_config(None, ["rule.name=alfa"]))
    assert "rule.state" not in paper  # one preset names the three switches
    for switch in ("meta.grad_clip=1.0", "rule.generator=stable"):
        assert switch in paper
        assert load_config(None, ["rule.name=alfa", switch])  # each is a valid override
    stable = remedies(
        load_config(
            None,
            ["rule.name=alfa", "meta.grad_clip=1", "rule.state_encoding=log_sign"],
        )
    )
    assert "grad_clip" not in stable and "log_sign" not in stable and "generator=" not in stable
    for switch in ("rule.generator_output=bounded", "rule.state_statistics=[mean,rms]"):
        assert switch in stable
        assert load_config(None, ["rule.name=alfa", switch])
    assert "rule.state" not in remedies(load_config(None, ["rule.name=maml"]))
