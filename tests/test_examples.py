"""Every script of examples/ runs (at a small size) and prints what it promises."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

from alfa.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(capsys, monkeypatch, name: str, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def test_every_example_is_tested():
    tested = {"own_cnn_own_episodes.py", "regression_family.py", "evaluate_run.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_own_cnn_on_own_episodes(capsys, monkeypatch):
    out = _run(
        capsys, monkeypatch, "own_cnn_own_episodes.py", "--iterations", "3", "--test-tasks", "10"
    )
    assert "engine: fast" in out  # nn.BatchNorm2d converted, the fast engine kept
    found = re.search(r"10 5-way 1-shot tasks .*: ([\d.]+) before, ([\d.]+) after 3 iter", out)
    assert found, out
    for value in found.groups():  # accuracy over 10 tasks x 25 query images
        assert (
            0.0 <= float(value) <= 1.0
            and abs(float(value) * 250 - round(float(value) * 250)) < 1e-3
        )


def test_alfa_on_a_regression_family_of_ones_own(capsys, monkeypatch):
    out = _run(capsys, monkeypatch, "regression_family.py", "--iterations", "3")
    assert "engine: fast" in out
    assert re.search(r"200 fixed 5-shot quadratics: [\d.]+ before, [\d.]+ after 3 iter", out), out


def test_evaluating_a_run_from_python_scores_the_tasks_of_alfa_eval(capsys, monkeypatch, tmp_path):
    run = tmp_path / "run"
    overrides = [
        "data.name=sinusoid",
        "model.hidden=[8]",
        "meta.steps=2",
        "meta.batch_size=4",
        "train.iterations=2",
        "train.log_every=1",
        "train.val_every=0",
        "train.checkpoint_every=2",
        "train.threads=1",
    ]
    assert main(["train", *overrides, "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--tasks", "20"]) == 0
    cli = capsys.readouterr().out
    out = _run(capsys, monkeypatch, "evaluate_run.py", str(run), "--tasks", "20")
    number = r"mse: ([\d.]+) \+- ([\d.]+) \(95% CI, 20 tasks"
    assert re.search(number, out).groups() == re.search(number, cli).groups(), (out, cli)
    assert re.search(r"first test task: query MSE [\d.]+, learning rates of step 1", out)
