"""Random affine jitter of training images (``alfa.data.augment``, ``data.jitter_*``)."""

from __future__ import annotations

import math

import pytest
import torch

from alfa.config import load_config
from alfa.config.load import validate
from alfa.data.augment import AffineJitter, affine
from alfa.data.episodes import derive_seed, jitter_stream_seed
from alfa.data.few_shot import FewShotEpisodes
from alfa.data.folder import load_folder
from alfa.data.prefetch import PrefetchingLoader
from alfa.errors import ConfigError, DataError
from alfa.tasks.episodic import EpisodicSource
from shared_paths import OMNIGLOT_CONFIGS, real_omniglot_overrides


def _images(n: int = 3, side: int = 7, channels: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8)


def _still(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.zeros(n), torch.ones(n), torch.zeros(n, 2)


def test_the_identity_map_returns_the_images_unchanged():
    x = _images(channels=3)
    assert torch.equal(affine(x, *_still(3)), x)


def test_a_shift_by_whole_pixels_moves_the_drawing_and_repeats_the_border():
    x = _images()
    degrees, scale, _ = _still(3)
    right = affine(x, degrees, scale, torch.tensor([[1 / 7, 0.0]] * 3))
    assert torch.equal(right[..., 1:], x[..., :-1])  # column j shows column j - 1
    assert torch.equal(right[..., 0], x[..., 0])  # the left border is repeated
    down = affine(x, degrees, scale, torch.tensor([[0.0, 2 / 7]] * 3))
    assert torch.equal(down[..., 2:, :], x[..., :-2, :])
    assert torch.equal(down[..., :2, :], x[..., :1, :].expand(-1, -1, 2, -1))


def test_quarter_turns_are_counter_clockwise_as_displayed():
    x = _images()
    _, scale, shift = _still(3)
    assert torch.equal(affine(x, torch.full((3,), 90.0), scale, shift), torch.rot90(x, 1, (2, 3)))
    assert torch.equal(affine(x, torch.full((3,), 180.0), scale, shift), torch.flip(x, (2, 3)))


def test_a_zoom_by_two_interpolates_as_computed_by_hand():
    # 4 columns 0, 40, 80, 120. Output column i (centre (2i + 1) / 4 - 1 in [-1, 1]) reads the
    # input at half that, which is input column 0.75, 1.25, 1.75, 2.25:
    # 0.25*0 + 0.75*40 = 30, 0.75*40 + 0.25*80 = 50, 70, 0.75*80 + 0.25*120 = 90.
    x = torch.tensor([0, 40, 80, 120], dtype=torch.uint8).expand(1, 1, 4, 4).contiguous()
    zoomed = affine(x, torch.zeros(1), torch.full((1,), 2.0), torch.zeros(1, 2))
    assert zoomed[0, 0].tolist() == [[30, 50, 70, 90]] * 4


def test_draws_fill_their_ranges_and_repeat_with_the_seed():
    jitter = AffineJitter(degrees=10.0, shift=0.1, scale=0.2)
    degrees, scale, shift = jitter.draw(4000, torch.Generator().manual_seed(0))
    assert degrees.abs().max() <= 10 and degrees.abs().max() > 9.9
    assert (scale - 1).abs().max() <= 0.2 and (scale - 1).abs().max() > 0.19
    assert shift.abs().max() <= 0.1 and shift.abs().max() > 0.099
    assert abs(float(degrees.mean())) < 0.5  # centred (the mean of 4000 draws is within 0.3)
    again = jitter.draw(4000, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((degrees, scale, shift), again, strict=True))
    x = _images(5, 12)
    moved = jitter(x, torch.Generator().manual_seed(1))
    assert moved.dtype == torch.uint8 and moved.shape == x.shape and not torch.equal(moved, x)
    assert not AffineJitter() and AffineJitter()(x, torch.Generator()) is x


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        ({"degrees": -1.0}, "jitter degrees must be between 0 and 180"),
        ({"shift": 0.6}, "jitter shift must be between 0 and 0.5"),
        ({"scale": math.nan}, "jitter scale must be between 0 and 0.9"),
        ({"degrees": True}, "jitter degrees must be a number"),
    ],
)
def test_impossible_ranges_are_refused_by_name(ranges, message):
    with pytest.raises(DataError, match=message):
        AffineJitter(**ranges)


