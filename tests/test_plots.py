"""`alfa plot` writes the learning curves and the generated-hyperparameter plot as PNG files."""

from __future__ import annotations

from alfa.cli.main import main
from alfa.config import load_config
from alfa.runs.train import train

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_run_writes_pngs(tmp_path, capsys):
    config = load_config(
        None,
        [
            "rule.name=alfa",
            "meta.steps=2",
            "meta.batch_size=4",
            "model.hidden=[8]",
            "train.iterations=20",
            "train.log_every=5",
            "train.val_every=10",
            "train.val_tasks=8",
            "train.checkpoint_every=10",
            "train.threads=1",
        ],
    )
    run = tmp_path / "run"
    train(config, run, progress=False)
    assert main(["plot", str(run), "--tasks", "6"]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == [
        "curves.png",
        "hyperparameters.png",
        "hyperparameters.csv",
    ]
    for name in ("curves.png", "hyperparameters.png"):
        data = (run / "plots" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
