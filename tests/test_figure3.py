"""Figure 3 of the paper: ``alfa plot`` draws alpha and beta per inner step and adapted tensor
as one readable grid for any backbone and writes the plotted values as CSV beside the PNG."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alfa.cli.main import main
from alfa.runs.plots import CSV_COLUMNS, draw_hyperparameters, hyperparameter_table
from alfa.runs.reopen import load_run

PNG = b"\x89PNG\r\n\x1a\n"


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _check_run(run: Path, tasks: int) -> list[dict[str, str]]:
    assert main(["plot", str(run), "--tasks", str(tasks)]) == 0
    png, table = run / "plots" / "hyperparameters.png", run / "plots" / "hyperparameters.csv"
    assert png.read_bytes().startswith(PNG) and png.stat().st_size > 5000
    columns, rows = _read_csv(table)
    assert (
        columns
        == CSV_COLUMNS
        == [
            "step",
            "layer",
            "alpha_mean",
            "alpha_std",
            "beta_mean",
            "beta_std",
        ]
    )
    config, learner, _, _ = load_run(run)
    names = list(learner.rule.names)
    steps = config.meta.steps
    assert [(int(r["step"]), r["layer"]) for r in rows] == [
        (j, name) for j in range(steps) for name in names
    ]
    for row in rows:
        values = [float(row[c]) for c in CSV_COLUMNS[2:]]
        assert all(np.isfinite(values))
        assert float(row["alpha_std"]) >= 0 and float(row["beta_std"]) >= 0
    return rows


def test_mlp_run_writes_figure3_png_and_csv(tmp_path):
    run = tmp_path / "run"
    overrides = [
        "rule.name=alfa",
        "meta.steps=3",
        "meta.batch_size=2",
        "model.hidden=[8,8]",
        "train.iterations=4",
        "train.log_every=2",
        "train.val_every=0",
        "train.checkpoint_every=2",
        "train.threads=1",
    ]
    assert main(["train", *overrides, "--run-dir", str(run), "--no-progress"]) == 0
    rows = _check_run(run, tasks=5)
    assert len(rows) == 3 * 6  # 3 steps x 6 tensors of a 2-hidden-layer MLP
    assert rows[0]["layer"] == "net.0.weight"


def _folder_dataset(root: Path, classes: int = 6, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    (root.parent / "split.txt").write_text("".join(f"c{c}\n" for c in range(classes)))
    return root


def test_conv4_run_writes_figure3_png_and_csv(tmp_path):
    data = _folder_dataset(tmp_path / "data")
    split = tmp_path / "split.txt"
    run = tmp_path / "run"
    overrides = [
        "data.name=folder",
        f"data.root={data}",
        f"data.split_file={split}",
        f"data.test_split_file={split}",
        "data.ways=3",
        "data.shots=1",
        "data.query=1",
        "data.image_size=16",
        "model.name=conv4",
        "model.filters=4",
        "rule.name=alfa",
        "meta.steps=2",
        "meta.batch_size=2",
        "train.iterations=2",
        "train.log_every=1",
        "train.val_every=0",
        "train.checkpoint_every=2",
        "train.threads=1",
        "eval.batch=4",
    ]
    assert main(["train", *overrides, "--run-dir", str(run), "--no-progress"]) == 0
    rows = _check_run(run, tasks=4)
    assert len(rows) == 2 * 10  # 2 steps x 10 tensors (4 conv blocks and the classifier)
    assert {r["layer"] for r in rows} >= {"blocks.0.conv.weight", "classifier.bias"}


def test_table_is_mean_and_std_over_tasks():
    alpha = torch.tensor([[[1.0, 2.0], [3.0, 2.0]]])  # [steps=1, tasks=2, tensors=2]
    beta = torch.tensor([[[0.0, -1.0], [0.0, 1.0]]])
    rows = hyperparameter_table(alpha, beta, ["w", "b"])
    assert rows == [
        {
            "step": 0,
            "layer": "w",
            "alpha_mean": 2.0,
            "alpha_std": 1.0,
            "beta_mean": 0.0,
            "beta_std": 0.0,
        },
        {
            "step": 0,
            "layer": "b",
            "alpha_mean": 2.0,
            "alpha_std": 0.0,
            "beta_mean": 0.0,
            "beta_std": 1.0,
        },
    ]


@pytest.mark.parametrize("tensors", [6, 10, 18])  # MLP, 4-CONV, ResNet12
def test_grid_is_two_panels_whatever_the_backbone(tmp_path, tensors, monkeypatch):
    import matplotlib.pyplot as plt

    shapes = []
    real = plt.subplots
    monkeypatch.setattr(
        plt, "subplots", lambda *a, **k: shapes.append((a, k)) or real(*a, **k), raising=True
    )
    torch.manual_seed(0)
    names = [f"layer{k}.weight" for k in range(tensors)]
    rows = hyperparameter_table(torch.rand(5, 4, tensors), torch.rand(5, 4, tensors), names)
    out = draw_hyperparameters(rows, tmp_path / "h.png")
    assert out.read_bytes().startswith(PNG)
    ((args, kwargs),) = shapes
    assert args[:2] == (2, 1)  # alpha above beta, not one panel per tensor
    width, height = kwargs["figsize"]
    assert width <= 14 and height <= 8  # a 20-panel single row was 26 inches wide
    with Image.open(out) as image:
        assert image.size[0] / image.size[1] < 2.5
