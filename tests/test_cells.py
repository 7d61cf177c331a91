"""A cell (alfa.paper.cells): trained, then tested at its best checkpoint, unless no test is
asked or it diverged before any checkpoint; the test tasks may differ from cell to cell."""

from __future__ import annotations

import pytest

from alfa.config import load_config
from alfa.errors import DivergenceError
from alfa.paper.cells import train_and_test, train_and_test_all

KEYS = ["train.iterations=4", "train.val_every=2", "train.checkpoint_every=2", "model.hidden=[4]"]


def test_a_cell_is_tested_only_when_asked_and_only_from_a_checkpoint(tmp_path, monkeypatch):
    config = load_config(None, ["name=c", *KEYS])
    tested = train_and_test(config, tmp_path / "tested", 3)
    assert tested["tasks"] == 3 and len(tested["per_task"]) == 3
    assert tested["checkpoint_iteration"] in (2, 4) and tested["diverged"] is None
    untested = train_and_test(config, tmp_path / "untested", 0)
    assert set(untested) == {"name", "diverged", "seconds"} and untested["diverged"] is None
    assert (tmp_path / "untested" / "checkpoints" / "best.pt").is_file()  # it did train

    def diverge(*args, **kwargs):
        raise DivergenceError("iteration 1: non-finite loss")

    monkeypatch.setattr("alfa.runs.train.train", diverge)
    lost = train_and_test(config, tmp_path / "lost", 3)  # no checkpoint to test
    assert set(lost) == {"name", "diverged", "seconds"}
    assert lost["diverged"] == "iteration 1: non-finite loss"
    kept = train_and_test(config, tmp_path / "tested", 3)  # tested at the best checkpoint
    assert kept["diverged"] == "iteration 1: non-finite loss" and kept["mean"] == tested["mean"]


def test_each_cell_may_have_its_own_number_of_test_tasks(tmp_path):
    work = [(load_config(None, [f"name=c{i}", *KEYS]), tmp_path / f"c{i}") for i in range(2)]
    results = dict(train_and_test_all(work, [2, 0], progress=False))
    assert results[0]["tasks"] == 2 and "tasks" not in results[1]
    with pytest.raises(ValueError, match="1 test task counts for 2 cells"):
        list(train_and_test_all(work, [2], progress=False))
