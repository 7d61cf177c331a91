"""Your own images as episodes: a folder or a torch Dataset gives the training stream and the
fixed seeded test tasks that ``alfa train``/``alfa eval`` draw from the same classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alfa import FewShotEpisodes, MetaLearner
from alfa.config import load_config
from alfa.data import from_torch_dataset
from alfa.errors import DataError
from alfa.runs.evaluate import evaluate
from alfa.tasks.source import build_source


def _write(root: Path, split: str, classes: range, per_class: int = 4) -> None:
    rng = np.random.default_rng(len(classes) + classes.start)
    for c in classes:
        folder = root / split / f"class{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    _write(root, "train", range(0, 6))
    _write(root, "test", range(6, 10))
    (tmp_path / "test.txt").write_text("".join(f"class{c:02d}\n" for c in range(6, 10)))
    return root


def _same(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_a_folder_gives_the_training_stream_and_test_tasks_of_the_command_line(folder):
    config = load_config(
        None,
        [
            "data.name=folder",
            f"data.root={folder}",
            f"data.test_split_file={folder.parent / 'test.txt'}",
            "data.ways=3",
            "data.shots=1",
            "data.query=2",
            "data.image_size=16",
            "model.name=conv4",
            "meta.batch_size=2",
            "train.val_every=0",
            "seed=7",
        ],
    )
    source = build_source(config)  # what `alfa train` and `alfa eval` use
    episodes = FewShotEpisodes.from_folder(
        folder, image_size=16, ways=3, shots=1, query=2, meta_batch=2, seed=7
    )
    assert episodes.in_channels == 3
    for _ in range(2):
        _same(episodes.sample(2), source.sample(2))
    ours = list(episodes.fixed("test", 5, config.eval.seed, 2))
    theirs = list(source.fixed("test", 5, config.eval.seed, 2))
    assert [b.num_tasks for b in ours] == [2, 2, 1]
    for a, b in zip(ours, theirs, strict=True):
        _same(a, b)

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(392, 3)
    )
    learner = MetaLearner(model, rule="maml", steps=1, task="classification")
    scores = [evaluate(learner, s, tasks=5, seed=1234, batch=2) for s in (episodes, source)]
    assert scores[0]["mean"] == scores[1]["mean"] and scores[0]["tasks"] == 5


class _PairDataset(torch.utils.data.Dataset):
    """A torch Dataset of (image, label) as torchvision's ImageFolder + ToTensor gives."""

    def __init__(self, root: Path) -> None:
        self.items = [
            (path, label)
            for label, folder in enumerate(sorted(root.iterdir()))
            for path in sorted(folder.iterdir(), key=lambda p: int(p.stem))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, label = self.items[index]
        array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1), label


def test_a_torch_dataset_gives_the_same_episodes_as_the_folder_it_reads(folder):
    options = {"ways": 3, "shots": 1, "query": 2, "meta_batch": 2, "seed": 3}
    from_files = FewShotEpisodes.from_folder(folder, image_size=16, **options)
    from_torch = FewShotEpisodes.from_dataset(
        _PairDataset(folder / "train"), test=_PairDataset(folder / "test"), **options
    )
    _same(from_torch.sample(2), from_files.sample(2))
    for a, b in zip(
        from_torch.fixed("test", 3, 0, 3), from_files.fixed("test", 3, 0, 3), strict=True
    ):
        _same(a, b)


def test_from_torch_dataset_reads_pil_uint8_and_float_images_and_sorts_the_labels():
    grey = Image.fromarray(np.full((4, 4), 200, dtype=np.uint8))
    items = [
        (grey, "b"),
        (torch.full((1, 4, 4), 0.5), "a"),
        (np.full((4, 4), 7, dtype=np.uint8), "b"),
    ]
    data = from_torch_dataset(items)
    assert data.class_names == ["a", "b"] and data.image_shape == (1, 4, 4)
    assert data.images_per_class() == [1, 2]
    assert int(data.get(0, [0]).flatten()[0]) == 128  # 0.5 * 255 rounded
    assert data.get(1, [0, 1]).flatten(1)[:, 0].tolist() == [200, 7]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([torch.zeros(1, 4, 4)], "item 0 of list is a Tensor; expected an (image, label) pair"),
        (
            [(torch.zeros(1, 4, 4), 0), (torch.zeros(1, 5, 5), 1)],
            "item 1 of list has an image of shape (1, 5, 5), item 0 (1, 4, 4); every image needs",
        ),
        ([(torch.full((3, 4, 4), 2.0), 0)], "outside [0, 1]"),
        ([(torch.zeros(2, 4, 4), 0)], "expected [H, W] or [C, H, W] with C = 1 or 3"),
        ([(torch.zeros(1, 4, 4), 0.5)], "has a label of type float; expected an int or a string"),
    ],
)
def test_from_torch_dataset_names_the_bad_item(items, message):
    with pytest.raises(DataError) as info:
        from_torch_dataset(items)
    assert message in str(info.value)


def test_impossible_counts_and_missing_splits_are_refused_up_front(folder):
    with pytest.raises(DataError, match="ways=7 but"):
        FewShotEpisodes.from_folder(folder, image_size=16, ways=7)
    with pytest.raises(DataError, match="has 4 images, fewer than shots \\+ query"):
        FewShotEpisodes.from_folder(folder, image_size=16, ways=3, shots=2, query=3)
    episodes = FewShotEpisodes.from_folder(folder / "train", image_size=16, ways=3, query=2)
    with pytest.raises(DataError, match="no test classes were given"):
        next(episodes.fixed("test", 2, 0, 2))
