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


def _records(val: bool, accuracy: bool, spike: bool = False) -> list[dict]:
    records = []
    for i in range(1, 11):
        row = {"split": "train", "iteration": 10 * i, "loss": 10.5 if spike and i == 3 else 1 / i}
        if accuracy:
            row["train_accuracy"] = 0.1 * i
        records.append(row)
        if val and i % 5 == 0:
            metric = "accuracy" if accuracy else "mse"
            records.append({"split": "val", "iteration": 10 * i, metric: 0.5, "ci95": 0.1})
    return records


def test_curves_use_a_log_axis_and_plot_the_training_accuracy_without_validation():
    import matplotlib.pyplot as plt

    from alfa.runs.plots import curves_figure

    fig = curves_figure(_records(val=False, accuracy=True, spike=True))
    loss, right = fig.axes
    assert loss.get_yscale() == "log"  # one spike of 10.5 does not flatten the curve
    assert right.axison and [line.get_label() for line in right.get_lines()] == [
        "training (meta-batch queries)"
    ]
    assert "no validation" in right.get_title()
    plt.close(fig)
    fig = curves_figure(_records(val=False, accuracy=False))  # regression, no validation
    right = fig.axes[1]
    assert not right.axison
    assert any("no validation in this run" in t.get_text() for t in right.texts)
    plt.close(fig)
    fig = curves_figure(_records(val=True, accuracy=True))
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert sorted(labels) == ["training (meta-batch queries)", "validation (95% CI)"]
    plt.close(fig)
