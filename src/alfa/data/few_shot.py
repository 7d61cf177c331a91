"""Your own images as few-shot episodes: a training stream and fixed seeded evaluation tasks.

:class:`FewShotEpisodes` draws N-way K-shot episodes exactly as ``alfa train`` and ``alfa eval``
do for a dataset on disk (:class:`~alfa.tasks.episodic.EpisodicSource`):

* training meta-batch ``b`` depends only on ``(seed, b)``
  (:class:`~alfa.data.prefetch.PrefetchingLoader`), whatever the number of worker processes;
* the validation and test tasks are :func:`~alfa.data.episodes.fixed_episodes` seeded with
  ``seed`` (test) and ``seed + 1`` (validation), where ``seed`` is the evaluation seed
  (``eval.seed``, 1234 by default), so :func:`alfa.runs.evaluate.evaluate` scores a learner on the
  same 600 test tasks as ``alfa eval`` on the same classes.

The images come from a class-per-folder tree (:meth:`FewShotEpisodes.from_folder`), any
``torch.utils.data.Dataset`` of ``(image, label)`` pairs (:meth:`FewShotEpisodes.from_dataset`,
via :func:`~alfa.data.torch_dataset.from_torch_dataset`) or an
:class:`~alfa.data.dataset.ImageClassDataset` of any supported format.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Sequence
from typing import Any

from alfa.data.augment import AffineJitter
from alfa.data.dataset import ImageClassDataset
from alfa.data.episodes import FixedEpisodes, fixed_episodes
from alfa.data.folder import SPLIT_FOLDERS, load_folder
from alfa.data.prefetch import PrefetchingLoader
from alfa.data.torch_dataset import from_torch_dataset
from alfa.errors import DataError
from alfa.typing import TaskBatch

__all__ = ["FewShotEpisodes"]

_FOLDER_OPTIONS = ("resample", "crop_scale", "invert", "in_memory")
"""Image options of :func:`~alfa.data.folder.load_folder` that ``from_folder`` passes on."""


class FewShotEpisodes:
    """N-way K-shot episodes of a training split and optional validation and test splits.

    It is a task source (:class:`~alfa.tasks.source.TaskSource`):
    :func:`alfa.runs.evaluate.evaluate` takes it as it is.

    Args:
        train: the training classes.
        val: the validation classes (disjoint from ``train``), if any.
        test: the test classes (disjoint from ``train``), if any.
        ways: N, the classes of every task.
        shots: K, the support images per class of every task.
        query: the query images per class of every training task.
        test_query: query images per class of the validation and test tasks (default:
            ``query``).
        meta_batch: tasks per training meta-batch (:meth:`sample`, iteration).
        seed: seed of the training stream (``seed`` of a config).
        normalise: ``auto`` (ImageNet statistics for RGB, none for grey), ``imagenet`` or
            ``none``.
        jitter: a random affine map for every training image (:mod:`alfa.data.augment`, as
            ``data.jitter_*`` of a config); validation and test images are never jittered.

    Raises:
        DataError: a split with fewer than ``ways`` classes or a class with fewer than
            ``shots + query`` images, and other impossible counts.
    """

    task = "classification"
    metric = "accuracy"

    def __init__(
        self,
        train: ImageClassDataset,
        *,
        val: ImageClassDataset | None = None,
        test: ImageClassDataset | None = None,
        ways: int = 5,
        shots: int = 1,
        query: int = 15,
        test_query: int | None = None,
        meta_batch: int = 4,
        seed: int = 0,
        normalise: str = "auto",
        jitter: AffineJitter | None = None,
    ) -> None:
        self.ways, self.shots, self.query = ways, shots, query
        self.test_query = query if test_query is None else test_query
        self.normalise = normalise
        self.splits: dict[str, ImageClassDataset | None] = {
            "train": train,
            "val": val,
            "test": test,
        }
        self.loader = PrefetchingLoader(
            train, ways, shots, query, meta_batch, seed=seed, normalise=normalise, jitter=jitter
        )
        for split in ("val", "test"):  # impossible counts fail now, not after training
            data = self.splits[split]
            if data is not None:
                fixed_episodes(data, ways, shots, self.test_query, 1, 0, normalise=normalise)
        self._stream: Iterator[TaskBatch] | None = None

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike[str],
        *,
        image_size: int = 84,
        channels: int = 3,
        **options: Any,
    ) -> FewShotEpisodes:
        """Episodes of ``path/<class>/*.png`` (or ``path/{train,val,test}/<class>/...``).

        Without split folders, every class is a training class. ``options`` are the image
        options of :func:`~alfa.data.folder.load_folder` (``invert=True`` for dark-on-light
        drawings, prepared as ``alfa train`` prepares Omniglot; ``resample``, ``crop_scale``,
        ``in_memory``) and those of the constructor.

        Raises:
            DataError: an option that is neither (named), or a problem of the folder.
        """
        image = {k: options.pop(k) for k in _FOLDER_OPTIONS if k in options}
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "train"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DataError(
                f"unknown option {unknown[0]!r} for FewShotEpisodes.from_folder; valid options: "
                + ", ".join(["image_size", "channels", *_FOLDER_OPTIONS, *sorted(known)])
            )
        found = [s for s in SPLIT_FOLDERS if os.path.isdir(os.path.join(path, s))]
        splits = {
            split: load_folder(path, split=split, image_size=image_size, channels=channels, **image)
            for split in found or ["train"]
        }
        if "train" not in splits:
            raise DataError(f"{path} has split folders {', '.join(found)} but no 'train'")
        return cls(splits["train"], val=splits.get("val"), test=splits.get("test"), **options)

    @classmethod
    def from_dataset(
        cls,
        train: Sequence[Any],
        *,
        val: Sequence[Any] | None = None,
        test: Sequence[Any] | None = None,
        **options: Any,
    ) -> FewShotEpisodes:
        """Episodes of ``torch.utils.data.Dataset`` splits of ``(image, label)`` pairs, read
        into memory by :func:`~alfa.data.torch_dataset.from_torch_dataset`. ``options`` are
        those of the constructor."""

        def load(data: Sequence[Any] | None, name: str) -> ImageClassDataset | None:
            return None if data is None else from_torch_dataset(data, source=f"the {name} split")

        return cls(load(train, "train"), val=load(val, "val"), test=load(test, "test"), **options)  # type: ignore[arg-type]

    @property
    def in_channels(self) -> int:
        """Channels of the images (1 grey, 3 RGB): the first layer's input channels."""
        train = self.splits["train"]
        assert train is not None
        return train.channels

    def __iter__(self) -> Iterator[TaskBatch]:
        """The endless training stream of meta-batches, from the current position on."""
        return iter(self.loader)

    def sample(self, tasks: int) -> TaskBatch:
        """The next training meta-batch (``tasks`` must be the ``meta_batch`` given)."""
        if tasks != self.loader.batches.meta_batch:
            raise DataError(f"the stream yields meta-batches of {self.loader.batches.meta_batch}")
        if self._stream is None:
            self._stream = iter(self.loader)
        return next(self._stream)

    def fixed(self, split: str, tasks: int, seed: int, batch: int) -> Iterator[TaskBatch]:
        """The fixed tasks of ``split`` (``"test"`` or ``"val"``) in batches, as ``alfa eval``
        draws them: seeded with ``seed`` for the test and ``seed + 1`` for validation.

        Raises:
            DataError: no such split was given.
        """
        return iter(self.fixed_chunks(split, tasks, seed, batch))

    def fixed_chunks(self, split: str, tasks: int, seed: int, batch: int) -> FixedEpisodes:
        """The tasks of :meth:`fixed` as a sequence of batches, each generated when it is read
        (what :func:`alfa.runs.evaluate.evaluate` shares among the ranks of a distributed job).

        Raises:
            DataError: no such split was given.
        """
        offsets = {"test": 0, "val": 1}
        if split not in offsets:
            raise DataError(f"split must be 'test' or 'val', got {split!r}")
        data = self.splits[split]
        if data is None:
            raise DataError(f"no {split} classes were given (pass {split}= or a {split} folder)")
        return fixed_episodes(
            data,
            self.ways,
            self.shots,
            self.test_query,
            tasks,
            seed + offsets[split],
            batch_size=batch,
            normalise=self.normalise,
        )

    def state_dict(self) -> dict[str, Any]:
        """The stream's seed and position."""
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream from a :meth:`state_dict`."""
        self.loader.load_state_dict(state)
        self._stream = None
