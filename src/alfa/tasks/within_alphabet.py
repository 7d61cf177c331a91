"""Within-alphabet test episodes of an Omniglot run: Lake et al.'s one-shot task.

A run's standard test episodes (:class:`~alfa.tasks.episodic.EpisodicSource`) draw their classes
from all its test classes, characters of every held-out alphabet and their rotations mixed.
:class:`WithinAlphabetSource` draws every episode's classes from **one** alphabet instead, from
the same test classes (the run's class list, or ``data.test_*``), unrotated characters only:
the harder and more realistic task. The episodes follow the rules of
:mod:`alfa.data.within_group`; :func:`alfa.runs.within_alphabet.evaluate_within_alphabet`
scores a learner on them.

Only Omniglot data has alphabets: a run of another dataset (or of sinusoid regression) is
refused with one error naming it (:func:`check_grouped`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from alfa.config import Config
from alfa.data.dataset import ImageClassDataset
from alfa.data.splits import overlapping_classes
from alfa.data.within_group import (
    GroupPart,
    PartEpisodes,
    WithinGroupParts,
    is_unrotated,
    within_group_parts,
)
from alfa.errors import DataError
from alfa.tasks.episodic import load_split
from alfa.typing import TaskBatch

__all__ = ["PartSource", "WithinAlphabetSource", "check_grouped"]


def check_grouped(config: Config) -> None:
    """Refuse a config whose test classes are not grouped by alphabet (not Omniglot).

    Raises:
        DataError: naming the run's task or test dataset.
    """
    d = config.data
    if d.name == "sinusoid":
        raise DataError(
            "within-alphabet episodes need Omniglot test classes (characters grouped by "
            "alphabet); this run is sinusoid regression"
        )
    name = d.test_name or d.name
    if name != "omniglot":
        raise DataError(
            "within-alphabet episodes need Omniglot test classes (characters grouped by "
            f"alphabet); this run's test data is {name}, whose classes have no alphabets"
        )


def _warn_seen(config: Config, lists: Mapping[str, Sequence[str]], test: ImageClassDataset) -> None:
    """Warn when test characters were meta-training classes (known from the run's kept training
    class list, or from ``data.train_classes: all``): the accuracy then measures characters
    seen in training."""
    kept = [name for name in test.class_names if is_unrotated(name)]
    if "train" in lists:
        seen = overlapping_classes(lists["train"], kept)
    elif config.data.train_classes == "all" and not config.data.test_name:
        seen = kept
    else:
        return
    if seen:
        print(
            f"alfa: warning: {len(seen)} of the {len(kept)} test characters are also "
            f"meta-training classes (e.g. '{seen[0]}'): the within-alphabet accuracy measures "
            "characters seen in training, not new ones",
            file=sys.stderr,
        )


class PartSource:
    """One part of the within-alphabet episodes (the main part, or a smaller alphabet's) as a
    task source that :func:`alfa.runs.evaluate.evaluate` takes: fixed test tasks only.

    Attributes:
        part: which alphabets, how many ways.
    """

    task = "classification"
    metric = "accuracy"

    def __init__(self, parts: WithinGroupParts, part: GroupPart, in_channels: int) -> None:
        self.part = part
        self.in_channels = in_channels
        self._parts = parts

    def fixed(self, split: str, tasks: int, seed: int, batch: int) -> Iterator[TaskBatch]:
        return iter(self.fixed_chunks(split, tasks, seed, batch))

    def fixed_chunks(self, split: str, tasks: int, seed: int, batch: int) -> PartEpisodes:
        """The part's fixed episodes (``split`` must be ``test``: they are drawn from the test
        classes)."""
        if split != "test":
            raise DataError(f"within-alphabet episodes are test episodes, not {split!r} ones")
        return self._parts.episodes(self.part, tasks, seed, batch)

    def _evaluation_only(self) -> DataError:
        return DataError("within-alphabet episodes are for evaluation; they have no training tasks")

    def sample(self, tasks: int) -> TaskBatch:
        raise self._evaluation_only()

    def share(self, start: int, stop: int) -> None:
        raise self._evaluation_only()

    def state_dict(self) -> dict[str, Any]:
        raise self._evaluation_only()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise self._evaluation_only()


class WithinAlphabetSource:
    """Within-alphabet episodes of Omniglot test classes, in parts of one shape each.

    Args:
        dataset: the test classes, named ``Alphabet/characterNN[/rotDDD]``.
        ways: classes per episode of the main part (a trained run's ways).
        shots: support drawings per class.
        query: query drawings per class (None: every drawing left, 19 for Omniglot at 1 shot).

    Attributes:
        parts: what :func:`~alfa.data.within_group.within_group_parts` found: the ways, shots,
            query and parts, and the alphabets skipped.
        sources: one :class:`PartSource` per part, the main part first.

    Raises:
        DataError: see :func:`~alfa.data.within_group.within_group_parts`.
    """

    task = "classification"
    metric = "accuracy"

    def __init__(
        self, dataset: ImageClassDataset, ways: int, shots: int = 1, query: int | None = None
    ) -> None:
        self.parts = within_group_parts(dataset, ways, shots, query)
        self.in_channels = dataset.channels
        self.sources = [PartSource(self.parts, p, self.in_channels) for p in self.parts.parts]

    @classmethod
    def from_config(
        cls,
        config: Config,
        class_lists: Mapping[str, Sequence[str]] | None = None,
        *,
        ways: int | None = None,
        query: int | None = None,
    ) -> WithinAlphabetSource:
        """The within-alphabet episodes of a run's test classes, with its ways (or ``ways``) and
        shots (``data.shots``). A warning on stderr says when test characters were also
        meta-training classes (known from ``class_lists['train']``, as kept with a run, or
        from ``data.train_classes: all``).

        Args:
            class_lists: class names by split that replace the config's class-list files (a
                run's kept copy, :attr:`alfa.runs.trained.Trained.class_lists`).

        Raises:
            DataError: the test classes are not Omniglot's (:func:`check_grouped`), or see
                :func:`~alfa.data.within_group.within_group_parts`.
        """
        check_grouped(config)
        test = load_split(config, "test", class_lists)
        if test is None:
            raise DataError("the dataset defines no test classes: set data.test_split_file")
        d = config.data
        source = cls(test, d.ways if ways is None else ways, d.shots, query)
        _warn_seen(config, class_lists or {}, test)
        return source

    @property
    def ways(self) -> int:
        """Classes per episode of the main part."""
        return self.parts.ways

    @property
    def query(self) -> int:
        """Query drawings per class."""
        return self.parts.query
