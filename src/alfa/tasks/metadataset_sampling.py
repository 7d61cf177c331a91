"""Meta-Dataset's episode composition: which classes, how many support and query images each.

The procedure of Triantafillou et al. (ICLR 2020, Sec. 3.2), as in Meta-Dataset's sampler:

1. **Ways**: ``N ~ U{min_ways, min(max_ways, C)}`` (5 and 50) over the ``C`` classes of the split,
   then ``N`` classes uniformly without replacement. Structure-aware variants:
   *bi-level* (Omniglot): one superclass (alphabet) uniformly, then ``N ~ U{5, min(50, size)}``
   classes of that alphabet; *hierarchical* (ILSVRC): one internal node of the split's WordNet
   graph uniformly among those spanning between ``min_ways`` and 392 leaves, its leaves as the
   classes (50 drawn at random when it spans more than 50).
2. **Query size** (per class, the same for all): ``q = min(10, min_c floor(n_c / 2))``.
3. **Support budget**: ``beta ~ U(0, 1]`` and
   ``|S| = min(500, sum_c ceil(beta * min(100, n_c - q)))`` (computed as
   ``floor(beta * x + 1)``, which is at least one per class).
4. **Imbalanced shots**: ``R_c = n_c * exp(a_c)`` with ``a_c ~ U[log 0.5, log 2]``;
   ``k_c = min(floor(R_c / sum R * (|S| - N)) + 1, n_c - q)``.

Everything draws from one ``numpy.random.Generator`` so a seed fixes the episodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alfa.data.metadataset_spec import DatasetSpec, canonical_split
from alfa.errors import DataError

__all__ = [
    "MAX_SPANNING_LEAVES",
    "EpisodeConfig",
    "EpisodeDescription",
    "EpisodeDescriptionSampler",
    "num_query",
    "num_support_per_class",
    "support_set_size",
]

MAX_SPANNING_LEAVES = 392
"""Largest number of leaves an ILSVRC node may span to be drawn (Meta-Dataset's value)."""


@dataclass(frozen=True)
class EpisodeConfig:
    """Meta-Dataset's variable-way variable-shot defaults."""

    min_ways: int = 5
    max_ways: int = 50
    max_query: int = 10
    max_support_set: int = 500
    max_support_per_class: int = 100
    min_log_weight: float = math.log(0.5)
    max_log_weight: float = math.log(2.0)


@dataclass(frozen=True)
class EpisodeDescription:
    """One episode: class ids (absolute) with each class's support shots and the query size."""

    classes: tuple[int, ...]
    shots: tuple[int, ...]
    query: int

    @property
    def ways(self) -> int:
        return len(self.classes)


def num_query(images: np.ndarray, max_query: int) -> int:
    """Query images per class: at most ``max_query`` and half the smallest class."""
    if images.min() < 2:
        raise DataError("every class of an episode needs at least 2 images")
    return int(min(max_query, (images // 2).min()))


def support_set_size(
    remaining: np.ndarray, max_per_class: int, max_total: int, rng: np.random.Generator
) -> int:
    """Total support size: ``min(max_total, sum floor(beta * min(max_per_class, r) + 1))``."""
    if max_total < len(remaining):
        raise DataError("max_support_set is smaller than the number of ways")
    beta = rng.uniform()
    return int(min(np.floor(beta * np.minimum(max_per_class, remaining) + 1).sum(), max_total))


def num_support_per_class(
    images: np.ndarray,
    remaining: np.ndarray,
    total: int,
    min_log_weight: float,
    max_log_weight: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Shots per class, proportional to class size times a random weight in [0.5, 2]."""
    if total < len(remaining):
        raise DataError("the support set is smaller than the number of ways")
    weights = images * np.exp(rng.uniform(min_log_weight, max_log_weight, size=images.shape))
    proportions = weights / weights.sum()
    desired = np.floor(proportions * (total - len(remaining))).astype(np.int64) + 1
    return np.minimum(desired, remaining)


class EpisodeDescriptionSampler:
    """Draw episode descriptions from one split of a source.

    Args:
        spec: The source's specification.
        split: ``train``, ``val`` or ``test``.
        config: Ways and shots limits (Meta-Dataset's defaults).
        structure: ``"auto"`` uses the alphabets of a bi-level spec and the WordNet graph of a
            hierarchical one (Meta-Dataset's training and evaluation setting); ``"none"``
            draws classes uniformly.
        seed: Seed of the generator.

    Raises:
        DataError: The split has fewer classes than ``min_ways`` (or an alphabet does).
    """

    def __init__(
        self,
        spec: DatasetSpec,
        split: str,
        config: EpisodeConfig | None = None,
        *,
        structure: str = "auto",
        seed: int = 0,
    ) -> None:
        self.spec = spec
        self.split = canonical_split(split)
        self.config = config or EpisodeConfig()
        self.rng = np.random.default_rng(seed)
        self.classes = spec.splits[self.split]
        where = f"{spec.path or 'source ' + spec.name}: split {self.split}"
        if len(self.classes) < self.config.min_ways:
            raise DataError(
                f"{where} has {len(self.classes)} classes; an episode needs at least "
                f"{self.config.min_ways}"
            )
        if structure not in ("auto", "none"):
            raise ValueError(f"structure must be 'auto' or 'none', got {structure!r}")
        self.mode = spec.kind if structure == "auto" else "flat"
        self.groups: list[list[int]] = []
        if self.mode == "bilevel":
            self.groups = spec.superclasses[self.split]
            small = [g for g in self.groups if len(g) < self.config.min_ways]
            if small:
                raise DataError(
                    f"{where}: a superclass has {len(small[0])} classes, fewer than "
                    f"{self.config.min_ways}"
                )
        elif self.mode == "hierarchical":
            self.groups = self._eligible_nodes()

    def _eligible_nodes(self) -> list[list[int]]:
        graph = self.spec.graph[self.split]
        ids = {name: i for i, name in enumerate(self.spec.class_names)}
        leaves: dict[str, set[str]] = {}

        def span(node: str) -> set[str]:
            if node not in leaves:
                children = graph.get(node, [])
                leaves[node] = set().union(*(span(c) for c in children)) if children else {node}
            return leaves[node]

        groups = []
        for node in sorted(graph):
            if not graph[node]:
                continue
            covered = sorted(ids[leaf] for leaf in span(node))
            if self.config.min_ways <= len(covered) <= MAX_SPANNING_LEAVES:
                groups.append(covered)
        if not groups:
            where = self.spec.path or f"source {self.spec.name}"
            raise DataError(
                f"{where}: split {self.split} has no node spanning {self.config.min_ways} to "
                f"{MAX_SPANNING_LEAVES} classes"
            )
        return groups

    def _ways(self, available: int) -> int:
        upper = min(self.config.max_ways, available)
        return int(self.rng.integers(self.config.min_ways, upper + 1))

    def sample_classes(self) -> list[int]:
        """The classes of the next episode (absolute ids)."""
        if self.mode == "bilevel":
            group = self.groups[int(self.rng.integers(len(self.groups)))]
            ways = self._ways(len(group))
            return [int(c) for c in self.rng.choice(group, ways, replace=False)]
        if self.mode == "hierarchical":
            group = self.groups[int(self.rng.integers(len(self.groups)))]
            if len(group) > self.config.max_ways:
                group = list(self.rng.choice(group, self.config.max_ways, replace=False))
            return [int(c) for c in group]
        ways = self._ways(len(self.classes))
        return [int(c) for c in self.rng.choice(self.classes, ways, replace=False)]

    def sample(self) -> EpisodeDescription:
        """The next episode's description."""
        classes = self.sample_classes()
        images = np.array([self.spec.images_per_class[c] for c in classes])
        query = num_query(images, self.config.max_query)
        remaining = images - query
        total = support_set_size(
            remaining, self.config.max_support_per_class, self.config.max_support_set, self.rng
        )
        shots = num_support_per_class(
            images,
            remaining,
            total,
            self.config.min_log_weight,
            self.config.max_log_weight,
            self.rng,
        )
        return EpisodeDescription(tuple(classes), tuple(int(k) for k in shots), query)
