"""Meta-Dataset's episode composition on synthetic specifications (no images needed)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from alfa.data.metadataset_spec import DatasetSpec
from alfa.errors import DataError
from alfa.tasks.metadataset_sampling import (
    EpisodeConfig,
    EpisodeDescriptionSampler,
    num_query,
    num_support_per_class,
    support_set_size,
)


def flat_spec(counts_by_split: dict[str, list[int]]) -> DatasetSpec:
    counts = [c for s in ("TRAIN", "VALID", "TEST") for c in counts_by_split.get(s, [])]
    splits, start = {}, 0
    for s in ("TRAIN", "VALID", "TEST"):
        n = len(counts_by_split.get(s, []))
        splits[s] = list(range(start, start + n))
        start += n
    return DatasetSpec("flat", "flat", [f"c{i}" for i in range(len(counts))], counts, splits)


def bilevel_spec(alphabets: list[int], images: int = 20) -> DatasetSpec:
    groups, start = [], 0
    for size in alphabets:
        groups.append(list(range(start, start + size)))
        start += size
    spec = DatasetSpec("omni", "bilevel", [f"c{i}" for i in range(start)], [images] * start, {})
    spec.superclasses = {"TRAIN": groups, "VALID": [], "TEST": []}
    spec.splits = {"TRAIN": list(range(start)), "VALID": [], "TEST": []}
    return spec


def test_query_size_is_half_the_smallest_class_at_most_ten() -> None:
    assert num_query(np.array([20, 40, 30]), 10) == 10
    assert num_query(np.array([20, 7, 30]), 10) == 3
    with pytest.raises(DataError):
        num_query(np.array([1, 10]), 10)


def test_support_set_size_hand_computed() -> None:
    beta = np.random.default_rng(3).uniform()
    got = support_set_size(np.array([3, 250, 40]), 100, 500, np.random.default_rng(3))
    assert got == math.floor(beta * 3 + 1) + math.floor(beta * 100 + 1) + math.floor(beta * 40 + 1)
    # the cap of 500
    assert support_set_size(np.array([100] * 50), 100, 500, np.random.default_rng(0)) <= 500


def test_shots_per_class_hand_computed() -> None:
    # equal log-weights (0): proportions follow the class sizes 10:30 over |S| - N = 10
    shots = num_support_per_class(
        np.array([10, 30]), np.array([5, 25]), 12, 0.0, 0.0, np.random.default_rng(0)
    )
    assert shots.tolist() == [math.floor(0.25 * 10) + 1, math.floor(0.75 * 10) + 1]
    # capped by what the query leaves
    shots = num_support_per_class(
        np.array([10, 30]), np.array([2, 25]), 12, 0.0, 0.0, np.random.default_rng(0)
    )
    assert shots.tolist() == [2, 8]


def test_flat_sampler_distribution() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(12, 300, size=80).tolist()
    spec = flat_spec({"TRAIN": counts})
    sampler = EpisodeDescriptionSampler(spec, "train", seed=1)
    ways = Counter()
    for _ in range(3000):
        d = sampler.sample()
        ways[d.ways] += 1
        assert len(set(d.classes)) == d.ways and set(d.classes) <= set(spec.splits["TRAIN"])
        images = np.array([spec.images_per_class[c] for c in d.classes])
        assert d.query == min(10, int((images // 2).min()))
        assert all(1 <= k <= n - d.query for k, n in zip(d.shots, images, strict=True))
        assert d.ways <= sum(d.shots) <= 500
        # the total never exceeds the budget's upper bound sum(min(100, n - q)) + N
        assert sum(d.shots) <= np.minimum(100, images - d.query).sum() + d.ways
    assert set(ways) == set(range(5, 51))  # uniform on 5..min(50, 80)
    expected = 3000 / 46
    chi2 = sum((ways[w] - expected) ** 2 / expected for w in range(5, 51))
    assert chi2 < 90  # 45 degrees of freedom: p < 1e-4 beyond this


def test_ways_capped_by_number_of_classes() -> None:
    sampler = EpisodeDescriptionSampler(flat_spec({"TEST": [20] * 7}), "test", seed=0)
    assert {sampler.sample().ways for _ in range(300)} == {5, 6, 7}


def test_support_shots_are_imbalanced_and_follow_class_size() -> None:
    spec = flat_spec({"TRAIN": [40] * 5 + [400] * 5})
    sampler = EpisodeDescriptionSampler(spec, "train", seed=0, config=EpisodeConfig(max_ways=10))
    small, large = [], []
    for _ in range(500):
        d = sampler.sample()
        for c, k in zip(d.classes, d.shots, strict=True):
            (small if c < 5 else large).append(k)
    assert np.mean(large) > 2 * np.mean(small)


def test_alphabet_sampler_keeps_one_alphabet() -> None:
    spec = bilevel_spec([5, 12, 30, 60])
    sampler = EpisodeDescriptionSampler(spec, "train", seed=0)
    groups = [set(g) for g in spec.superclasses["TRAIN"]]
    seen = Counter()
    for _ in range(2000):
        d = sampler.sample()
        owner = [i for i, g in enumerate(groups) if set(d.classes) <= g]
        assert len(owner) == 1
        seen[owner[0]] += 1
        assert 5 <= d.ways <= min(50, len(groups[owner[0]]))
    assert min(seen.values()) > 400  # alphabets are drawn uniformly (500 each expected)
    flat = EpisodeDescriptionSampler(spec, "train", seed=0, structure="none")
    assert any(not any(set(flat.sample().classes) <= g for g in groups) for _ in range(50))


def test_alphabet_smaller_than_five_is_an_error() -> None:
    with pytest.raises(DataError, match="a superclass has 4 classes"):
        EpisodeDescriptionSampler(bilevel_spec([5, 4]), "train")


def test_split_with_too_few_classes_is_an_error() -> None:
    with pytest.raises(DataError, match="split TEST has 4 classes"):
        EpisodeDescriptionSampler(flat_spec({"TEST": [20] * 4}), "test")


def test_hierarchy_sampler_draws_the_leaves_of_one_node() -> None:
    # root -> a (leaves l0..l5), b (-> b1 (l6..l9), b2 (l10..l69)); leaves are the classes
    leaves = [f"l{i}" for i in range(70)]
    graph = {
        "root": ["a", "b"],
        "a": leaves[:6],
        "b": ["b1", "b2"],
        "b1": leaves[6:10],
        "b2": leaves[10:70],
        **{leaf: [] for leaf in leaves},
    }
    spec = DatasetSpec("ilsvrc", "hierarchical", leaves, [30] * 70, {"TRAIN": list(range(70))})
    spec.graph = {"TRAIN": graph}
    sampler = EpisodeDescriptionSampler(spec, "train", seed=0)
    # eligible: root (70 leaves), a (6), b (64), b2 (60); b1 spans 4 < 5
    assert sorted(len(g) for g in sampler.groups) == [6, 60, 64, 70]
    from_a = 0
    for _ in range(300):
        d = sampler.sample()
        if d.ways == 6:  # node a: all of its six leaves
            assert set(d.classes) == set(range(6))
            from_a += 1
        else:  # root, b or b2: 50 of their leaves drawn at random
            assert d.ways == 50 and len(set(d.classes)) == 50
    assert 45 < from_a < 110  # one node of four, uniformly: 75 expected
