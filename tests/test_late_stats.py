"""The training loop reads an iteration's statistics one iteration late (alfa.runs.step_stats):
the same log, checkpoints and divergence messages as reading them at once, before the step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from alfa.cli.main import main
from alfa.runs import train as train_module
from alfa.runs.checkpoint import list_checkpoints, load_checkpoint
from alfa.runs.runlog import read_metrics
from alfa.runs.step_stats import ParamSnapshot, PendingStats, read_stats, stat_parts
from alfa.tasks.source import SinusoidSource
from alfa.typing import TaskBatch

BASE = [
    "rule.name=alfa",
    "meta.batch_size=4",
    "meta.steps=2",
    "model.hidden=[8,8]",
    "train.threads=1",
    "train.iterations=9",
    "train.log_every=3",
    "train.checkpoint_every=5",
    "train.val_every=4",
    "train.val_tasks=10",
    "eval.batch=10",
]


def _train(run: Path, late: bool, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    with monkeypatch.context() as m:
        m.setattr(train_module, "_late_statistics", lambda here: late)
        return main(["train", *BASE, *extra, "--run-dir", str(run), "--no-progress"])


def _count_samples(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    original = SinusoidSource.sample
    calls = {"n": 0}

    def sample(self: SinusoidSource, tasks: int) -> TaskBatch:
        calls["n"] += 1
        return original(self, tasks)

    monkeypatch.setattr(SinusoidSource, "sample", sample)
    return calls


def test_late_statistics_change_no_log_and_no_checkpoint(tmp_path, monkeypatch, capsys):
    calls = _count_samples(monkeypatch)
    reads: list[tuple[int, int]] = []
    real_read = PendingStats.read

    def read(self: PendingStats):
        reads.append((self.iteration, calls["n"]))
        return real_read(self)

    monkeypatch.setattr(PendingStats, "read", read)
    assert _train(tmp_path / "now", False, monkeypatch) == 0
    now_reads, reads[:] = list(reads), []
    calls["n"] = 0
    assert _train(tmp_path / "late", True, monkeypatch) == 0
    capsys.readouterr()
    # read at once: before the next batch is drawn
    assert now_reads == [(i, i) for i in range(1, 10)]
    # late: iterations that neither log (3, 6, 9), validate (4, 8) nor checkpoint (5) are read
    # after the next iteration's batch was drawn and its backward pass queued
    assert reads == [(1, 2), (2, 3), (3, 3), (4, 4), (5, 5), (6, 6), (7, 8), (8, 8), (9, 9)]
    now, late = tmp_path / "now", tmp_path / "late"
    assert (late / "metrics.jsonl").read_bytes() == (now / "metrics.jsonl").read_bytes()
    names = [p.name for p in list_checkpoints(now / "checkpoints")]
    assert names == [p.name for p in list_checkpoints(late / "checkpoints")] and names
    for name in names:
        a = load_checkpoint(now / "checkpoints" / name)
        b = load_checkpoint(late / "checkpoints" / name)
        for key in ("iteration", "window", "source", "learner", "optimizer", "rng", "best"):
            assert _same(a[key], b[key]), (name, key)


def _same(a: object, b: object) -> bool:
    """Equal, tensors bit for bit, through dicts, lists and tuples."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))  # type: ignore
        )
    return a == b


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("alfa: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _events(run: Path) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "event"]


def test_a_divergence_found_late_is_named_as_when_read_at_once(tmp_path, monkeypatch, capsys):
    """NaN targets from the 7th meta-batch on: iteration 7 is read late (during iteration 8),
    after its step; the loop goes back to the meta-parameters before it and names the step,
    layer and task as the immediate reading does."""
    calls = _count_samples(monkeypatch)
    original = SinusoidSource.sample

    def poisoned(self: SinusoidSource, tasks: int) -> TaskBatch:
        batch = original(self, tasks)
        if calls["n"] < 7:
            return batch
        query_y = batch.query_y.clone()
        query_y[2] = float("nan")
        return TaskBatch(batch.support_x, batch.support_y, batch.query_x, query_y)

    monkeypatch.setattr(SinusoidSource, "sample", poisoned)
    messages = {}
    for late in (False, True):
        calls["n"] = 0
        run = tmp_path / str(late)
        assert _train(run, late, monkeypatch) == 3
        messages[late] = _error(capsys).replace(str(run), "RUN")
        assert [e["iteration"] for e in _events(run)] == [7]
        assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-0000005.pt"]
    assert messages[True] == messages[False]
    assert "iteration 7: non-finite query loss after inner step 1" in messages[True]
    assert "task 2" in messages[True]


def test_a_non_finite_meta_gradient_found_late_names_the_parameter(tmp_path, monkeypatch, capsys):
    """A finite loss with a NaN meta-gradient (one parameter's) from iteration 7 on: found late
    through the one multi-tensor reduction, named by the same check as before."""
    calls = _count_samples(monkeypatch)
    real_build = train_module.build_learner

    def build(*args, **kwargs):
        learner = real_build(*args, **kwargs)
        name, param = [(n, p) for n, p in learner.named_parameters() if p.requires_grad][-1]
        param.register_hook(lambda g: g * math.nan if calls["n"] >= 7 else g)
        build.name = name
        return learner

    monkeypatch.setattr(train_module, "build_learner", build)
    messages = {}
    for late in (False, True):
        calls["n"] = 0
        run = tmp_path / str(late)
        assert _train(run, late, monkeypatch) == 3
        messages[late] = _error(capsys).replace(str(run), "RUN")
    assert messages[True] == messages[False]
    assert f"iteration 7: non-finite meta-gradient of '{build.name}'" in messages[True]


def test_the_gradient_check_is_one_reduction_that_keeps_nan_and_inf():
    layer = torch.nn.Linear(3, 2)
    stats = torch.tensor([0.5, 0.1, 0.0])
    out = layer(torch.ones(1, 3)).sum()
    out.backward()
    found = read_stats(layer, stats, 1, False)
    largest = max(float(p.grad.abs().max()) for p in layer.parameters())
    assert found.loss == 0.5 and found.largest == largest and found.accuracy is None
    layer.weight.grad[0, 1] = math.nan
    assert math.isnan(read_stats(layer, stats, 1, False).largest)
    layer.weight.grad[0, 1] = -math.inf
    assert read_stats(layer, stats, 1, False).largest == math.inf


def test_a_snapshot_restores_the_parameters_before_the_step():
    layer = torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in layer.parameters()]
    snapshot = ParamSnapshot(layer)
    snapshot.take()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(1.0)
    snapshot.restore()
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters(), strict=True))


def test_pending_statistics_on_the_cpu_need_no_copy():
    from types import SimpleNamespace

    from alfa.engine.meta_learner import MetaOutput

    hyper = SimpleNamespace(alpha=torch.ones(2, 3), beta=torch.zeros(2, 3))
    out = MetaOutput(torch.tensor(0.25), torch.zeros(2), [hyper], torch.zeros(2, 1))
    local = stat_parts(out, None)
    layer = torch.nn.Linear(1, 1)
    batch = TaskBatch(*(torch.zeros(2, 1, 1) for _ in range(4)))
    pending = PendingStats(4, layer, local, 1, False, batch, local)
    found = pending.read()
    assert (found.loss, found.alpha, found.beta, found.largest) == (0.25, [1.0], [0.0], 0.0)
