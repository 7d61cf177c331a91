"""Top-k checkpoints by validation and the checkpoint ensemble of `alfa eval --ensemble K`."""

from __future__ import annotations

import json

import torch

from alfa.cli.main import main
from alfa.config import load_config
from alfa.runs.checkpoint import list_top, load_checkpoint
from alfa.runs.evaluate import evaluate
from alfa.runs.reopen import load_ensemble, load_run
from alfa.runs.train import train

OVERRIDES = [
    "rule.name=alfa",
    "meta.steps=2",
    "meta.batch_size=4",
    "model.hidden=[8]",
    "train.iterations=60",
    "train.log_every=10",
    "train.val_every=10",
    "train.val_tasks=8",
    "train.checkpoint_every=20",
    "train.keep_best=3",
    "train.threads=1",
    "eval.batch=10",
]


def test_top_k_checkpoints_are_the_best_validations(tmp_path):
    run = tmp_path / "run"
    train(load_config(None, OVERRIDES), run, progress=False)
    records = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"val"' in line
    ]
    best3 = sorted(records, key=lambda r: r["mse"])[:3]
    top = list_top(run / "checkpoints")
    assert sorted(top) == sorted(r["iteration"] for r in best3)
    for record in best3:
        state = load_checkpoint(top[record["iteration"]])
        assert state["score"] == record["mse"]


def test_ensemble_averages_outputs_of_the_top_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    train(load_config(None, OVERRIDES), run, progress=False)
    config, _, source, _ = load_run(run)
    members = load_ensemble(run, 2, config, source)
    got = evaluate(members, source, tasks=10, seed=5, batch=10)
    batch = next(source.fixed("test", 10, 5, 10))
    outputs = [m(batch, keep_graph=False).outputs for m in members]
    expected = (torch.stack(outputs).mean(0) - batch.query_y).pow(2).flatten(1).mean(1)
    assert abs(got["mean"] - float(expected.mean())) < 1e-6
    assert got["ensemble"] == 2
    assert main(["eval", str(run), "--ensemble", "3", "--tasks", "10", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["ensemble"] == 3 and line["checkpoint"] == "top-3 ensemble"
    assert main(["eval", str(run), "--ensemble", "4", "--tasks", "10"]) == 2
    assert "train.keep_best=4" in capsys.readouterr().err
