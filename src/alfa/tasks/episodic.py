"""Few-shot image classification tasks for a run: N-way K-shot episodes from a dataset on disk.

The training stream is a :class:`~alfa.data.PrefetchingLoader`: meta-batch ``b`` depends only on
``(seed, b)``, so the stream is the same for any number of worker processes and resuming only
needs the position. Validation and test tasks are fixed seeded episodes (600 for the test).

When the run trains on a GPU, the stream is made for it: episodes are decoded by worker
processes (``data.workers: -1``, the default, picks :func:`default_workers`), the images travel
as page-locked ``uint8`` (a quarter of the bytes of float32) with an asynchronous copy, and they
are scaled and normalised on the GPU (the same correctly rounded operations as on the CPU: the
same numbers). On the CPU the batches are float32 from the start, as before.

Training images may be jittered (``data.jitter_*``: :mod:`alfa.data.augment`); validation and
test images never are.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from alfa.config import Config
from alfa.data import (
    FixedEpisodes,
    ImageClassDataset,
    PrefetchingLoader,
    detect_format,
    fixed_episodes,
)
from alfa.data import load_dataset as _load
from alfa.data.augment import AffineJitter
from alfa.data.episodes import to_float
from alfa.data.every_class import load_every_class
from alfa.data.formats import split_paths
from alfa.data.splits import ClassList, overlapping_classes
from alfa.errors import DataError
from alfa.typing import TaskBatch

__all__ = [
    "CLASS_LIST_KEYS",
    "EpisodicSource",
    "dataset_formats",
    "default_workers",
    "load_split",
]

AUTO_WORKERS = 4
"""Decoding processes of a GPU run with ``data.workers: -1`` (at most; one core stays free)."""


def default_workers(cuda: bool) -> int:
    """Worker processes for ``data.workers: -1``: on a GPU :data:`AUTO_WORKERS` (fewer on a machine
    with fewer cores), so decoding overlaps the GPU's work; on the CPU none, since the cores
    are the ones that train (a worker would take a core from the meta-iteration)."""
    if not cuda:
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(AUTO_WORKERS, cores - 1))


_FORMATS = {
    "omniglot": ("omniglot",),
    "mini_imagenet": (
        "mini_imagenet_csv",
        "mini_imagenet_folders",
        "mini_imagenet_pickle",
        "mini_imagenet_l2l",
    ),
    "tiered_imagenet": ("tiered_imagenet_png", "tiered_imagenet_npz"),
    "cub": ("cub_json", "cub_raw"),
    "folder": ("folder",),
}


def dataset_formats(name: str) -> tuple[str, ...]:
    """The on-disk formats that hold the dataset ``name`` (``data.name``)."""
    return _FORMATS.get(name, ())


def _format(name: str, root: str, fmt: str, key: str) -> str:
    fmt = fmt or detect_format(split_paths(root)[0])
    if fmt not in _FORMATS[name]:
        raise DataError(
            f"{key} '{root}' holds format '{fmt}', which is not a {name} format "
            f"({', '.join(_FORMATS[name])}); fix the dataset name or format"
        )
    return fmt


CLASS_LIST_KEYS = {"train": "split_file", "val": "val_split_file", "test": "test_split_file"}
"""The ``data.*`` key of each split's class-list file."""


def load_split(
    config: Config, split: str, class_lists: Mapping[str, Sequence[str]] | None = None
) -> ImageClassDataset | None:
    """The classes of ``split`` (train/val/test); None when the config defines no such split.

    With ``data.test_name``/``data.test_root`` (cross-domain, Table 2) the test classes come
    from that dataset's test split instead; ``data.test_root`` alone reads the test classes
    of the same dataset from another place.

    Args:
        class_lists: class names by split that replace the config's class-list files (a run
            keeps a copy of each: :mod:`alfa.runs.class_lists`).
    """
    d = config.data
    given = dict(class_lists or {})
    lists: dict[str, ClassList] = {
        "train": d.split_file,
        "val": d.val_split_file,
        "test": d.test_split_file,
    }
    lists = {k: given.get(k, v) for k, v in lists.items()}
    if split == "test" and (d.test_name or d.test_root):
        name = d.test_name or d.name
        root = d.test_root or d.root
        key = "data.test_root" if d.test_root else "data.root"
        fmt = _format(name, root, d.test_format or ("" if d.test_name else d.format), key)
        chosen = lists["test"]
        options = {"class_list": chosen} if chosen else {}
        split_name = "all" if fmt == "omniglot" and chosen else "test"
        if fmt == "omniglot" and not chosen:
            options["rotations"] = d.rotations
        return _load(root, fmt, split=split_name, image_size=d.image_size, **options)
    fmt = _format(d.name, d.root, d.format, "data.root")
    if split == "train" and d.train_classes == "all":
        extra = {"rotations": d.rotations} if fmt == "omniglot" else {}
        return load_every_class(d.root, fmt, image_size=d.image_size, **extra)
    options: dict[str, Any] = {}
    if lists[split]:
        options["class_list"] = lists[split]
    if fmt == "omniglot":
        if lists[split]:
            return _load(d.root, fmt, split="all", image_size=d.image_size, **options)
        if split == "val":
            return None
        options["rotations"] = d.rotations
    elif (
        fmt == "folder"
        and split != "train"
        and not lists[split]
        and not (split_paths(d.root)[0] / split).is_dir()  # no root/val or root/test folder
    ):
        return None
    return _load(d.root, fmt, split=split, image_size=d.image_size, **options)


