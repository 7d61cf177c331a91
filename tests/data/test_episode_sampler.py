"""Episode sampling: label layout, disjointness, determinism, resumption, fixed sets, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alfa.data.dataset import TensorImageDataset
from alfa.data.episodes import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EpisodeSampler,
    derive_seed,
    fixed_episodes,
)
from alfa.errors import DataError


def tagged_dataset(counts: list[int], channels: int = 1) -> TensorImageDataset:
    """Each image's two pixels spell its global row id, so samples can be traced back."""
    rows = sum(counts)
    ids = torch.arange(rows)
    images = torch.zeros(rows, channels, 1, 2, dtype=torch.uint8)
    images[:, :, 0, 0] = (ids // 256).to(torch.uint8)[:, None]
    images[:, :, 0, 1] = (ids % 256).to(torch.uint8)[:, None]
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    names = [f"class_{i}" for i in range(len(counts))]
    return TensorImageDataset(names, images, labels, source="tagged")


def row_ids(x: torch.Tensor) -> torch.Tensor:
    """Invert :func:`tagged_dataset` for float images in [0, 1] (normalise='none')."""
    pix = (x[:, 0, 0, :] * 255).round().long()  # [rows, 2] of the first channel
    return pix[:, 0] * 256 + pix[:, 1]


@st.composite
def task_shapes(draw):
    shots = draw(st.integers(1, 4))
    query = draw(st.integers(0, 4))
    classes = draw(st.integers(2, 7))
    counts = draw(
        st.lists(st.integers(shots + query, shots + query + 5), min_size=classes, max_size=classes)
    )
    ways = draw(st.integers(1, classes))
    return counts, ways, shots, query, draw(st.integers(0, 2**32)), draw(st.integers(1, 3))


@settings(max_examples=60, deadline=None)
@given(task_shapes())
def test_task_structure(shape):
    counts, ways, shots, query, seed, meta_batch = shape
    data = tagged_dataset(counts)
    owner = data.labels
    batch = EpisodeSampler(data, ways, shots, query, generator=seed).sample(meta_batch)
    assert batch.support_x.shape == (meta_batch, ways * shots, 1, 1, 2)
    assert batch.query_x.shape == (meta_batch, ways * query, 1, 1, 2)
    assert batch.support_x.dtype == torch.float32 and batch.support_y.dtype == torch.long
    for t in range(meta_batch):
        s_ids, q_ids = row_ids(batch.support_x[t]), row_ids(batch.query_x[t])
        for ys, k in ((batch.support_y[t], shots), (batch.query_y[t], query)):
            assert torch.equal(torch.bincount(ys, minlength=ways), torch.full((ways,), k))
        both = torch.cat([s_ids, q_ids])
        assert both.unique().numel() == both.numel()  # no repeats, support and query disjoint
        ys = torch.cat([batch.support_y[t], batch.query_y[t]])
        classes = owner[both]
        label_to_class = {int(y): int(c) for y, c in zip(ys, classes, strict=True)}
        assert all(label_to_class[int(y)] == int(c) for y, c in zip(ys, classes, strict=True))
        assert len(set(label_to_class.values())) == ways  # distinct classes per label


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**40), st.integers(1, 3))
def test_same_seed_same_tasks_different_seed_different_tasks(seed, meta_batch):
    data = tagged_dataset([10] * 6)
    a = EpisodeSampler(data, 5, 2, 3, generator=seed).sample(meta_batch)
    b = EpisodeSampler(data, 5, 2, 3, generator=seed).sample(meta_batch)
    c = EpisodeSampler(data, 5, 2, 3, generator=seed + 1).sample(meta_batch)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a.support_x, c.support_x)


def test_label_permutation_varies_between_tasks():
    data = tagged_dataset([6] * 5)
    sampler = EpisodeSampler(data, 5, 1, 1, generator=3)
    firsts = {int(data.labels[row_ids(sampler.sample(1).support_x[0])[0]]) for _ in range(30)}
    assert len(firsts) > 1  # label 0 is not always the same class


def test_global_rng_is_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    EpisodeSampler(tagged_dataset([5] * 4), 3, 2, 2, generator=0).sample(4)
    assert torch.equal(before, torch.get_rng_state())


def test_explicit_generator_is_used_and_advanced():
    data = tagged_dataset([5] * 4)
    gen = torch.Generator().manual_seed(9)
    first = EpisodeSampler(data, 3, 1, 1, generator=gen).sample(2)
    again = EpisodeSampler(data, 3, 1, 1, generator=torch.Generator().manual_seed(9)).sample(2)
    assert torch.equal(first.support_x, again.support_x)
    assert not torch.equal(gen.get_state(), torch.Generator().manual_seed(9).get_state())


