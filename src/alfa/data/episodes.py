"""N-way K-shot episodes from an :class:`~alfa.data.dataset.ImageClassDataset`.

A task draws ``ways`` distinct classes in random order (the order is the class-to-label
permutation: the ``j``-th drawn class gets label ``j``), then for each class ``shots + query``
distinct images, the first ``shots`` for the support set and the rest for the query set (so the
two sets are disjoint). Rows are grouped by label: support labels are
``[0]*shots + [1]*shots + ...``, query labels likewise. All randomness comes from an explicit
:class:`torch.Generator`; the global RNG is never used.

Images become float32 in ``[0, 1]`` and are then normalised: ``imagenet`` subtracts the ImageNet
mean (0.485, 0.456, 0.406) and divides by the std (0.229, 0.224, 0.225) per channel (what ALFA
does for RGB data); ``none`` leaves ``[0, 1]``; ``auto`` (default) picks ``imagenet`` for
three-channel and ``none`` for one-channel (Omniglot) data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alfa.data.augment import JITTER_STREAM, AffineJitter
from alfa.data.dataset import ImageClassDataset
from alfa.errors import DataError
from alfa.typing import TaskBatch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EpisodeSampler",
    "EpisodeSpec",
    "FixedEpisodes",
    "derive_seed",
    "fixed_episodes",
    "jitter_stream_seed",
    "to_float",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALISATIONS = ("auto", "imagenet", "none")
_MASK64 = (1 << 64) - 1


def derive_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for item ``index`` of a stream seeded with ``seed``.

    SplitMix64 of both numbers, so neighbouring seeds and indices give unrelated streams
    (``seed + index`` would make stream ``s`` batch ``1`` equal stream ``s + 1`` batch ``0``).
    """

    def mix(z: int) -> int:
        z = (z + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    return mix(mix(int(seed) & _MASK64) ^ (int(index) & _MASK64)) >> 1


def jitter_stream_seed(batch_seed: int) -> int:
    """The seed of a meta-batch's jitter (:mod:`alfa.data.augment`), from the seed its tasks
    are drawn with."""
    return derive_seed(batch_seed, JITTER_STREAM)


def to_float(images: Tensor, normalise: str) -> Tensor:
    """``uint8 [..., C, H, W]`` -> float32 in ``[0, 1]``, then ``imagenet`` or ``none``, on the
    images' device (the same correctly rounded operations on a CPU and a GPU: the same numbers).
    """
    x = images.to(torch.float32).div_(255.0)
    if normalise == "imagenet":
        shape = (3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(shape)
        x = x.sub_(mean).div_(std)
    return x


def _positive(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class EpisodeSpec:
    """A validated task shape for one dataset (see :meth:`create`)."""

    ways: int
    shots: int
    query: int
    normalise: str

    @classmethod
    def create(
        cls, dataset: ImageClassDataset, ways: int, shots: int, query: int, normalise: str
    ) -> EpisodeSpec:
        """Check the shape against ``dataset``.

        Raises:
            DataError: A non-positive count, ``ways`` above the number of classes, a class
                with fewer than ``shots + query`` images, or an unknown normalisation.
        """
        _positive("ways", ways, 1)
        _positive("shots", shots, 1)
        _positive("query", query, 0)
        where = dataset.source or type(dataset).__name__
        if ways > dataset.num_classes:
            raise DataError(
                f"ways={ways} but {where} has only {dataset.num_classes} classes; "
                "lower ways or use more classes"
            )
        need = shots + query
        short = [
            (n, c)
            for n, c in zip(dataset.class_names, dataset.images_per_class(), strict=True)
            if c < need
        ]
        if short:
            name, count = short[0]
            raise DataError(
                f"class {name!r} of {where} has {count} images, fewer than "
                f"shots + query = {shots} + {query} = {need} ({len(short)} such "
                "classes); lower shots/query or remove those classes"
            )
        if normalise not in NORMALISATIONS:
            raise DataError(
                f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}"
            )
        if normalise == "auto":
            normalise = "imagenet" if dataset.channels == 3 else "none"
        if normalise == "imagenet" and dataset.channels != 3:
            raise DataError(
                f"normalise='imagenet' needs 3-channel images, {where} has "
                f"{dataset.channels}; use normalise='none'"
            )
        return cls(ways, shots, query, normalise)


def sample_tasks(
    dataset: ImageClassDataset,
    spec: EpisodeSpec,
    generator: torch.Generator,
    num_tasks: int,
    *,
    part: tuple[int, int] | None = None,
    raw: bool = False,
    jitter: AffineJitter | None = None,
    jitter_seed: int = 0,
) -> TaskBatch:
    """Draw ``num_tasks`` tasks with ``generator`` and stack them along a leading axis.

    With ``part = (start, stop)`` only those tasks are returned: every task is still drawn (so
    the generator advances alike), but only the kept ones read their images. The result equals
    the slice ``[start:stop]`` of the whole batch (one process's share of a meta-batch).

    ``raw=True`` leaves the images ``uint8`` (a quarter of the bytes to copy to a GPU); the
    caller applies :func:`to_float` with ``spec.normalise`` where they arrive.

    ``jitter`` moves every image of task ``index`` by its own random affine map
    (:mod:`alfa.data.augment`), drawn with a generator seeded by
    ``derive_seed(jitter_seed, index)``: ``generator``'s draws are those of an unjittered batch.
    """
    counts = dataset.images_per_class()
    per_class = spec.shots + spec.query
    start, stop = part if part is not None else (0, num_tasks)
    tasks = []
    for index in range(num_tasks):
        classes = torch.randperm(len(counts), generator=generator)[: spec.ways].tolist()
        picks = [torch.randperm(counts[c], generator=generator)[:per_class] for c in classes]
        if not start <= index < stop:
            continue
        images = dataset.gather(classes, picks)
        if jitter:
            images = jitter(images, torch.Generator().manual_seed(derive_seed(jitter_seed, index)))
        tasks.append(images.reshape(spec.ways, per_class, *images.shape[1:]))
    num_tasks = len(tasks)
    grouped = torch.stack(tasks)  # [T, N, K+Q, C, H, W]
    if not raw:
        grouped = to_float(grouped, spec.normalise)
    shape = grouped.shape[3:]
    labels = torch.arange(spec.ways, dtype=torch.long)
    support_y = labels.repeat_interleave(spec.shots).expand(num_tasks, -1).contiguous()
    query_y = labels.repeat_interleave(spec.query).expand(num_tasks, -1).contiguous()
    return TaskBatch(
        grouped[:, :, : spec.shots].reshape(num_tasks, -1, *shape),
        support_y,
        grouped[:, :, spec.shots :].reshape(num_tasks, -1, *shape),
        query_y,
    )


class EpisodeSampler:
    """Random N-way K-shot tasks with Q query images per class.

    Args:
        dataset: The classes to draw from.
        ways: Classes per task (N).
        shots: Support images per class (K).
        query: Query images per class (Q).
        generator: A CPU :class:`torch.Generator` (used and advanced in place) or an integer
            seed for a new one.
        normalise: ``auto``, ``imagenet`` or ``none`` (see the module docstring).

    Raises:
        DataError: See :meth:`EpisodeSpec.create`.
    """

    def __init__(
        self,
        dataset: ImageClassDataset,
        ways: int,
        shots: int,
        query: int,
        *,
        generator: torch.Generator | int = 0,
        normalise: str = "auto",
    ) -> None:
        self.dataset = dataset
        self.spec = EpisodeSpec.create(dataset, ways, shots, query, normalise)
        if isinstance(generator, torch.Generator):
            self.generator = generator
        else:
            self.generator = torch.Generator().manual_seed(_positive("seed", generator, 0))
        self.tasks_sampled = 0

    def sample(self, meta_batch: int = 1) -> TaskBatch:
        """``meta_batch`` tasks: support ``[T, N*K, C, H, W]``, query ``[T, N*Q, C, H, W]``."""
        _positive("meta_batch", meta_batch, 1)
        batch = sample_tasks(self.dataset, self.spec, self.generator, meta_batch)
        self.tasks_sampled += meta_batch
        return batch

    def __iter__(self) -> Iterator[TaskBatch]:
        """Endless single-task batches."""
        while True:
            yield self.sample(1)

    def state_dict(self) -> dict[str, Any]:
        """The generator state and task count, for exact resumption."""
        return {
            "generator": self.generator.get_state(),
            "tasks_sampled": self.tasks_sampled,
            "spec": (self.spec.ways, self.spec.shots, self.spec.query),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; later samples continue the saved stream exactly."""
        saved = tuple(state.get("spec", (self.spec.ways, self.spec.shots, self.spec.query)))
        if saved != (self.spec.ways, self.spec.shots, self.spec.query):
            raise DataError(
                f"sampler state was saved for (ways, shots, query) = {saved}, not "
                f"{(self.spec.ways, self.spec.shots, self.spec.query)}"
            )
        self.generator.set_state(state["generator"])
        self.tasks_sampled = int(state.get("tasks_sampled", 0))


class FixedEpisodes(Sequence[TaskBatch]):
    """A fixed, reproducible list of tasks, generated on access and batched.

    Task ``i`` is drawn with a generator seeded by :func:`derive_seed` ``(seed, i)``, so it is
    the same whatever ``batch_size`` is and however often the list is read.
    """

    def __init__(
        self,
        dataset: ImageClassDataset,
        spec: EpisodeSpec,
        num_tasks: int,
        seed: int,
        batch_size: int = 1,
    ) -> None:
        self.dataset = dataset
        self.spec = spec
        self.num_tasks = _positive("num_tasks", num_tasks, 1)
        self.seed = int(seed)
        self.batch_size = _positive("batch_size", batch_size, 1)

    def task(self, index: int) -> TaskBatch:
        """Task ``index`` alone (a batch of one)."""
        if not 0 <= index < self.num_tasks:
            raise IndexError(f"task {index} out of range 0..{self.num_tasks - 1}")
        generator = torch.Generator().manual_seed(derive_seed(self.seed, index))
        return sample_tasks(self.dataset, self.spec, generator, 1)

    def __len__(self) -> int:
        return math.ceil(self.num_tasks / self.batch_size)

    def __getitem__(self, index: int) -> TaskBatch:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        start = index * self.batch_size
        tasks = [self.task(i) for i in range(start, min(start + self.batch_size, self.num_tasks))]
        return TaskBatch(*(torch.cat(parts) for parts in zip(*tasks, strict=True)))


def fixed_episodes(
    dataset: ImageClassDataset,
    ways: int,
    shots: int,
    query: int,
    num_tasks: int = 600,
    seed: int = 0,
    *,
    batch_size: int = 1,
    normalise: str = "auto",
) -> FixedEpisodes:
    """The same ``num_tasks`` tasks for a given ``seed``, every time (validation/test sets).

    Returns:
        A sequence of :class:`TaskBatch` of ``batch_size`` tasks each (the last may be shorter).

    Raises:
        DataError: See :meth:`EpisodeSpec.create`.
    """
    spec = EpisodeSpec.create(dataset, ways, shots, query, normalise)
    return FixedEpisodes(dataset, spec, num_tasks, seed, batch_size)
