"""Meta-Dataset episodes from records on disk, fixed evaluation episodes, and the run command."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from alfa.data.metadataset import MetaDatasetSource
from alfa.paper.metadataset_run import main
from alfa.tasks.metadataset import build_episode, fixed_episodes
from metadataset_writer import write_source


def omniglot_like(root):
    write_source(root, [6] * 15, alphabets={"TRAIN": [5, 5], "VALID": [], "TEST": [5]}, size=8)
    return root


def test_fixed_episodes_are_reproducible_and_hold_the_described_images(tmp_path) -> None:
    source = MetaDatasetSource(omniglot_like(tmp_path / "omni"), image_size=8)
    episodes = fixed_episodes(source, "test", 20, seed=5)
    assert episodes == fixed_episodes(source, "test", 20, seed=5)
    assert episodes != fixed_episodes(source, "test", 20, seed=6)
    for episode in episodes[:5]:
        d = episode.description
        assert d.ways == 5 and set(d.classes) == set(range(10, 15))
        assert d.query == 3  # min(10, 6 // 2)
        batch = build_episode(source, episode)
        assert batch.support_x.shape == (1, sum(d.shots), 3, 8, 8)
        assert batch.query_x.shape == (1, 5 * 3, 3, 8, 8)
        assert batch.support_x.min() >= -1 and batch.support_x.max() <= 1
        for label, (class_id, shots) in enumerate(zip(d.classes, d.shots, strict=True)):
            assert int((batch.support_y[0] == label).sum()) == shots
            assert int((batch.query_y[0] == label).sum()) == 3
            stored = source.images(class_id)  # decoded and scaled to [-1, 1]
            chosen = torch.cat(
                [
                    batch.support_x[0][batch.support_y[0] == label],
                    batch.query_x[0][batch.query_y[0] == label],
                ]
            )
            # every chosen image is one of the class's images, none twice
            match = (chosen.unsqueeze(1) - stored.unsqueeze(0)).abs().flatten(2).amax(2) < 1e-6
            assert match.any(1).all() and match.sum(0).max() <= 1


def _config(tmp_path, root) -> str:
    config = {
        "name": "tiny",
        "data": {
            "name": "metadataset",
            "root": str(root),
            "ways": 10,
            "query": 1,
            "image_size": 16,
        },
        "model": {"name": "conv4", "filters": 4},
        "rule": {"name": "alfa", "lr": 0.05},
        "meta": {"steps": 1, "first_order": True, "batch_size": 2, "head_init": "proto"},
        "train": {"iterations": 2, "log_every": 1, "threads": 1},
        "eval": {"tasks": 4},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_run_trains_and_evaluates(tmp_path, capsys) -> None:
    root = omniglot_like(tmp_path / "omni")
    assert main(["--config", _config(tmp_path, root), "--out", str(tmp_path / "run")]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["episodes"] == 4 and result["ways_min"] == result["ways_max"] == 5
    assert 0 <= result["accuracy"] <= 100
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2]
    assert len(result["episode_accuracies"]) == 4
    assert result["accuracy"] == pytest.approx(sum(result["episode_accuracies"]) / 4, abs=1e-3)
    # evaluating the saved model again gives the same numbers on the same fixed episodes
    args = ["--config", _config(tmp_path, root), "--out", str(tmp_path / "run"), "--eval-only"]
    assert main(args) == 0
    again = json.loads((tmp_path / "run" / "result.json").read_text())
    assert again["episode_accuracies"] == result["episode_accuracies"]
    assert again["train_seconds"] == result["train_seconds"]


def test_run_with_a_missing_class_file_is_one_line_exit_2(tmp_path, capsys) -> None:
    root = omniglot_like(tmp_path / "omni")
    (root / "12.tfrecords").unlink()
    code = main(["--config", _config(tmp_path, root), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "12.tfrecords: record file of class 12 is missing" in err


def test_alfa_train_points_to_the_metadataset_runner(tmp_path) -> None:
    from alfa.config import load_config
    from alfa.errors import ConfigError
    from alfa.tasks.source import build_source

    config = load_config(_config(tmp_path, tmp_path))
    with pytest.raises(ConfigError, match=r"alfa.paper.metadataset_run"):
        build_source(config)


def test_run_on_a_split_of_four_classes_names_the_spec_file(tmp_path, capsys) -> None:
    root = tmp_path / "omni"
    write_source(root, [6] * 14, alphabets={"TRAIN": [5, 5], "VALID": [], "TEST": [4]}, size=8)
    code = main(["--config", _config(tmp_path, root), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "dataset_spec.json: split TEST has 4 classes; an episode needs at least 5" in err
