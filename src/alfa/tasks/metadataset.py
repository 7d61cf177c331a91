"""Meta-Dataset episodes as tasks: images of a source, variable ways and shots.

An episode of ``N`` classes with ``k_c`` support images of class ``c`` and ``q`` query images per
class becomes a :class:`~alfa.typing.TaskBatch` with one task (``T = 1``): support
``[1, sum k_c, C, H, W]``, query ``[1, N q, C, H, W]``, labels ``0..N-1`` in the (random) order of
the description, pixels as :class:`~alfa.data.metadataset.MetaDatasetSource` decodes them
(resized and scaled to ``[-1, 1]`` as Meta-Dataset's decoder does, up to the differences that
docs/metadataset.md lists).

Episodes differ in size, so they are not stacked: a meta-batch of several episodes is a list,
and :func:`meta_batch_loss` runs them one after the other (grouping by episode; the outer loss
is their mean, and each backward frees its episode's graph). Meta-batch 1, Meta-Dataset's
setting, is one plain forward/backward of a single task.

Evaluation uses a fixed list of episodes: :func:`fixed_episodes` draws ``n`` descriptions and
one image-selection seed each from a seeded generator (600 per source by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from alfa.data.metadataset import MetaDatasetSource
from alfa.tasks.metadataset_sampling import (
    EpisodeConfig,
    EpisodeDescription,
    EpisodeDescriptionSampler,
)
from alfa.typing import TaskBatch

__all__ = ["Episode", "EpisodeStream", "build_episode", "fixed_episodes", "meta_batch_loss"]


@dataclass(frozen=True)
class Episode:
    """A description and the seed that picks its images."""

    description: EpisodeDescription
    seed: int


def build_episode(source: MetaDatasetSource, episode: Episode) -> TaskBatch:
    """The images of an episode: support first ``k_c``, query next ``q`` of a shuffled class."""
    rng = np.random.default_rng(episode.seed)
    desc = episode.description
    sx, sy, qx, qy = [], [], [], []
    for label, (class_id, shots) in enumerate(zip(desc.classes, desc.shots, strict=True)):
        images = source.images(class_id)
        order = torch.from_numpy(rng.permutation(len(images)))
        sx.append(images[order[:shots]])
        qx.append(images[order[shots : shots + desc.query]])
        sy.append(torch.full((shots,), label, dtype=torch.long))
        qy.append(torch.full((desc.query,), label, dtype=torch.long))
    return TaskBatch(
        torch.cat(sx)[None], torch.cat(sy)[None], torch.cat(qx)[None], torch.cat(qy)[None]
    )


class EpisodeStream:
    """Endless training episodes of one split (a seeded sampler and image picks)."""

    def __init__(
        self,
        source: MetaDatasetSource,
        split: str,
        *,
        seed: int = 0,
        config: EpisodeConfig | None = None,
        structure: str = "auto",
    ) -> None:
        self.source = source
        self.sampler = EpisodeDescriptionSampler(
            source.spec, split, config, structure=structure, seed=seed
        )
        self._seeds = np.random.default_rng([seed, 1])

    def next_episode(self) -> Episode:
        return Episode(self.sampler.sample(), int(self._seeds.integers(2**63 - 1)))

    def next_batch(self) -> TaskBatch:
        return build_episode(self.source, self.next_episode())


def fixed_episodes(
    source: MetaDatasetSource,
    split: str,
    n: int = 600,
    *,
    seed: int = 1234,
    config: EpisodeConfig | None = None,
    structure: str = "auto",
) -> list[Episode]:
    """``n`` evaluation episodes fixed by ``seed`` (the same list for every model)."""
    stream = EpisodeStream(source, split, seed=seed, config=config, structure=structure)
    return [stream.next_episode() for _ in range(n)]


def meta_batch_loss(learner: torch.nn.Module, batches: Sequence[TaskBatch]) -> Tensor:
    """Mean outer loss of episodes of different sizes, backpropagated one episode at a time.

    Calls ``backward`` on each episode's share (``loss / len(batches)``), so the accumulated
    gradient is that of the mean; returns the mean loss (detached, on the losses' device: no
    host read here).
    """
    total: Tensor | None = None
    for batch in batches:
        out = learner(batch)
        (out.loss / len(batches)).backward()
        share = out.loss.detach() / len(batches)
        total = share if total is None else total + share
    if total is None:
        raise ValueError("meta_batch_loss needs at least one episode")
    return total
