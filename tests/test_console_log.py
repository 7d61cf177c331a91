"""Honest logs: what a training run prints (validation metric, training accuracy, plain lines
for non-interactive runs) and the training accuracy in ``metrics.jsonl``."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from alfa.cli.main import main
from alfa.config import load_config
from alfa.engine.meta_learner import MetaOutput
from alfa.runs.runlog import ConsoleLog, format_duration, read_metrics
from alfa.runs.train import _iteration_stats, _training_state, _Window, train
from metahelpers import TINY
from shared_paths import OMNIGLOT_CONFIGS, real_omniglot_overrides

TRAIN_LINE = re.compile(
    r"^(?P<name>\S+): iteration (?P<it>\d+)/(?P<total>\d+)  loss \d+\.\d{4}"
    r"(?P<acc>  train accuracy [01]\.\d{4})?  (\d+\.\d{2}|-) it/s  ETA (\d+:\d\d:\d\d|\?)$"
)
VAL_LINE = re.compile(
    r"^(?P<name>\S+): iteration (?P<it>\d+)/(?P<total>\d+)  validation (?P<metric>mse|accuracy) "
    r"-?\d+\.\d{4} \+- \d+\.\d{4} \(95% CI\)(?P<acc>  train accuracy [01]\.\d{4})?$"
)


def _lines(err: str, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    return [m for m in (pattern.match(line) for line in err.splitlines()) if m]


# --- regression (sinusoid) ----------------------------------------------------------------------


def test_no_progress_prints_one_line_per_log_interval_and_validation(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--run-dir", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    train_lines, val_lines = _lines(err, TRAIN_LINE), _lines(err, VAL_LINE)
    assert [int(m["it"]) for m in train_lines] == [5, 10, 15, 20]  # train.log_every=5
    assert [int(m["it"]) for m in val_lines] == [10, 20]  # train.val_every=10
    assert all(m["total"] == "20" for m in train_lines + val_lines)
    assert all(m["metric"] == "mse" for m in val_lines)
    assert not any(m["acc"] for m in train_lines + val_lines)  # regression has no accuracy
    # the printed validation value is the logged one
    logged = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "val"]
    assert [f"{r['mse']:.4f}" for r in logged] == [
        re.search(r"mse (\S+)", m.string)[1] for m in val_lines
    ]
    assert not any("train_accuracy" in r for r in read_metrics(run / "metrics.jsonl"))


def test_a_run_without_a_terminal_prints_plain_lines_not_a_progress_bar(tmp_path, capsys):
    assert not sys.stderr.isatty()  # captured by pytest
    train(load_config(None, TINY), tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert len(_lines(err, TRAIN_LINE)) == 4 and len(_lines(err, VAL_LINE)) == 2
    assert "it/s]" not in err  # no tqdm bar in the log


def test_a_terminal_gets_the_bar_and_a_line_per_validation(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    train(load_config(None, TINY), tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert len(_lines(err, VAL_LINE)) == 2
    assert "ETA" not in err  # the per-interval values go to the bar, not to lines


def test_console_log_formats_speed_and_time_left():
    now = [100.0]
    lines: list[str] = []
    console = ConsoleLog("r", 100, 20, plain=True, write=lines.append, clock=lambda: now[0])
    now[0] = 110.0  # 10 iterations in 10 s: 1 it/s, 70 left
    console.train(30, {"loss": 0.5, "train_accuracy": 0.25})
    assert (
        lines[-1]
        == "r: iteration 30/100  loss 0.5000  train accuracy 0.2500  1.00 it/s  ETA 0:01:10"
    )
    console.validation(30, "accuracy", 0.5, 0.01)  # the last window's training accuracy
    assert lines[-1].endswith(
        "validation accuracy 0.5000 +- 0.0100 (95% CI)  train accuracy 0.2500"
    )
    quiet = ConsoleLog("r", 100, 0, plain=False, write=lines.append)
    assert quiet.train(10, {"loss": 1.0}) is None and len(lines) == 2
    assert format_duration(3725) == "1:02:05" and format_duration(float("inf")) == "?"


# --- classification -----------------------------------------------------------------------------


def test_iteration_stats_reads_the_query_accuracy_in_the_same_transfer(monkeypatch):
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]], [[0.0, 1.0], [1.0, 0.0], [0, 2]]])
    labels = torch.tensor([[0, 1, 1], [1, 1, 1]])  # 2 + 2 of 6 right
    hyper = SimpleNamespace(alpha=torch.ones(2, 3), beta=torch.zeros(2, 3))
    out = MetaOutput(torch.tensor(0.7), torch.zeros(2), [hyper], logits)
    learner = torch.nn.Linear(1, 1)
    learner.task = "classification"
    reads = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: reads.append(t) or real(t))
    loss, alpha, beta, largest, accuracy = _iteration_stats(learner, out, labels)
    assert len(reads) == 1  # one host synchronisation per iteration, accuracy included
    assert accuracy == pytest.approx(4 / 6) and loss == pytest.approx(0.7)
    assert alpha == [1.0] and beta == [0.0] and largest == 0.0
    learner.task = "regression"
    assert _iteration_stats(learner, out, None)[4] is None


def test_window_keeps_the_accuracy_across_a_checkpoint():
    window = _Window()
    window.add(1.0, [0.1], [0.0], 0.5)
    window.add(3.0, [0.3], [0.0], 0.75)
    assert window.values()["train_accuracy"] == pytest.approx(0.625)
    state = {"iteration": 2, "best": None, "window": window.state()}
    _, _, restored, _ = _training_state(Path("x.pt"), state)
    assert restored == window
    regression = _Window()
    regression.add(1.0, [0.1], [0.0])
    assert set(regression.state()) == {"loss", "count", "alpha", "beta"}  # stored as before
    assert "train_accuracy" not in regression.values()


def _folder_dataset(root: Path, classes: int = 8, per_class: int = 4) -> list[str]:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        base = rng.integers(0, 256, (16, 16, 3))
        for i in range(per_class):
            noisy = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / f"c{c}" / f"{i}.png")
    split = root.parent / "split.txt"
    split.write_text("".join(f"c{c}\n" for c in range(classes)))
    return [
        "data.name=folder",
        f"data.root={root}",
        f"data.split_file={split}",
        f"data.val_split_file={split}",
        f"data.test_split_file={split}",
        "data.ways=3",
        "data.shots=1",
        "data.query=2",
        "data.image_size=16",
        "model.name=conv4",
        "model.filters=4",
        "meta.steps=1",
        "meta.batch_size=2",
        "train.iterations=12",
        "train.log_every=4",
        "train.val_every=6",
        "train.val_tasks=4",
        "train.checkpoint_every=5",
        "train.keep_last=5",
        "train.threads=1",
        "eval.batch=4",
    ]


def test_classification_logs_train_accuracy_and_resumes_it_exactly(tmp_path, capsys):
    overrides = _folder_dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", *overrides, "--run-dir", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    train_lines, val_lines = _lines(err, TRAIN_LINE), _lines(err, VAL_LINE)
    assert [int(m["it"]) for m in train_lines] == [4, 8, 12]
    assert [int(m["it"]) for m in val_lines] == [6, 12]
    assert all(m["acc"] for m in train_lines + val_lines)
    assert all(m["metric"] == "accuracy" for m in val_lines)
    records = read_metrics(run / "metrics.jsonl")
    trained = [r for r in records if r["split"] == "train"]
    assert len(trained) == 3 and all(0 <= r["train_accuracy"] <= 1 for r in trained)
    # 3-way with 2 queries per class over 2 tasks: each iteration's accuracy is k/12
    assert all(
        abs(r["train_accuracy"] * 48 - round(r["train_accuracy"] * 48)) < 1e-4 for r in trained
    )
    # resuming from step 5 (a window of one iteration's accuracy open) rewrites the same log
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for name in ("step-0000010.pt", "step-0000012.pt", "best.pt"):
        (copy / "checkpoints" / name).unlink()
    assert main(["train", "--resume", str(copy), "--no-progress"]) == 0
    assert read_metrics(copy / "metrics.jsonl") == records
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/train_accuracy")]
    assert steps == [4, 8, 12]


@pytest.mark.slow
def test_real_omniglot_no_progress_shows_accuracy_lines(tmp_path, capsys):
    config = OMNIGLOT_CONFIGS / "alfa_maml_5way_1shot.yaml"
    overrides = [
        *real_omniglot_overrides(),
        "model.filters=4",
        "meta.batch_size=2",
        "train.iterations=4",
        "train.log_every=2",
        "train.val_every=4",
        "train.val_tasks=4",
        "train.checkpoint_every=4",
        "eval.batch=4",
    ]
    run = tmp_path / "run"
    assert main(["train", str(config), *overrides, "--run-dir", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    train_lines, val_lines = _lines(err, TRAIN_LINE), _lines(err, VAL_LINE)
    assert [int(m["it"]) for m in train_lines] == [2, 4]
    assert [(int(m["it"]), m["metric"]) for m in val_lines] == [(4, "accuracy")]
    assert all(m["acc"] and m["name"] == "omniglot-alfa_maml-5way-1shot" for m in train_lines)
    assert val_lines[0]["acc"]
    trained = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    assert len(trained) == 2 and all(0 <= r["train_accuracy"] <= 1 for r in trained)
    # 5-way, 5 queries per class, 2 tasks, a window of 2 iterations: k/100 right
    assert all(
        abs(r["train_accuracy"] * 100 - round(r["train_accuracy"] * 100)) < 1e-4 for r in trained
    )
    assert [f"{r['train_accuracy']:.4f}" for r in trained] == [
        m["acc"].split()[-1] for m in train_lines
    ]