def _warn_overlap(train: Sequence[str], other: ImageClassDataset | None, split: str) -> None:
    """Warn when classes of the validation or test split are also meta-training classes."""
    if other is None:
        return
    shared = overlapping_classes(train, other.class_names)
    if shared:
        name = "validation" if split == "val" else "test"
        print(
            f"alfa: warning: {len(shared)} of the {other.num_classes} {name} classes are also "
            f"meta-training classes (e.g. '{shared[0]}'): the {name} accuracy measures classes "
            "seen in training, not new ones",
            file=sys.stderr,
        )


class EpisodicSource:
    """Episodes of an image dataset as configured by ``config.data``.

    Args:
        splits: the splits to read: all of them (None: a training run), or only those named,
            e.g. ``("test",)`` to evaluate a trained model, which needs neither the training
            classes nor their class list.
        class_lists: class names by split that replace the config's class-list files.
    """

    task = "classification"
    metric = "accuracy"

    def __init__(
        self,
        config: Config,
        *,
        splits: Sequence[str] | None = None,
        class_lists: Mapping[str, Sequence[str]] | None = None,
        transfer: torch.device | str | None = "auto",
    ) -> None:
        """``transfer``: the device :meth:`sample` normalises the ``uint8`` images on (and
        returns the batch on); ``"auto"``: CUDA when the run trains there, else None (float32
        batches on the CPU)."""
        d = config.data
        self.ways, self.shots, self.query = d.ways, d.shots, d.query
        self.test_query = d.test_query or d.query
        self._config = config
        self._lists = dict(class_lists or {})
        self._only = None if splits is None else tuple(splits)
        self._splits: dict[str, ImageClassDataset | None] = {}
        self._stream: Iterator[TaskBatch] | None = None
        self.train: ImageClassDataset | None = None
        self.loader: PrefetchingLoader | None = None
        cuda = config.train.device != "cpu" and torch.cuda.is_available()
        if transfer == "auto":
            transfer = "cuda" if cuda else None
        self.transfer = torch.device(transfer) if transfer is not None else None
        if self._only is not None:
            unknown = [s for s in self._only if s not in ("val", "test")]
            if unknown or not self._only:
                raise ValueError(f"splits must be val and/or test; got {list(self._only)}")
            self.in_channels = self._split(self._only[0]).channels
            return
        self.train = load_split(config, "train", self._lists)
        assert self.train is not None
        self.in_channels = self.train.channels
        self._splits["train"] = self.train
        self.loader = PrefetchingLoader(
            self.train,
            d.ways,
            d.shots,
            d.query,
            config.meta.batch_size,
            seed=config.seed,
            num_workers=d.workers if d.workers >= 0 else default_workers(cuda),
            # page-locked batches for asynchronous host-to-GPU copies
            pin_memory=cuda,
            raw=self.transfer is not None,
            jitter=AffineJitter(d.jitter_degrees, d.jitter_shift, d.jitter_scale),
        )
        if config.train.val_every:
            self._split("val")  # fail before training when validation is impossible

    def _split(self, split: str) -> ImageClassDataset:
        if self._only is not None and split not in self._only:
            raise ValueError(f"this source reads only the {' and '.join(self._only)} split(s)")
        if split not in self._splits:
            self._splits[split] = load_split(self._config, split, self._lists)
            data = self._splits[split]
            if self.train is not None:
                _warn_overlap(self.train.class_names, data, split)
            elif "train" in self._lists:  # the training classes are known by name
                _warn_overlap(self._lists["train"], data, split)
            elif data is not None and self._trained_on_every_class(split):
                _warn_overlap(data.class_names, data, split)
        data = self._splits[split]
        if data is None:
            key = "data.val_split_file" if split == "val" else "data.test_split_file"
            raise DataError(
                f"the dataset defines no {split} classes: set {key} (a class-list file)"
                + (" or train.val_every=0" if split == "val" else "")
            )
        return data

    def _trained_on_every_class(self, split: str) -> bool:
        """Whether ``split``'s classes were all meta-training classes, known from the config
        alone (``data.train_classes: all`` trains on every class of the dataset, test ones
        included, unless the test classes come from another dataset)."""
        d = self._config.data
        return d.train_classes == "all" and not (split == "test" and d.test_name)

    def _training(self) -> PrefetchingLoader:
        if self.loader is None:
            raise ValueError("this source reads no training classes (it was built to evaluate)")
        return self.loader

    def sample(self, tasks: int) -> TaskBatch:
        loader = self._training()
        if tasks != loader.batches.meta_batch:
            raise ValueError(f"the stream yields meta-batches of {loader.batches.meta_batch}")
        if self._stream is None:
            self._stream = iter(loader)
        batch = next(self._stream)
        if self.transfer is None:
            return batch
        normalise = loader.spec.normalise
        sx, sy, qx, qy = (t.to(self.transfer, non_blocking=True) for t in batch)
        return TaskBatch(to_float(sx, normalise), sy, to_float(qx, normalise), qy)

    def share(self, start: int, stop: int) -> None:
        self._training().share(start, stop)
        self._stream = None  # the next batch is read with the share

    def fixed(self, split: str, tasks: int, seed: int, batch: int) -> Iterator[TaskBatch]:
        """The fixed seeded episodes of ``split`` (its classes are loaded now, so a missing
        split is an error before any progress bar starts)."""
        return iter(self.fixed_chunks(split, tasks, seed, batch))

    def fixed_chunks(self, split: str, tasks: int, seed: int, batch: int) -> FixedEpisodes:
        """The fixed tasks in chunks of ``batch``, each generated when it is read."""
        offset = {"test": 0, "val": 1}[split]
        return fixed_episodes(
            self._split(split),
            self.ways,
            self.shots,
            self.test_query,
            tasks,
            seed + offset,
            batch_size=batch,
        )

    def state_dict(self) -> dict[str, Any]:
        return self._training().state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._training().load_state_dict(state)
        self._stream = None
