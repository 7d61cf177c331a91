"""Meta-training on every class of a dataset (``data.train_classes: all``, no split file), a
warning whenever validation or test classes are also training classes, and a class-per-folder
dataset with ``train``/``test`` folders that can be evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alfa.cli.main import main
from alfa.config import load_config
from alfa.data.every_class import MergedClasses
from alfa.data.splits import class_identity, overlapping_classes
from alfa.errors import DataError
from alfa.tasks.episodic import EpisodicSource
from shared_paths import OMNIGLOT_CONFIGS, REAL_OMNIGLOT, real_omniglot_overrides
from test_rough_edges import error_line, run_cli


def _write_split_folders(root: Path, splits: dict[str, list[str]], per_class: int = 4) -> Path:
    """``root/<split>/<class>/<i>.png`` with a random 16x16 image per file."""
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


TRAIN = ["a", "b", "c", "d", "e"]
TEST = ["f", "g", "h"]


def _overrides(root: Path, *extra: str) -> list[str]:
    return [
        "data.name=folder",
        f"data.root={root}",
        "data.ways=3",
        "data.shots=1",
        "data.query=2",
        "data.image_size=16",
        "model.name=conv4",
        "model.filters=4",
        "meta.steps=1",
        "meta.batch_size=2",
        "train.iterations=2",
        "train.val_every=0",
        "train.checkpoint_every=2",
        "train.threads=1",
        "eval.batch=4",
        *extra,
    ]


def _overlap_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "also meta-training classes" in line]


def test_class_identity_ignores_only_the_rotation():
    assert class_identity("Greek/character01/rot090") == "Greek/character01"
    assert class_identity("Greek/character01") == "Greek/character01"
    assert class_identity("n01532829") == "n01532829"
    trained = ["Greek/character01/rot000", "Latin/character02"]
    others = ["Greek/character01/rot180", "Latin/character02/rot000", "Latin/character03"]
    assert overlapping_classes(trained, others) == others[:2]


def test_a_folder_dataset_with_a_test_folder_trains_and_evaluates(tmp_path, capsys):
    root = _write_split_folders(tmp_path / "data", {"train": TRAIN, "test": TEST})
    run = tmp_path / "run"
    assert main(["train", *_overrides(root), "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    code, out, err = run_cli(capsys, "eval", str(run), "--tasks", "4", "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["tasks"] == 4
    assert not _overlap_warnings(err)  # train/ and test/ hold different classes


def test_training_on_every_class_of_a_folder_dataset(tmp_path, capsys):
    root = _write_split_folders(tmp_path / "data", {"train": TRAIN, "test": TEST})
    config = load_config(None, _overrides(root, "data.train_classes=all"))
    source = EpisodicSource(config)
    assert sorted(source.train.class_names) == sorted(TRAIN + TEST)
    assert source.train.num_images == 4 * 8
    # an image of a test class comes back unchanged through the merged view
    first_test = source.train.class_names.index("f")
    expected = np.asarray(Image.open(root / "test" / "f" / "0.png"))
    assert np.array_equal(source.train.get(first_test, [0])[0].permute(1, 2, 0).numpy(), expected)

    run = tmp_path / "run"
    argv = ["train", *_overrides(root, "data.train_classes=all"), "--run-dir", str(run)]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "eval", str(run), "--tasks", "4")
    assert code == 0, err
    lines = _overlap_warnings(err)
    assert len(lines) == 1 and "3 of the 3 test classes" in lines[0], err


def test_a_flat_folder_dataset_trains_on_its_classes_with_either_setting(tmp_path):
    root = _write_split_folders(tmp_path, {"data": TRAIN}) / "data"
    for setting in ("split", "all"):
        config = load_config(None, _overrides(root, f"data.train_classes={setting}"))
        source = EpisodicSource(config)
        assert source.train.class_names == TRAIN


def test_a_class_in_two_split_folders_is_refused(tmp_path):
    root = _write_split_folders(tmp_path / "data", {"train": TRAIN, "test": ["a", "f"]})
    with pytest.raises(DataError, match="class 'a' is in both"):
        EpisodicSource(load_config(None, _overrides(root, "data.train_classes=all")))
    with pytest.raises(DataError, match="class 'a' is in both"):
        MergedClasses([EpisodicSource(load_config(None, _overrides(root))).train] * 2)


def test_every_class_with_a_split_file_is_refused(tmp_path, capsys):
    code, _, err = run_cli(
        capsys,
        "train",
        *_overrides(tmp_path, "data.train_classes=all", f"data.split_file={tmp_path / 'x.txt'}"),
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert code == 2
    error_line(err, "data.train_classes", "data.split_file")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_every_omniglot_class_and_the_overlap_warning(capsys):
    overrides = [o for o in real_omniglot_overrides() if not o.startswith("data.split_file=")]
    overrides.append("data.split_file=")  # the shipped config lists its training classes
    path = OMNIGLOT_CONFIGS / "alfa_maml_5way_1shot.yaml"
    config = load_config(path, [*overrides, "data.train_classes=all", "train.val_every=0"])
    source = EpisodicSource(config)
    # the union of the two minimal zips: 8 alphabets, 242 characters (shared data README)
    assert source.train.num_classes == 242 and source.train.num_images == 4840
    assert {name.split("/")[0] for name in source.train.class_names} >= {"Greek", "Tagalog"}
    capsys.readouterr()
    next(iter(source.fixed("test", 1, 0, 1)))  # the test classes (Early_Aramaic, Tagalog)
    lines = _overlap_warnings(capsys.readouterr().err)
    assert len(lines) == 1 and "156 of the 156 test classes" in lines[0]


@pytest.mark.slow
def test_the_shipped_split_gives_no_overlap_warning(capsys):
    path = OMNIGLOT_CONFIGS / "alfa_maml_5way_1shot.yaml"
    config = load_config(path, [*real_omniglot_overrides(), "train.val_every=0"])
    source = EpisodicSource(config)
    assert source.train.num_classes == 812
    next(iter(source.fixed("test", 1, 0, 1)))
    assert not _overlap_warnings(capsys.readouterr().err)
    assert REAL_OMNIGLOT.is_dir()


# --- alfa eval with overrides of the test data --------------------------------------------------


def test_eval_takes_the_test_classes_from_an_override(tmp_path, capsys):
    root = _write_split_folders(tmp_path, {"data": TRAIN + TEST}) / "data"
    (tmp_path / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(TEST) + "\n")
    run = tmp_path / "run"
    argv = ["train", *_overrides(root, f"data.split_file={tmp_path / 'train.txt'}")]
    assert main([*argv, "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "eval", str(run), "--tasks", "4")
    assert code == 2
    error_line(err, "no test classes", "data.test_split_file")

    test_list = f"data.test_split_file={tmp_path / 'test.txt'}"
    code, out, err = run_cli(capsys, "eval", str(run), test_list, "eval.tasks=3", "--json")
    assert code == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["tasks"] == 3 and result["metric"] == "accuracy"
    assert not _overlap_warnings(err)
    # the flags may come before the overrides, too
    code, out, err = run_cli(capsys, "eval", str(run), "--tasks", "2", test_list, "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["tasks"] == 2, err
    assert "test_split_file: ''" in (run / "config.yaml").read_text()  # the run is unchanged


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("seed=3", ["'seed'", "cannot change for 'alfa eval'"]),
        ("data.ways=4", ["'data.ways'", "cannot change"]),
        ("data.shots=0", ["'data.shots'", "at least 1"]),
        ("eval.tasks=abc", ["'eval.tasks'", "integer"]),
        ("data.test_rooot=x", ["data.test_rooot", "did you mean"]),
    ],
)
def test_eval_refuses_overrides_it_cannot_take(tmp_path, capsys, override, words):
    root = _write_split_folders(tmp_path / "data", {"train": TRAIN, "test": TEST})
    run = tmp_path / "run"
    assert main(["train", *_overrides(root), "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    code, out, err = run_cli(capsys, "eval", str(run), override)
    assert code == 2 and not out
    error_line(err, *words)
