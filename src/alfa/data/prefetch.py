"""Meta-batches decoded in ``DataLoader`` worker processes, and an episode-rate benchmark.

Batch ``b`` of a :class:`PrefetchingLoader` is always drawn with a generator seeded by
:func:`~alfa.data.episodes.derive_seed` ``(seed, b)``, so the stream is identical for any number
of workers (including none) and can be resumed at any batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from alfa.data.augment import AffineJitter
from alfa.data.dataset import ImageClassDataset
from alfa.data.episodes import (
    EpisodeSampler,
    EpisodeSpec,
    derive_seed,
    jitter_stream_seed,
    sample_tasks,
)
from alfa.errors import DataError
from alfa.typing import TaskBatch

__all__ = ["PrefetchingLoader", "benchmark_episodes"]


class _MetaBatches(Dataset[TaskBatch]):
    def __init__(
        self,
        dataset: ImageClassDataset,
        spec: EpisodeSpec,
        meta_batch: int,
        seed: int,
        raw: bool = False,
        jitter: AffineJitter | None = None,
    ) -> None:
        self.dataset = dataset
        self.spec = spec
        self.meta_batch = meta_batch
        self.seed = seed
        self.raw = raw
        self.jitter = jitter
        self.part: tuple[int, int] | None = None

    def __getitem__(self, index: int) -> TaskBatch:
        batch_seed = derive_seed(self.seed, index)
        return sample_tasks(
            self.dataset,
            self.spec,
            torch.Generator().manual_seed(batch_seed),
            self.meta_batch,
            part=self.part,
            raw=self.raw,
            jitter=self.jitter,
            jitter_seed=jitter_stream_seed(batch_seed),
        )


class _Indices(Sampler[int]):
    def __init__(self, start: int, stop: int | None) -> None:
        self.start = start
        self.stop = stop

    def __iter__(self) -> Iterator[int]:
        index = self.start
        while self.stop is None or index < self.stop:
            yield index
            index += 1


def _passthrough(batch: TaskBatch) -> TaskBatch:
    return batch


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


class PrefetchingLoader:
    """An iterable of meta-batches produced ahead of time by worker processes.

    Args:
        dataset: The classes to draw from (typically a lazily decoded one).
        ways: Classes per task.
        shots: Support images per class.
        query: Query images per class.
        meta_batch: Tasks per batch.
        seed: Stream seed; batch ``b`` depends only on ``(seed, b)``.
        num_batches: Length of the stream (``None``: endless).
        num_workers: Worker processes (0: produce batches in this process).
        prefetch_factor: Batches each worker keeps ready (workers > 0 only).
        normalise: ``auto``, ``imagenet`` or ``none``.
        pin_memory: Pin batches for faster host-to-GPU copies.
        multiprocessing_context: e.g. ``"spawn"``; ``None`` uses the platform default.
        raw: Yield ``uint8`` images, not normalised (see
            :func:`~alfa.data.episodes.sample_tasks`); :attr:`spec` says how to normalise them.
        jitter: A random affine map for every image (:mod:`alfa.data.augment`); None or
            all-zero ranges: none.

    Raises:
        DataError: Bad counts (see :class:`~alfa.data.episodes.EpisodeSpec`) or worker settings.
    """

    def __init__(
        self,
        dataset: ImageClassDataset,
        ways: int,
        shots: int,
        query: int,
        meta_batch: int,
        *,
        seed: int = 0,
        num_batches: int | None = None,
        num_workers: int = 0,
        prefetch_factor: int = 2,
        normalise: str = "auto",
        pin_memory: bool = False,
        multiprocessing_context: str | None = None,
        raw: bool = False,
        jitter: AffineJitter | None = None,
    ) -> None:
        self.spec = EpisodeSpec.create(dataset, ways, shots, query, normalise)
        if meta_batch < 1 or num_workers < 0 or prefetch_factor < 1:
            raise DataError(
                f"need meta_batch >= 1, num_workers >= 0, prefetch_factor >= 1; got "
                f"{meta_batch}, {num_workers}, {prefetch_factor}"
            )
        if num_batches is not None and num_batches < 0:
            raise DataError(f"num_batches must be >= 0 or None, got {num_batches}")
        self.batches = _MetaBatches(dataset, self.spec, meta_batch, int(seed), raw, jitter)
        self.num_batches = num_batches
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.multiprocessing_context = multiprocessing_context
        self.next_batch = 0

    def share(self, start: int, stop: int) -> None:
        """Yield only tasks ``[start, stop)`` of every meta-batch (one process's share; the
        stream and its positions are those of the whole meta-batches)."""
        if not 0 <= start < stop <= self.batches.meta_batch:
            raise DataError(
                f"share [{start}, {stop}) is not within a meta-batch of {self.batches.meta_batch}"
            )
        self.batches.part = (start, stop)

    @property
    def seed(self) -> int:
        """The stream seed."""
        return self.batches.seed

    def batch(self, index: int) -> TaskBatch:
        """Batch ``index`` of the stream, computed here (no workers)."""
        return self.batches[index]

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless PrefetchingLoader has no length")
        return max(0, self.num_batches - self.next_batch)

    def __iter__(self) -> Iterator[TaskBatch]:
        """Batches from :attr:`next_batch` on; the position advances as batches are taken."""
        workers = self.num_workers
        # The loader's own generator: a new iterator draws its workers' base seed from it, not
        # from the global one, so resuming (a new iterator) leaves the global torch RNG as an
        # uninterrupted run has it. Batches are seeded by index, so the draw changes no batch.
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.next_batch))
        loader = DataLoader(
            self.batches,
            batch_size=None,
            sampler=_Indices(self.next_batch, self.num_batches),
            num_workers=workers,
            collate_fn=_passthrough,
            generator=generator,
            pin_memory=self.pin_memory,
            worker_init_fn=_worker_init if workers else None,
            prefetch_factor=self.prefetch_factor if workers else None,
            multiprocessing_context=self.multiprocessing_context if workers else None,
        )
        for batch in loader:
            self.next_batch += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Seed and position, enough to resume the exact stream."""
        return {"seed": self.seed, "next_batch": self.next_batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a :meth:`state_dict` (the next iteration starts at the saved batch)."""
        if int(state["seed"]) != self.seed:
            raise DataError(f"loader state has seed {state['seed']}, this loader {self.seed}")
        self.next_batch = int(state["next_batch"])


def benchmark_episodes(
    dataset: ImageClassDataset,
    ways: int,
    shots: int,
    query: int,
    meta_batch: int,
    seconds: float,
    *,
    seed: int = 0,
    num_workers: int = 0,
    normalise: str = "auto",
) -> dict[str, float]:
    """Sample meta-batches for about ``seconds`` and measure the rate (one warm-up batch first).

    Returns:
        ``episodes_per_second``, ``batches_per_second``, ``episodes``, ``batches``, ``seconds``
        and the settings ``ways``, ``shots``, ``query``, ``meta_batch``, ``num_workers``.
    """
    if num_workers:
        stream: Iterator[TaskBatch] = iter(
            PrefetchingLoader(
                dataset,
                ways,
                shots,
                query,
                meta_batch,
                seed=seed,
                num_workers=num_workers,
                normalise=normalise,
            )
        )
    else:
        sampler = EpisodeSampler(dataset, ways, shots, query, generator=seed, normalise=normalise)
        stream = (sampler.sample(meta_batch) for _ in iter(int, 1))
    next(stream)
    batches = 0
    start = time.perf_counter()
    elapsed = 0.0
    while batches == 0 or elapsed < seconds:
        next(stream)
        batches += 1
        elapsed = time.perf_counter() - start
    if hasattr(stream, "close"):
        stream.close()
    return {
        "episodes_per_second": batches * meta_batch / elapsed,
        "batches_per_second": batches / elapsed,
        "episodes": float(batches * meta_batch),
        "batches": float(batches),
        "seconds": elapsed,
        "ways": float(ways),
        "shots": float(shots),
        "query": float(query),
        "meta_batch": float(meta_batch),
        "num_workers": float(num_workers),
    }
