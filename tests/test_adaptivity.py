"""The task-adaptivity diagnostics (src/alfa/paper/adaptivity.py) and their report."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from alfa.config import load_config
from alfa.paper.adaptivity import cv_r2, diagnose, record, task_averaged, validation_tasks
from alfa.paper.adaptivity_report import recommended, write
from alfa.runs.train import train
from alfa.tasks.source import build_source
from alfa.typing import TaskBatch
from metahelpers import make_learner

F64 = torch.float64


def _randomise_generator(learner, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.rule.generator.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)


def test_validation_tasks_are_the_runs_validation_tasks():
    config = load_config(None, ["data.name=sinusoid", "data.eval_query=20"])
    source = build_source(config)
    batch, amplitude = validation_tasks(config, 30)
    chunks = source.fixed_chunks("val", 30, config.eval.seed, 30)
    assert len(chunks) == 1
    for a, b in zip(batch, chunks[0], strict=True):
        assert torch.equal(a, b)
    assert amplitude.shape == (30,) and amplitude.min() >= 0.1 and amplitude.max() <= 5.0
    # the amplitude is the task's: |y| never exceeds it, and the largest |y| comes close
    y = torch.cat([batch.support_y, batch.query_y], 1).abs().amax((1, 2))
    assert torch.all(y <= amplitude + 1e-6) and torch.all(y >= 0.5 * amplitude)


def test_task_averaged_values_are_the_mean_over_tasks_and_the_blocks_nest():
    learner = make_learner({"name": "alfa", "generator_init": "official"}, steps=3)
    _randomise_generator(learner)
    batch = TaskBatch(*(t.to(F64) for t in validation_tasks(load_config(None, []), 8)[0]))
    adaptive = record(learner, batch)
    assert adaptive.alpha.shape == (3, 8, 4) and len(adaptive.states) == 3
    assert adaptive.alpha.std(1).max() > 1e-3  # the generated values differ across tasks
    with task_averaged(learner):
        averaged = record(learner, batch)  # record nests inside task_averaged
        assert "hyperparameters" in vars(learner.rule)
    assert "hyperparameters" not in vars(learner.rule)  # both restored
    assert torch.allclose(averaged.alpha, averaged.alpha[:, :1].expand_as(averaged.alpha))
    assert not torch.allclose(averaged.mse, adaptive.mse)
    # step 0 sees the same state either way, so its average is the adaptive values' average
    torch.testing.assert_close(averaged.alpha[0, 0], adaptive.alpha[0].mean(0))


def test_knock_out_changes_nothing_for_a_task_independent_rule():
    learner = make_learner({"name": "learned_fixed"}, steps=2)
    batch, amplitude = validation_tasks(load_config(None, []), 20)
    batch = TaskBatch(*(t.to(F64) for t in batch))
    result = diagnose(learner, batch, amplitude)
    assert result["adaptive_minus_averaged"] == pytest.approx(0.0, abs=1e-12)
    assert result["alpha_spread_over_tasks"] == 0.0
    assert "r2_amplitude_from_state_step0" not in result  # no learning state to read


def test_cv_r2_finds_a_linear_relation_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g, dtype=F64)
    assert cv_r2(x, 2 * x[:, 0] - x[:, 2] + 0.5) == pytest.approx(1.0, abs=1e-4)
    assert cv_r2(x, torch.randn(200, generator=g, dtype=F64)) < 0.05
    noisy = x[:, 1] + 0.5 * torch.randn(200, generator=g, dtype=F64)
    assert 0.6 < cv_r2(x, noisy) < 0.9  # explained variance 1 / 1.25 = 0.8


def _row(net, method, seed, mse, iteration=10):
    return {
        "net": net,
        "shots": 5,
        "method": method,
        "seed": seed,
        "mse": mse,
        "ci95": 0.1,
        "iterations": 10,
        "checkpoint_iteration": iteration,
        "diverged": None,
    }


def test_recommendation_follows_validation_not_test():
    rows = []
    for net in ("40x2", "80x3"):
        for method, val, div in (
            ("alfa_maml", 0.5, 0),
            ("alfa_maml_bounded", 0.4, 0),
            ("alfa_maml_log_sign", 0.3, 1),
        ):
            rows.append(
                {
                    "net": net,
                    "method": method,
                    "val_mean": val,
                    "seeds_run": 3,
                    "seeds_without_score": div,
                }
            )
    # lower validation and no more divergences on every network: recommended; log_sign has
    # the lowest validation MSE but diverged more often
    assert recommended(rows) == ["alfa_maml_bounded"]
    rows[4]["val_mean"] = 0.6  # 80x3 bounded now worse than ALFA+MAML on validation
    assert recommended(rows) == []


def test_report_on_a_trained_cell(tmp_path):
    config = load_config(
        None,
        [
            "rule.name=alfa",
            "meta.steps=2",
            "meta.batch_size=4",
            "model.hidden=[8]",
            "train.iterations=10",
            "train.val_every=5",
            "train.val_tasks=8",
            "train.checkpoint_every=5",
            "train.threads=1",
            "seed=0",
            "name=40x2-k5-alfa_maml-s0",
        ],
    )
    results = tmp_path / "results"
    cell = results / "table8" / "40x2-k5-alfa_maml-s0"
    train(config, tmp_path / "run", progress=False)
    (cell / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "metrics.jsonl"):
        shutil.copyfile(tmp_path / "run" / name, cell / name)
    shutil.copyfile(tmp_path / "run" / "checkpoints" / "best.pt", cell / "checkpoints" / "best.pt")
    best = torch.load(cell / "checkpoints" / "best.pt", weights_only=False)["iteration"]
    doc = {"rows": [_row("40x2", "alfa_maml", 0, 1.0, best)], "paired": [], "source": {}}
    (results / "table8.json").write_text(json.dumps(doc))
    report = write(results, tasks=12)
    (sel,) = report["selection"]
    logged = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
    val = [x["mse"] for x in logged if x.get("split") == "val" and x["iteration"] == best]
    assert sel["val_mean"] == pytest.approx(val[0])
    (diag,) = report["diagnostics"]
    assert diag["tasks"] == 12 and diag["iteration"] == best
    assert (results / "adaptivity.png").stat().st_size > 1000
    assert "| 40x2 | alfa_maml | 0 |" in (results / "adaptivity.md").read_text()


def test_the_adaptivity_figure_is_a_grid_readable_at_page_width(tmp_path):
    """Eight methods (ALFA+MAML and the switches) in two rows of four, not one strip."""
    import numpy as np
    from PIL import Image

    from alfa.paper.adaptivity_report import draw_panels

    amplitude = np.linspace(0.1, 5.0, 50)
    curves = {f"net.{i}.weight": amplitude * (i + 1) for i in range(3)}
    panels = [(f"method{k}", amplitude, curves) for k in range(8)]
    out = draw_panels(panels, tmp_path / "adaptivity.png")
    width, height = Image.open(out).size
    assert width / height < 2.5, (width, height)
    assert width <= 1600
