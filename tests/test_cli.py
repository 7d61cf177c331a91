"""Bad input on the command line: exit code 2, one line naming the culprit, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alfa.cli.main import main
from metahelpers import TINY


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``alfa ARGV`` in this process: exit code, stdout, stderr."""
    try:
        code = main([*argv])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_error_line(err: str, *words: str) -> str:
    """Exactly one ``alfa: error:`` line holding every word, and no traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("alfa: error: ")]
    assert len(errors) == 1, err
    others = [line for line in err.splitlines() if line and line not in errors]
    assert all(line.startswith("run directory: ") for line in others), err
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--run-dir", str(run), "--no-progress"]) == 0
    return run


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "override, key",
    [
        ("meta.stpes=3", "meta.stpes"),
        ("meta.steps=abc", "meta.steps"),
        ("train.iterations=1.5", "train.iterations"),
        ("data.shots=0", "data.shots"),
        ("meta.steps=-1", "meta.steps"),
        ("meta.batch_size=0", "meta.batch_size"),
        ("meta.init=random", "meta.init"),
        ("rule.lr=nan", "rule.lr"),
    ],
)
def test_bad_overrides(capsys, in_tmp, override, key):
    code, _, err = run_cli(capsys, "train", *TINY, override)
    assert code == 2
    assert_error_line(err, f"'{key}'")
    assert snapshot(in_tmp) == {} and not (in_tmp / "runs").exists()


def test_unknown_key_suggests(capsys, in_tmp):
    code, _, err = run_cli(capsys, "train", "meta.stpes=3")
    assert code == 2
    assert_error_line(err, "'meta.stpes'", "did you mean 'meta.steps'")


@pytest.mark.parametrize(
    "content, words",
    [
        (None, ["does not exist"]),
        ("train: [1, 2\n", ["not valid YAML"]),
        ("- 1\n- 2\n", ["mapping"]),
        ("train:\n  iteratons: 3\n", ["'train.iteratons'", "train.iterations"]),
    ],
)
def test_bad_config_files(capsys, in_tmp, content, words):
    path = in_tmp / "cfg.yaml"
    if content is not None:
        path.write_text(content)
    before = snapshot(in_tmp)
    code, _, err = run_cli(capsys, "train", str(path))
    assert code == 2
    line = assert_error_line(err, *words)
    if content is not None and "iteratons" not in content:
        assert str(path) in line
    assert snapshot(in_tmp) == before


def test_train_refuses_a_folder_that_holds_a_run(capsys, finished_run, tmp_path):
    before = snapshot(finished_run)
    assert {"config.yaml", "metrics.jsonl"} <= set(before)
    assert any(name.startswith("checkpoints/step-") for name in before)
    config = tmp_path / "c.yaml"
    config.write_text("seed: 5\n")
    for argv in (
        ["train", *TINY, "--run-dir", str(finished_run)],
        ["train", str(config), "--run-dir", str(finished_run)],
    ):
        code, _, err = run_cli(capsys, *argv, "--no-progress")
        assert code == 2
        assert_error_line(err, str(finished_run), "already holds a run", "--resume")
        assert snapshot(finished_run) == before
    # a folder with only metrics (say, config.yaml deleted) is not overwritten either
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "metrics.jsonl").write_text('{"split": "train", "iteration": 5}\n')
    code, _, err = run_cli(capsys, "train", *TINY, "--run-dir", str(partial))
    assert code == 2
    assert (partial / "metrics.jsonl").read_text() == '{"split": "train", "iteration": 5}\n'


def test_run_dir_that_is_a_file(capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    code, _, err = run_cli(capsys, "train", *TINY, "--run-dir", str(target))
    assert code == 2
    assert_error_line(err, str(target), "not a directory")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("command", [["eval"], ["train", "--resume"]])
def test_not_a_run_directory(capsys, tmp_path, command):
    missing = tmp_path / "missing"
    code, _, err = run_cli(capsys, *command, str(missing))
    assert code == 2
    assert_error_line(err, str(missing), "does not exist")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    code, _, err = run_cli(capsys, *command, str(plain))
    assert code == 2
    assert_error_line(err, str(plain), "not an alfa run directory")
    assert snapshot(plain) == {"notes.txt": b"hello"}


def test_resume_takes_no_overrides(capsys, finished_run):
    before = snapshot(finished_run)
    code, _, err = run_cli(capsys, "train", "--resume", str(finished_run), "seed=3")
    assert code == 2
    assert_error_line(err, "--resume")
    assert snapshot(finished_run) == before


def test_eval_tasks_zero(capsys, finished_run):
    code, _, err = run_cli(capsys, "eval", str(finished_run), "--tasks", "0")
    assert code == 2
    assert_error_line(err, "--tasks")


def test_eval_works_and_reports_json(capsys, finished_run):
    code, out, _ = run_cli(capsys, "eval", str(finished_run), "--tasks", "10", "--json")
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["tasks"] == 10 and result["metric"] == "mse"
    # The same numbers, computed independently: the per-task reference adapts the saved
    # checkpoint to the same fixed test tasks (first order, as evaluation) and scores them.
    import dataclasses
    import math

    import torch

    from alfa.runs.reopen import load_run
    from reference_impl import copy_meta_tensors, reference_meta_loss
    from test_reference import spec_for

    config, learner, source, _ = load_run(finished_run)
    chunks = list(source.fixed("test", 10, config.eval.seed, config.eval.batch))
    batch = [torch.cat([getattr(c, f) for c in chunks]) for f in ("support_x", "support_y")]
    batch += [torch.cat([getattr(c, f) for c in chunks]) for f in ("query_x", "query_y")]
    rule = dataclasses.asdict(config.rule)
    spec = spec_for(rule, steps=config.meta.steps, first_order=True)
    ref = reference_meta_loss(learner.model, spec, copy_meta_tensors(learner), tuple(batch))
    values = ref.query_losses.double()
    assert result["mean"] == pytest.approx(float(values.mean()), rel=1e-5)
    std = float(values.std(unbiased=False))
    assert result["ci95"] == pytest.approx(1.96 * std / math.sqrt(10), rel=1e-4)


@pytest.mark.parametrize(
    "argv",
    [["train", "--bogus"], ["eval", "x", "--bogus"], ["nonsense"], ["eval", "x", "--tasks", "a"]],
)
def test_unknown_cli_options(capsys, argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err and "error:" in err


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_eval_on_a_run_whose_only_checkpoint_is_corrupt(capsys, tmp_path):
    run = tmp_path / "run"
    argv = [*TINY, "train.iterations=10", "train.val_every=0", "--run-dir", str(run)]
    assert main(["train", *argv, "--no-progress"]) == 0
    capsys.readouterr()  # the training run's own lines
    only = run / "checkpoints" / "step-0000010.pt"
    assert [p.name for p in (run / "checkpoints").iterdir()] == [only.name]
    _corrupt(only)
    code, _, err = run_cli(capsys, "eval", str(run), "--tasks", "5")
    assert code == 2
    assert_error_line(err, str(only), "checksum")
    only.write_bytes(only.read_bytes()[:100])  # truncated this time
    code, _, err = run_cli(capsys, "eval", str(run), "--tasks", "5", "--checkpoint", "last")
    assert code == 2
    assert_error_line(err, str(only))


def test_eval_with_a_corrupt_best_checkpoint(capsys, finished_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    best = run / "checkpoints" / "best.pt"
    _corrupt(best)
    code, _, err = run_cli(capsys, "eval", str(run), "--tasks", "5")
    assert code == 2
    assert_error_line(err, str(best), "--checkpoint last")
    code, _, _ = run_cli(capsys, "eval", str(run), "--tasks", "5", "--checkpoint", "last")
    assert code == 0


def _alfa(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "alfa.cli.main", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_real_process_prints_one_line_and_debug_shows_the_traceback(tmp_path):
    result = _alfa("train", "meta.steps=abc", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "alfa: error: config key 'meta.steps' must be an integer; got 'abc'"
    ]
    result = _alfa("--debug", "train", "meta.steps=abc", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
    assert list(tmp_path.iterdir()) == []
