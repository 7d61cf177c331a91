"""``alfa adapt``: no training data needed, --checkpoint, --steps 0, support-set batch norm by
default, and class folders named like splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from alfa.cli.main import main
from alfa.runs.export import read_export
from alfa.runs.preprocessing import preprocessing_for
from test_classification import _tiny, _write_folder_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A tiny ALFA+MAML 3-way run whose dataset is then moved away, its export, and a folder of
    images (copies of dataset images) for support and query sets."""
    base = tmp_path_factory.mktemp("adapt")
    torch.manual_seed(0)
    data = _write_folder_dataset(base / "data")
    run = base / "run"
    args = ["train", *_tiny(data, "rule.name=alfa"), "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0
    exported = base / "model.safetensors"
    assert main(["export", str(run), "--to", str(exported)]) == 0
    images = base / "images"
    shutil.move(data, images)  # the run's data.root no longer exists
    return run, exported, images


def _support(root: Path, images: Path, names=("cat", "dog", "owl")) -> Path:
    for name, c in zip(names, (5, 6, 7), strict=True):
        (root / name).mkdir(parents=True)
        shutil.copy(images / f"class{c}" / "0.png", root / name / "a.png")
    return root


def _queries(images: Path) -> list[str]:
    return [str(images / f"class{c}" / f"{i}.png") for c in (5, 6, 7) for i in (1, 2)]


def _adapt(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["adapt", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _probs(predictions: list[dict]) -> torch.Tensor:
    return torch.tensor([list(p["probabilities"].values()) for p in predictions])


def test_adapt_needs_no_training_data(trained, tmp_path, capsys, monkeypatch):
    run, exported, images = trained
    support = _support(tmp_path / "support", images)
    import alfa.tasks.source

    def refuse(config):
        raise AssertionError("alfa adapt built the training task source")

    monkeypatch.setattr(alfa.tasks.source, "build_source", refuse)
    from_run = _adapt(capsys, str(run), str(support), *_queries(images))
    from_export = _adapt(capsys, str(exported), str(support), *_queries(images))
    assert from_run == from_export  # same weights, same config: the same probabilities
    assert [p["path"] for p in from_run] == _queries(images)
    for p in from_run:
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-5


def test_steps_zero_predicts_with_the_initialisation(trained, tmp_path, capsys):
    _, exported, images = trained
    support = _support(tmp_path / "support", images)
    queries = _queries(images)
    unadapted = _probs(_adapt(capsys, str(exported), str(support), *queries, "--steps", "0"))
    # Independently: the base learner module with its own (meta-learned initial) parameters,
    # query batch normalised with the support statistics.
    model = read_export(exported, norm="support")
    prep = preprocessing_for(model.config)
    support_x = prep.load(sorted(support.rglob("*.png")))
    with torch.no_grad():
        logits = model.learner.model(prep.load([Path(q) for q in queries]), reference=support_x)
    torch.testing.assert_close(unadapted, logits.softmax(-1), rtol=1e-5, atol=1e-6)
    adapted = _probs(_adapt(capsys, str(exported), str(support), *queries))
    assert not torch.allclose(adapted, unadapted, atol=1e-4)  # two inner steps change something
    assert main(["adapt", str(exported), str(support), *queries, "--steps", "-1"]) == 2


def test_default_prediction_does_not_depend_on_other_queries(trained, tmp_path, capsys):
    run, _, images = trained
    support = _support(tmp_path / "support", images)
    queries = _queries(images)
    together = _probs(_adapt(capsys, str(run), str(support), *queries))
    alone = torch.cat([_probs(_adapt(capsys, str(run), str(support), q)) for q in queries])
    torch.testing.assert_close(alone, together, rtol=1e-4, atol=1e-5)
    # transductive batch norm: the query batch's statistics change with its content
    together_t = _probs(_adapt(capsys, str(run), str(support), *queries, "--transductive"))
    pair_t = _probs(_adapt(capsys, str(run), str(support), *queries[:2], "--transductive"))
    assert not torch.allclose(pair_t, together_t[:2], atol=1e-3)


def test_checkpoint_option(trained, tmp_path, capsys):
    run, _, images = trained
    support = _support(tmp_path / "support", images)
    queries = _queries(images)
    early = tmp_path / "early.safetensors"
    assert main(["export", str(run), "--checkpoint", "step-0000002.pt", "--to", str(early)]) == 0
    by_name = _adapt(capsys, str(run), str(support), *queries, "--checkpoint", "step-0000002.pt")
    by_path = _adapt(
        capsys,
        str(run),
        str(support),
        *queries,
        "--checkpoint",
        str(run / "checkpoints" / "step-0000002.pt"),
    )
    assert by_name == by_path == _adapt(capsys, str(early), str(support), *queries)
    last = _adapt(capsys, str(run), str(support), *queries, "--checkpoint", "last")
    assert _probs(last).tolist() != _probs(by_name).tolist()  # another checkpoint, other weights
    assert main(["adapt", str(run), str(support), *queries, "--checkpoint", "nope.pt"]) == 2
    err = capsys.readouterr().err
    assert "nope.pt" in err and "Traceback" not in err


@pytest.mark.parametrize("names", [("train", "val", "test"), ("test", "b", "c")])
def test_support_classes_named_like_splits(trained, tmp_path, capsys, names):
    run, _, images = trained
    support = _support(tmp_path / "support", images, names)
    predictions = _adapt(capsys, str(run), str(support), *_queries(images))
    assert sorted(predictions[0]["probabilities"]) == sorted(names)


def test_adapt_usage_errors(trained, tmp_path, capsys):
    run, exported, images = trained
    support = _support(tmp_path / "support", images)
    capsys.readouterr()
    assert main(["adapt", str(run), str(support)]) == 2  # no query
    assert "QUERY" in capsys.readouterr().err
    assert main(["adapt", str(exported), str(support), *_queries(images), "--checkpoint", "last"])
    assert "export file" in capsys.readouterr().err
    (support / "fox").mkdir()
    shutil.copy(images / "class0" / "0.png", support / "fox" / "a.png")
    assert main(["adapt", str(run), str(support), *_queries(images)]) == 2
    assert "trained for 3-way" in capsys.readouterr().err