def test_state_dict_resumes_exactly():
    data = tagged_dataset([8] * 6)
    sampler = EpisodeSampler(data, 4, 2, 2, generator=42)
    sampler.sample(3)
    state = sampler.state_dict()
    expected = [sampler.sample(2) for _ in range(3)]
    resumed = EpisodeSampler(data, 4, 2, 2, generator=0)
    resumed.load_state_dict(state)
    assert resumed.tasks_sampled == 3
    for want in expected:
        got = resumed.sample(2)
        assert all(torch.equal(x, y) for x, y in zip(got, want, strict=True))
    with pytest.raises(DataError, match=r"\(4, 2, 2\)"):
        EpisodeSampler(data, 3, 2, 2).load_state_dict(state)


def test_fixed_episodes_are_reproducible_and_batch_size_invariant():
    data = tagged_dataset([7] * 8)
    one = fixed_episodes(data, 5, 1, 2, num_tasks=10, seed=5)
    assert len(one) == 10 and one[0].num_tasks == 1
    again = list(fixed_episodes(data, 5, 1, 2, num_tasks=10, seed=5))
    assert all(torch.equal(a.query_x, b.query_x) for a, b in zip(one, again, strict=True))
    batched = fixed_episodes(data, 5, 1, 2, num_tasks=10, seed=5, batch_size=4)
    assert [b.num_tasks for b in batched] == [4, 4, 2]
    stacked = torch.cat([b.support_x for b in batched])
    assert torch.equal(stacked, torch.cat([b.support_x for b in one]))
    other = fixed_episodes(data, 5, 1, 2, num_tasks=10, seed=6)
    assert not torch.equal(other[0].support_x, one[0].support_x)
    assert torch.equal(one[-1].support_x, one[9].support_x)
    with pytest.raises(IndexError):
        one[10]


def test_derive_seed_mixes():
    seeds = {derive_seed(s, i) for s in range(20) for i in range(20)}
    assert len(seeds) == 400
    assert derive_seed(1, 0) != derive_seed(0, 1)
    assert all(0 <= s < 2**63 for s in seeds)


def test_imagenet_and_none_normalisation():
    images = torch.full((4, 3, 2, 2), 255, dtype=torch.uint8)
    data = TensorImageDataset(["a", "b"], images, torch.tensor([0, 0, 1, 1]))
    auto = EpisodeSampler(data, 2, 1, 1).sample(1)
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert torch.allclose(auto.support_x[0, 0, :, 0, 0], torch.tensor(expected))
    plain = EpisodeSampler(data, 2, 1, 1, normalise="none").sample(1)
    assert torch.equal(plain.support_x, torch.ones_like(plain.support_x))
    grey = tagged_dataset([3, 3])
    assert EpisodeSampler(grey, 2, 1, 1).spec.normalise == "none"
    with pytest.raises(DataError, match="3-channel"):
        EpisodeSampler(grey, 2, 1, 1, normalise="imagenet")
    with pytest.raises(DataError, match="'zscore'"):
        EpisodeSampler(grey, 2, 1, 1, normalise="zscore")


def test_too_many_ways_names_the_values():
    data = tagged_dataset([5] * 4)
    with pytest.raises(DataError, match=r"ways=5 .* only 4 classes"):
        EpisodeSampler(data, 5, 1, 1)
    with pytest.raises(DataError, match=r"ways=5"):
        fixed_episodes(data, 5, 1, 1, num_tasks=3, seed=0)


def test_too_few_images_names_the_class():
    data = tagged_dataset([20, 20, 7, 20])
    with pytest.raises(DataError, match=r"'class_2' .* 7 images.*5 \+ 15 = 20"):
        EpisodeSampler(data, 3, 5, 15)


@pytest.mark.parametrize(
    ("ways", "shots", "query"), [(0, 1, 1), (2, 0, 1), (2, 1, -1), (2.0, 1, 1), (True, 1, 1)]
)
def test_bad_counts(ways, shots, query):
    with pytest.raises(DataError):
        EpisodeSampler(tagged_dataset([5] * 3), ways, shots, query)


def test_real_omniglot_twenty_way_episodes(real_omniglot_data):
    batch = EpisodeSampler(real_omniglot_data, 20, 1, 5, generator=0).sample(4)
    assert batch.support_x.shape == (4, 20, 1, 28, 28)
    assert batch.query_x.shape == (4, 100, 1, 28, 28)
    assert float(batch.support_x.min()) >= 0.0 and float(batch.support_x.max()) <= 1.0
