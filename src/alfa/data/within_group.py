"""Within-group episodes: every class of an episode comes from one group (an Omniglot alphabet).

The standard test episodes draw their classes from every test class at once, so a 20-way
Omniglot episode mixes characters of several alphabets, and with rotations as classes a
character and its rotation can sit side by side. Lake et al.'s one-shot classification task
(Science 2015) is harder and closer to real use: the 20 characters of an episode are
characters of **one** alphabet, which resemble each other, one drawing of each is the support
set and other drawings of the same characters are the queries. This module draws such
episodes from any :class:`~alfa.data.dataset.ImageClassDataset` whose class names start with
their group (``Alphabet/characterNN[/rotDDD]``).

The rules (each one a choice, and why):

* **Group** of a class: the first component of its name (:func:`class_group`).
* **Only unrotated classes**: a name ending in ``/rotDDD`` is kept only for ``rot000``
  (:func:`is_unrotated`); a rotated character is a class of the standard protocol, not a
  character of the alphabet.
* **Main part**: the groups with at least ``ways`` kept classes. Episode ``i`` draws from group
  ``i mod G`` of them (sorted by name): the groups take turns, so every group weighs alike in
  the mean (Lake et al. give each alphabet of the task the same number of runs), and the
  per-group means rest on equal counts. Drawing a group in proportion to its classes would let
  the largest alphabets decide the mean.
* **Smaller groups** (at least two kept classes, fewer than ``ways``) are never mixed into the
  main part: each is a part of its own, whose episodes hold all of its classes (e.g. Tagalog's
  17 characters in 17-way episodes), reported apart. A group with one class is skipped (a
  one-way episode tests nothing); :attr:`WithinGroupParts.skipped` names it.
* **Drawings**: each class of an episode gets ``shots`` drawings chosen at random as the
  support set and ``query`` other drawings as queries: by default all the remaining ones (19
  for Omniglot's 20 drawings at one shot; the fewest drawings of a kept class minus ``shots``
  when they differ, so that every class has as many).
* **Fixed and seeded**: inside a group an episode is drawn as a standard test episode is (by
  the sampler of :mod:`alfa.data.episodes`: classes in random order, the ``j``-th gets label
  ``j``; drawings at random) with a generator seeded by
  :func:`~alfa.data.episodes.derive_seed` ``(seed, i)``, so episode ``i`` is the same whatever
  the batch size and however often it is read; the part of a smaller group ``g`` uses the
  seed ``derive_seed(seed, crc32(g))``, so adding or removing another group changes none of
  its episodes.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from alfa.data.dataset import ImageClassDataset
from alfa.data.episodes import EpisodeSpec, FixedEpisodes, derive_seed, sample_tasks
from alfa.errors import DataError
from alfa.typing import TaskBatch

__all__ = [
    "GroupPart",
    "PartEpisodes",
    "WithinGroupParts",
    "class_group",
    "is_unrotated",
    "within_group_parts",
]

_ROTATION = re.compile(r"/rot(\d{3})$")


def class_group(name: str) -> str:
    """The group of a class: the first component of its name (an Omniglot alphabet)."""
    return name.split("/", 1)[0]


def is_unrotated(name: str) -> bool:
    """Whether a class is an original character: no ``/rotDDD`` suffix, or ``/rot000``."""
    match = _ROTATION.search(name)
    return match is None or match.group(1) == "000"


def _group_seed(seed: int, group: str) -> int:
    """The seed of the part of one smaller group (stable across runs and Python versions)."""
    return derive_seed(seed, zlib.crc32(group.encode("utf-8")))


@dataclass(frozen=True)
class GroupPart:
    """Episodes of one shape: ``ways`` classes, each episode from one of ``groups``.

    Attributes:
        name: ``"main"`` for the groups with at least the requested ways, else the group.
        ways: classes per episode.
        groups: the groups whose episodes form the part, sorted; episode ``i`` is drawn from
            ``groups[i % len(groups)]``.
        classes: the number of kept classes of each group.
        separate: whether this is a smaller group's part (reported apart, never averaged with
            the main part).
    """

    name: str
    ways: int
    groups: tuple[str, ...]
    classes: tuple[int, ...]
    separate: bool

    def group_of(self, index: int) -> str:
        """The group of episode ``index``."""
        return self.groups[index % len(self.groups)]


class PartEpisodes(FixedEpisodes):
    """The fixed seeded episodes of one :class:`GroupPart`, in batches of ``batch_size``.

    A batch stacks episodes of the same shape, so it can be adapted to in one vectorised call;
    task ``i`` is the same for any ``batch_size``. Batching is :class:`FixedEpisodes`'s; only
    the drawing of episode ``i`` (from the group whose turn it is) differs.
    """

    def __init__(
        self,
        part: GroupPart,
        subsets: Sequence[ImageClassDataset],
        specs: Sequence[EpisodeSpec],
        num_tasks: int,
        seed: int,
        batch_size: int,
    ) -> None:
        if num_tasks < 1 or batch_size < 1:
            raise DataError(f"num_tasks and batch_size must be >= 1, got {num_tasks}, {batch_size}")
        # not FixedEpisodes.__init__: the episodes come from one dataset and spec per group
        self.part = part
        self.num_tasks = int(num_tasks)
        self.batch_size = int(batch_size)
        self.seed = _group_seed(seed, part.name) if part.separate else int(seed)
        self._subsets = list(subsets)
        self._specs = list(specs)

    @property
    def task_groups(self) -> list[str]:
        """The group of every episode, in order (for per-group means and paired comparisons)."""
        return [self.part.group_of(i) for i in range(self.num_tasks)]

    def task(self, index: int) -> TaskBatch:
        """Episode ``index`` alone (a batch of one)."""
        if not 0 <= index < self.num_tasks:
            raise IndexError(f"task {index} out of range 0..{self.num_tasks - 1}")
        which = index % len(self.part.groups)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, index))
        return sample_tasks(self._subsets[which], self._specs[which], generator, 1)


@dataclass(frozen=True)
class WithinGroupParts:
    """What :func:`within_group_parts` found: the parts to evaluate and the groups left out.

    Attributes:
        ways: the requested classes per episode (those of the main part).
        shots: support drawings per class.
        query: query drawings per class.
        parts: the main part first (when a group has at least ``ways`` classes), then one part
            per smaller group, by name.
        skipped: groups left out with their number of kept classes (fewer than two).
    """

    ways: int
    shots: int
    query: int
    parts: tuple[GroupPart, ...]
    skipped: tuple[tuple[str, int], ...]
    _dataset: ImageClassDataset = field(repr=False)
    _members: dict[str, tuple[str, ...]] = field(repr=False)
    _normalise: str = field(repr=False)

    @property
    def main(self) -> GroupPart | None:
        """The part of the groups with at least ``ways`` classes, or None when there is none."""
        return next((p for p in self.parts if not p.separate), None)

    def episodes(
        self, part: GroupPart, num_tasks: int = 600, seed: int = 1234, batch_size: int = 1
    ) -> PartEpisodes:
        """The fixed episodes of ``part``: the same for the same ``seed``, every time."""
        subsets = [self._dataset.select_classes(self._members[g]) for g in part.groups]
        specs = [
            EpisodeSpec.create(s, part.ways, self.shots, self.query, self._normalise)
            for s in subsets
        ]
        return PartEpisodes(part, subsets, specs, num_tasks, seed, batch_size)


def within_group_parts(
    dataset: ImageClassDataset,
    ways: int,
    shots: int = 1,
    query: int | None = None,
    *,
    normalise: str = "auto",
    group: Callable[[str], str] = class_group,
    keep: Callable[[str], bool] = is_unrotated,
) -> WithinGroupParts:
    """Sort the classes of ``dataset`` into the parts of within-group evaluation (the module
    docstring has the rules).

    Args:
        ways: classes per episode of the main part.
        shots: support drawings per class.
        query: query drawings per class; None: every drawing left after the support ones (the
            fewest over the kept classes).
        normalise: as for :func:`~alfa.data.episodes.fixed_episodes`.
        group: the group of a class name (default: its first component).
        keep: which classes take part (default: the unrotated ones).

    Raises:
        DataError: no class is kept, no group has two classes, a count is not positive, or the
            classes have too few drawings for ``shots`` (and ``query``).
    """
    for name, value, low in (("ways", ways, 2), ("shots", shots, 1), ("query", query, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DataError(f"{name} must be an integer, got {value!r}")
        if value is not None and value < low:
            raise DataError(f"{name} must be at least {low}, got {value}")
    members: dict[str, list[str]] = {}
    for name in dataset.class_names:
        if keep(name):
            members.setdefault(group(name), []).append(name)
    where = dataset.source or type(dataset).__name__
    if not members:
        raise DataError(f"{where} has no unrotated class to draw within-group episodes from")
    skipped = tuple((g, len(m)) for g, m in sorted(members.items()) if len(m) < 2)
    used = {g: tuple(m) for g, m in sorted(members.items()) if len(m) >= 2}
    if not used:
        raise DataError(
            f"no group of {where} has two classes: within-group episodes need at least two "
            "characters of one alphabet"
        )
    counts = dataset.images_per_class()
    index = {name: i for i, name in enumerate(dataset.class_names)}
    fewest = min(counts[index[n]] for m in used.values() for n in m)
    if fewest <= shots:
        raise DataError(
            f"a class of {where} has {fewest} drawings: shots={shots} leaves none for the queries"
        )
    if query is None:
        query = fewest - shots
    big = tuple(g for g, m in used.items() if len(m) >= ways)
    parts = []
    if big:
        parts.append(GroupPart("main", ways, big, tuple(len(used[g]) for g in big), False))
    parts += [GroupPart(g, len(m), (g,), (len(m),), True) for g, m in used.items() if len(m) < ways]
    result = WithinGroupParts(ways, shots, query, tuple(parts), skipped, dataset, used, normalise)
    for part in result.parts:  # impossible counts fail now, before anything is evaluated
        result.episodes(part, 1, 0)
    return result
