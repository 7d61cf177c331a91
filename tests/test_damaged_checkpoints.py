"""Checkpoints that cannot be trusted: a damaged ``best.pt`` found when resuming is reported on
one line and set aside while the run goes on from its last good periodic checkpoint; a diverged
run calls a checkpoint "good" only after checking it (it loads, its weights are finite, and its
validation metric is finite)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from alfa.cli.main import main
from alfa.runs.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from metahelpers import TINY
from test_rough_edges import error_line, run_cli


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny sinusoid run: step-10, step-20 and best.pt."""
    run = tmp_path_factory.mktemp("damaged") / "run"
    assert main(["train", *TINY, "--run-dir", str(run), "--no-progress"]) == 0
    return run


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def _damage(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("alfa: warning: ")]


# --- a damaged best.pt at resume -----------------------------------------------------------------


def test_a_damaged_best_checkpoint_is_reported_when_extending_a_run(run, capsys):
    best = run / "checkpoints" / "best.pt"
    _damage(best)
    code, _, err = run_cli(
        capsys, "train", "--resume", str(run), "train.iterations=30", "--no-progress"
    )
    assert code == 0, err
    assert "Traceback" not in err
    lines = _warnings(err)
    assert len(lines) == 1, err
    assert str(best) in lines[0] and "damaged" in lines[0] and "best.pt.damaged" in lines[0]
    assert "from step-0000020.pt (iteration 20)" in err  # the run went on from its checkpoint
    assert load_checkpoint(run / "checkpoints" / "step-0000030.pt")["iteration"] == 30
    assert (run / "checkpoints" / "best.pt.damaged").read_bytes()  # kept for inspection
    # whatever best.pt holds now loads, and the run can be evaluated
    if best.exists():
        load_checkpoint(best)
    code, out, err = run_cli(capsys, "eval", str(run), "--tasks", "5", "--json")
    assert code == 0, err
    used = json.loads(out.splitlines()[-1])["checkpoint"]
    assert used == ("best.pt" if best.exists() else "step-0000030.pt")


def test_a_damaged_best_checkpoint_of_a_finished_run(run, capsys):
    best = run / "checkpoints" / "best.pt"
    _damage(best)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 0, err
    lines = _warnings(err)
    assert len(lines) == 1 and str(best) in lines[0], err
    assert not best.exists()
    code, out, err = run_cli(capsys, "eval", str(run), "--tasks", "5", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["checkpoint"] == "step-0000020.pt"


def test_a_damaged_best_and_newest_checkpoint_fall_back_to_the_last_good_one(run, capsys):
    _damage(run / "checkpoints" / "best.pt")
    _damage(run / "checkpoints" / "step-0000020.pt")
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 0, err
    lines = _warnings(err)
    assert len(lines) == 2, err
    assert any("best.pt" in line for line in lines)
    assert any("step-0000020.pt" in line and "step-0000010.pt" in line for line in lines)
    assert "from step-0000010.pt (iteration 10)" in err
    assert load_checkpoint(run / "checkpoints" / "step-0000020.pt")["iteration"] == 20


def test_a_refused_resume_leaves_a_damaged_best_checkpoint_alone(run, capsys):
    best = run / "checkpoints" / "best.pt"
    _damage(best)
    before = best.read_bytes()
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "seed=3", "--no-progress")
    assert code == 2
    error_line(err, "seed")
    assert best.read_bytes() == before and not _warnings(err)


# --- the last good checkpoint of a diverged run --------------------------------------------------


def _rewrite_weights(path: Path, change) -> None:
    """Rewrite the base learner's weights of a checkpoint (the file stays a valid checkpoint)."""
    state = load_checkpoint(path)
    for name, tensor in state["learner"].items():
        if name.startswith("model.") and tensor.is_floating_point():
            state["learner"][name] = change(tensor)
    save_checkpoint(path, state)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda t: torch.full_like(t, float("nan")), "'step-0000020.pt': non-finite weights"),
        # finite weights whose predictions overflow: a validation MSE of inf
        (lambda t: t * 1e20, "'step-0000020.pt': validation mse "),
    ],
    ids=["nan-weights", "inf-validation"],
)
def test_a_diverged_run_checks_the_checkpoint_it_calls_good(run, capsys, change, why):
    path = run / "checkpoints" / "step-0000020.pt"
    _rewrite_weights(path, change)
    if "validation" in why:  # finite weights: only the validation can tell
        assert all(torch.isfinite(t).all() for t in load_checkpoint(path)["learner"].values())
    # resuming from the newest checkpoint diverges at once; the message must not call it good
    code, _, err = run_cli(
        capsys, "train", "--resume", str(run), "train.iterations=30", "--no-progress"
    )
    assert code == 3, err
    line = error_line(err, "training diverged", why)
    assert re.search(r"'step-0000020.pt': (non-finite weights|validation mse (nan|inf))", line)
    pattern = r"the last good checkpoint '([^']+)' \(iteration (\d+): finite weights, validation"
    match = re.search(pattern + r" mse ([0-9.]+)\) is kept", line)
    assert match, line
    assert Path(match.group(1)).name == "step-0000010.pt" and match.group(2) == "10"
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [
        "step-0000010.pt",
        "step-0000020.pt",
    ]


def test_a_diverged_run_with_no_good_checkpoint_says_so(run, capsys):
    for path in list_checkpoints(run / "checkpoints"):
        _rewrite_weights(path, lambda t: torch.full_like(t, float("nan")))
    code, _, err = run_cli(
        capsys, "train", "--resume", str(run), "train.iterations=30", "--no-progress"
    )
    assert code == 3, err
    line = error_line(err, "training diverged", "no checkpoint is good")
    assert "'step-0000020.pt': non-finite weights" in line
    assert "'step-0000010.pt': non-finite weights" in line
    assert "last good" not in line