@pytest.fixture
def folder_data(writer):
    return load_folder(writer.folder({f"class_{i}": 6 for i in range(6)}), image_size=16)


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_jittered_stream_draws_the_same_tasks_and_keeps_its_guarantees(folder_data):
    jitter = AffineJitter(degrees=15.0, shift=0.1, scale=0.1)
    plain = PrefetchingLoader(folder_data, 3, 1, 2, 4, seed=5)
    moved = PrefetchingLoader(folder_data, 3, 1, 2, 4, seed=5, jitter=jitter)
    assert _same(plain.batch(0), PrefetchingLoader(folder_data, 3, 1, 2, 4, seed=5).batch(0))
    assert _same(
        plain.batch(0),
        PrefetchingLoader(folder_data, 3, 1, 2, 4, seed=5, jitter=AffineJitter()).batch(0),
    )
    a, b = plain.batch(2), moved.batch(2)
    assert torch.equal(a.support_y, b.support_y) and torch.equal(a.query_y, b.query_y)
    assert not torch.equal(a.support_x, b.support_x)
    # every image is the unjittered one under its own map, drawn from the task's own stream
    raw = PrefetchingLoader(folder_data, 3, 1, 2, 4, seed=5, raw=True)
    task_seed = derive_seed(jitter_stream_seed(derive_seed(5, 2)), 1)
    unjittered = raw.batch(2)
    grouped = torch.cat(
        [unjittered.support_x[1].unflatten(0, (3, 1)), unjittered.query_x[1].unflatten(0, (3, 2))],
        dim=1,
    ).flatten(0, 1)  # the task's images in the order they were read: class by class
    expected = jitter(grouped, torch.Generator().manual_seed(task_seed)).unflatten(0, (3, 3))
    got = PrefetchingLoader(folder_data, 3, 1, 2, 4, seed=5, raw=True, jitter=jitter).batch(2)
    assert torch.equal(got.support_x[1], expected[:, :1].flatten(0, 1))
    assert torch.equal(got.query_x[1], expected[:, 1:].flatten(0, 1))
    # one process's share of the meta-batch is the slice of the whole one
    shared = PrefetchingLoader(folder_data, 3, 1, 2, 4, seed=5, jitter=jitter)
    shared.share(1, 3)
    assert all(
        torch.equal(part, whole[1:3])
        for part, whole in zip(shared.batch(2), moved.batch(2), strict=True)
    )
    # worker processes and a resume give the same batches
    workers = PrefetchingLoader(
        folder_data, 3, 1, 2, 4, seed=5, jitter=jitter, num_batches=3, num_workers=2
    )
    assert all(_same(w, moved.batch(i)) for i, w in enumerate(workers))
    resumed = PrefetchingLoader(folder_data, 3, 1, 2, 4, seed=5, jitter=jitter)
    resumed.load_state_dict({"seed": 5, "next_batch": 2})
    assert _same(next(iter(resumed)), moved.batch(2))


def test_few_shot_episodes_jitter_training_tasks_only(folder_data):
    jitter = AffineJitter(degrees=20.0)
    kwargs = {"val": folder_data, "ways": 3, "shots": 1, "query": 2, "meta_batch": 2}
    plain = FewShotEpisodes(folder_data, **kwargs)
    moved = FewShotEpisodes(folder_data, jitter=jitter, **kwargs)
    assert not torch.equal(plain.sample(2).support_x, moved.sample(2).support_x)
    assert _same(next(plain.fixed("val", 3, 0, 3)), next(moved.fixed("val", 3, 0, 3)))


def test_config_keys_jitter_training_images_of_a_run_and_are_validated():
    base = [*real_omniglot_overrides(), "data.name=omniglot", "data.image_size=28"]
    config = OMNIGLOT_CONFIGS / "maml_20way_1shot.yaml"
    plain = EpisodicSource(load_config(config, base))
    moved = EpisodicSource(
        load_config(config, [*base, "data.jitter_degrees=10", "data.jitter_shift=0.05"])
    )
    a, b = (
        plain.sample(plain.loader.batches.meta_batch),
        moved.sample(moved.loader.batches.meta_batch),
    )
    assert torch.equal(a.query_y, b.query_y) and not torch.equal(a.query_x, b.query_x)
    assert _same(next(plain.fixed("val", 2, 0, 2)), next(moved.fixed("val", 2, 0, 2)))
    assert _same(next(plain.fixed("test", 2, 0, 2)), next(moved.fixed("test", 2, 0, 2)))
    with pytest.raises(ConfigError, match=r"'data.jitter_shift' must be between 0 and 0.5"):
        validate(load_config(config, [*base, "data.jitter_shift=0.7"]))
    with pytest.raises(ConfigError, match=r"'data.jitter_degrees' jitters images .* sinusoid"):
        validate(load_config(None, ["data.jitter_degrees=5"]))
