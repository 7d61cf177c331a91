"""Where a run's tasks come from: a training stream plus fixed validation and test tasks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from alfa.config import Config
from alfa.tasks.sinusoid import SinusoidTasks, fixed_sinusoid_tasks
from alfa.typing import TaskBatch

__all__ = ["SinusoidSource", "TaskSource", "build_source"]


class TaskSource(Protocol):
    """The tasks of a run. ``fixed`` yields the same tasks for the same seed every time, in
    chunks of ``batch`` tasks that ``fixed_chunks`` also gives by index.

    ``sample`` draws the next meta-batch of the training stream; after ``share(start, stop)``
    it returns only tasks ``[start, stop)`` of it (one process's share in a distributed run),
    while the stream advances by whole meta-batches, as in a single process.
    """

    task: str  # "regression" | "classification"
    metric: str  # "mse" | "accuracy"
    in_channels: int

    def sample(self, tasks: int) -> TaskBatch: ...

    def share(self, start: int, stop: int) -> None: ...

    def fixed(self, split: str, tasks: int, seed: int, batch: int) -> Iterator[TaskBatch]: ...

    def fixed_chunks(
        self, split: str, tasks: int, seed: int, batch: int
    ) -> Sequence[TaskBatch]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SinusoidSource:
    """Sinusoid regression: K support + K query points for training, 100 query points to test."""

    task = "regression"
    metric = "mse"
    in_channels = 1

    def __init__(self, config: Config) -> None:
        d = config.data
        self.family = d.family
        self.shots = d.shots
        self.eval_query = d.eval_query
        self.train = SinusoidTasks(d.family, d.shots, d.query or d.shots, seed=config.seed)
        self.part: tuple[int, int] | None = None

    def sample(self, tasks: int) -> TaskBatch:
        batch = self.train.sample(tasks)  # the whole meta-batch: the generator advances alike
        if self.part is None:
            return batch
        return TaskBatch(*(t[self.part[0] : self.part[1]] for t in batch))

    def share(self, start: int, stop: int) -> None:
        self.part = (start, stop)

    def fixed(self, split: str, tasks: int, seed: int, batch: int) -> Iterator[TaskBatch]:
        yield from self.fixed_chunks(split, tasks, seed, batch)

    def fixed_chunks(self, split: str, tasks: int, seed: int, batch: int) -> list[TaskBatch]:
        offset = {"test": 0, "val": 1}[split]
        every = fixed_sinusoid_tasks(self.family, self.shots, self.eval_query, tasks, seed + offset)
        return [
            TaskBatch(*(t[start : start + batch] for t in every))
            for start in range(0, tasks, batch)
        ]

    def state_dict(self) -> dict[str, Any]:
        return self.train.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train.load_state_dict(state)


def build_source(
    config: Config,
    *,
    splits: Sequence[str] | None = None,
    class_lists: Mapping[str, Sequence[str]] | None = None,
) -> TaskSource:
    """The task source of a config (image datasets are loaded here, so errors surface early).

    Args:
        splits: None for a training run (every split); ``("test",)`` (or ``("val",)``) reads
            only those classes, all that evaluating a trained model needs.
        class_lists: class names by split (``train``/``val``/``test``) that replace the
            config's class-list files (image datasets).
    """
    if config.data.name == "sinusoid":
        return SinusoidSource(config)
    if config.data.name == "metadataset":
        from alfa.errors import ConfigError

        raise ConfigError(
            "config key 'data.name' is metadataset: Meta-Dataset runs use "
            "`python -m alfa.paper.metadataset_run` (docs/metadataset.md)"
        )
    from alfa.tasks.episodic import EpisodicSource

    return EpisodicSource(config, splits=splits, class_lists=class_lists)
