"""``PrefetchingLoader`` (worker processes, per-batch seeds, resumption) and the benchmark."""

from __future__ import annotations

import itertools

import pytest
import torch

from alfa.data.folder import load_folder
from alfa.data.prefetch import PrefetchingLoader, benchmark_episodes
from alfa.errors import DataError


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture
def lazy_data(writer):
    root = writer.folder({f"class_{i}": 6 for i in range(6)})
    return load_folder(root, image_size=16, in_memory=False)


def test_results_do_not_depend_on_the_number_of_workers(lazy_data):
    plain = list(PrefetchingLoader(lazy_data, 3, 2, 2, 2, seed=7, num_batches=5))
    workers = list(
        PrefetchingLoader(
            lazy_data, 3, 2, 2, 2, seed=7, num_batches=5, num_workers=2, prefetch_factor=2
        )
    )
    assert len(plain) == len(workers) == 5
    assert all(_same(a, b) for a, b in zip(plain, workers, strict=True))
    assert plain[0].support_x.shape == (2, 6, 3, 16, 16)
    assert not torch.equal(plain[0].support_x, plain[1].support_x)


def test_resume_from_state_dict(lazy_data):
    loader = PrefetchingLoader(lazy_data, 3, 1, 1, 1, seed=3)
    taken = list(itertools.islice(iter(loader), 4))
    state = loader.state_dict()
    assert state == {"seed": 3, "next_batch": 4}
    resumed = PrefetchingLoader(lazy_data, 3, 1, 1, 1, seed=3)
    resumed.load_state_dict(state)
    assert _same(next(iter(resumed)), loader.batch(4))
    assert _same(taken[2], resumed.batch(2))
    with pytest.raises(DataError, match="seed 3"):
        PrefetchingLoader(lazy_data, 3, 1, 1, 1, seed=4).load_state_dict(state)


def test_length_and_validation(lazy_data):
    loader = PrefetchingLoader(lazy_data, 2, 1, 1, 1, num_batches=3)
    assert len(loader) == 3
    assert len(list(loader)) == 3 and len(loader) == 0
    with pytest.raises(TypeError):
        len(PrefetchingLoader(lazy_data, 2, 1, 1, 1))
    with pytest.raises(DataError, match="ways=7"):
        PrefetchingLoader(lazy_data, 7, 1, 1, 1)
    with pytest.raises(DataError, match="num_workers"):
        PrefetchingLoader(lazy_data, 2, 1, 1, 1, num_workers=-1)


def test_benchmark_reports_a_rate(lazy_data):
    result = benchmark_episodes(lazy_data, 3, 1, 2, 2, seconds=0.2)
    assert result["episodes_per_second"] > 0
    assert result["episodes"] == 2 * result["batches"] >= 2
    assert result["seconds"] >= 0.2


@pytest.mark.slow
def test_spawned_workers_read_zip_members(writer):
    from alfa.data import load_dataset

    archive = writer.omniglot("images_background", {"Greek": 4}, 3, as_zip=True)
    data = load_dataset(archive, in_memory=False, rotations=True)
    spawned = list(
        PrefetchingLoader(
            data, 3, 1, 1, 2, seed=1, num_batches=3, num_workers=2, multiprocessing_context="spawn"
        )
    )
    local = [PrefetchingLoader(data, 3, 1, 1, 2, seed=1).batch(i) for i in range(3)]
    assert all(_same(a, b) for a, b in zip(spawned, local, strict=True))
