"""Image datasets for few-shot classification and the episodes drawn from them.

Entry points: :func:`load_dataset` (any supported layout, see :data:`LOADERS`),
:class:`FewShotEpisodes` (a user's folder or ``torch.utils.data.Dataset`` as a training
stream and fixed test tasks), :class:`EpisodeSampler` (random training tasks),
:func:`fixed_episodes` (reproducible validation/test tasks), :class:`AffineJitter` (random
affine jitter of training images), :class:`PrefetchingLoader`
(worker processes for large data sets) and :func:`run_check` (the ``alfa data check``
command).
"""

from __future__ import annotations

from alfa.data.augment import AffineJitter
from alfa.data.check import CheckReport, check_dataset, format_report, run_check
from alfa.data.dataset import (
    ClassSubset,
    ImageClassDataset,
    LazyImageDataset,
    TensorImageDataset,
)
from alfa.data.episodes import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EpisodeSampler,
    FixedEpisodes,
    derive_seed,
    fixed_episodes,
)
from alfa.data.few_shot import FewShotEpisodes
from alfa.data.formats import LOADERS, detect_format, load_dataset
from alfa.data.images import ImageSpec
from alfa.data.prefetch import PrefetchingLoader, benchmark_episodes
from alfa.data.splits import mini_imagenet_split, read_class_list
from alfa.data.torch_dataset import from_torch_dataset

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LOADERS",
    "AffineJitter",
    "CheckReport",
    "ClassSubset",
    "EpisodeSampler",
    "FewShotEpisodes",
    "FixedEpisodes",
    "ImageClassDataset",
    "ImageSpec",
    "LazyImageDataset",
    "PrefetchingLoader",
    "TensorImageDataset",
    "benchmark_episodes",
    "check_dataset",
    "derive_seed",
    "detect_format",
    "fixed_episodes",
    "format_report",
    "from_torch_dataset",
    "load_dataset",
    "mini_imagenet_split",
    "read_class_list",
    "run_check",
]
