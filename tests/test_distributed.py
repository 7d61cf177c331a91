"""Data-parallel meta-training (alfa.runs.distributed) with gloo on the CPU: 2 processes equal 1.

One 2-process job (``runs`` fixture) trains 20 meta-iterations of ALFA on sinusoid (float64)
and of a small 4-CONV on the real minimal Omniglot set (float64 too: in float32 the rounding
noise in the meta-gradient of a convolution bias that BatchNorm cancels is as large as Adam's
epsilon, so Adam turns it into full steps that differ between any two summation orders),
resumes a 1-process run with 2 processes, evaluates with the test tasks shared, then diverges
on one rank and finally loses a rank; the single-process runs it is compared with are trained
here, in the test process.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch

from alfa.errors import ConfigError
from alfa.runs.checkpoint import load_checkpoint
from alfa.runs.distributed import World, share
from alfa.runs.rundir import lock_run_dir, unlock_run_dir
from alfa.runs.runlog import read_metrics
from distributed_helpers import launch, run_job
from shared_paths import OMNIGLOT_CONFIGS, REAL_OMNIGLOT, real_omniglot_overrides

SINUSOID = [
    "rule.name=alfa",
    "meta.batch_size=4",
    "meta.steps=2",
    "model.hidden=[8,8]",
    "train.iterations=20",
    "train.log_every=1",
    "train.val_every=10",
    "train.val_tasks=20",
    "eval.batch=5",
    "train.checkpoint_every=10",
    "train.threads=1",
    "seed=3",
]
OMNIGLOT_TINY = [
    "model.filters=8",
    "meta.batch_size=4",
    "meta.steps=1",
    "data.query=2",
    "data.test_query=2",
    "train.iterations=20",
    "train.log_every=1",
    "train.val_every=0",
    "train.checkpoint_every=10",
    "train.threads=1",
]
FINAL = "step-0000020.pt"


def _train(run_dir: Path, overrides: list[str], **job) -> dict:
    return {"kind": "train", "overrides": overrides, "run_dir": str(run_dir), **job}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    omniglot = None
    if (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        omniglot = [*real_omniglot_overrides(), *OMNIGLOT_TINY]
    config = str(OMNIGLOT_CONFIGS / "maml_5way_1shot.yaml")
    previous = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = {"one": run_job(_train(root / "one", SINUSOID, dtype="float64"))}
        last_loss = _losses(root / "one")[-1]
        half = [*SINUSOID, "train.iterations=10"]
        run_job(_train(root / "half", half, dtype="float64"))
        shutil.copytree(root / "half", root / "half-2")
        if omniglot:
            run_job(_train(root / "omni-one", omniglot, config=config, dtype="float64"))
    finally:
        torch.set_default_dtype(previous[0])
        torch.set_num_threads(previous[1])
    jobs = [
        _train(root / "two", SINUSOID, dtype="float64"),
        _train(root / "half-2", ["train.iterations=20"], resume=True, dtype="float64"),
        {"kind": "eval", "run_dir": str(root / "two"), "tasks": 30, "batch": 7},
        _train(root / "nan", SINUSOID, fault=("nan", 1, 3)),
        _train(root / "one", ["train.iterations=30"], resume=True),  # while this process holds it
        *(
            [_train(root / "omni-two", omniglot, config=config, dtype="float64")]
            if omniglot
            else []
        ),
        _train(root / "dead", SINUSOID, fault=("exit", 1, 5)),
    ]
    started = time.monotonic()
    held = lock_run_dir(root / "one")
    try:
        ranks = launch(2, jobs, root / "out", timeout=60.0)  # slow dataset loads under load
    finally:
        unlock_run_dir(held, root / "one")
    return {
        "root": root,
        "single": single,
        "single_last_loss": last_loss,
        "ranks": ranks,
        "seconds": time.monotonic() - started,
        "omniglot": omniglot is not None,
    }


def _losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == "train"]


def _assert_same_run(a: Path, b: Path, tol: float = 1e-6) -> None:
    """Same training losses at every iteration and same final meta-parameters (to ``tol``)."""
    one, two = _losses(a), _losses(b)
    assert len(one) == len(two) == 20
    assert max(abs(x - y) for x, y in zip(one, two, strict=True)) < tol
    left = load_checkpoint(a / "checkpoints" / FINAL)["learner"]
    right = load_checkpoint(b / "checkpoints" / FINAL)["learner"]
    assert left.keys() == right.keys()
    for key in left:
        assert left[key].dtype == right[key].dtype
        assert torch.allclose(left[key], right[key], rtol=0, atol=tol), key
    # the runs moved: the comparison is not between two untrained learners
    start = load_checkpoint(a / "checkpoints" / "step-0000010.pt")["learner"]
    assert any(not torch.equal(start[k], left[k]) for k in left)


def test_two_processes_train_sinusoid_alfa_as_one(runs):
    root, ranks = runs["root"], runs["ranks"]
    assert (
        ranks[0][0]
        == ranks[1][0]
        == {"iteration": 20, "status": "finished", "best": ranks[0][0]["best"]}
    )
    _assert_same_run(root / "one", root / "two")
    assert abs(ranks[0][0]["best"] - runs["single"]["one"]["best"]) < 1e-9
    # float64: far closer than the contract
    _assert_same_run(root / "one", root / "two", tol=1e-10)


def test_only_rank_0_writes_and_prints(runs):
    root = runs["root"]
    records = read_metrics(root / "two" / "metrics.jsonl")
    assert [r["iteration"] for r in records if r["split"] == "train"] == list(range(1, 21))
    assert [r["iteration"] for r in records if r["split"] == "val"] == [10, 20]
    assert len(list((root / "two" / "tensorboard").iterdir())) == 1
    assert not (root / "two" / ".lock").exists()
    out = root / "out"
    assert "iteration 20/20" in (out / "rank-0.err").read_text()
    assert "iteration" not in (out / "rank-1.err").read_text()


def test_a_one_process_run_resumes_with_two(runs):
    assert runs["ranks"][0][1]["iteration"] == 20
    _assert_same_run(runs["root"] / "one", runs["root"] / "half-2", tol=1e-10)


def test_a_two_process_run_resumes_with_one(runs):
    root = runs["root"]
    back = root / "two-then-one"
    shutil.copytree(root / "two", back)
    (back / "checkpoints" / FINAL).unlink()  # as if the job had died after iteration 10
    previous = torch.get_default_dtype()
    try:
        run_job(_train(back, [], resume=True, dtype="float64"))
    finally:
        torch.set_default_dtype(previous)
    _assert_same_run(root / "one", back, tol=1e-10)


def test_sharded_eval_gives_the_single_process_result_exactly(runs):
    ranks = runs["ranks"]
    single = run_job(
        {"kind": "eval", "run_dir": str(runs["root"] / "two"), "tasks": 30, "batch": 7}
    )
    for rank in (0, 1):
        shared = ranks[rank][2]
        assert shared["per_task"] == single["per_task"]  # 5 chunks of 7 tasks, 3 + 2 per rank
        assert shared["mean"] == single["mean"] and shared["ci95"] == single["ci95"]
    assert len(single["per_task"]) == 30


def test_two_processes_train_omniglot_conv4_as_one(runs):
    if not runs["omniglot"]:
        pytest.skip("real Omniglot zips not available")
    assert runs["ranks"][0][5]["iteration"] == 20
    _assert_same_run(runs["root"] / "omni-one", runs["root"] / "omni-two")


def test_a_divergence_on_one_rank_stops_every_rank_with_one_message(runs):
    ranks, root = runs["ranks"], runs["root"]
    seen = [ranks[0][3], ranks[1][3]]
    assert [s["error"] for s in seen] == ["DivergenceError", "DivergenceError"]
    assert seen[0]["message"] == seen[1]["message"]
    assert all(s["every_rank"] for s in seen)  # printed by rank 0 alone
    message = seen[0]["message"]
    # rank 1 holds tasks 2 and 3 of the meta-batch; its last task's targets are NaN
    assert "iteration 3: non-finite query loss" in message
    assert "task 3 (seen by rank 1)" in message
    events = [r for r in read_metrics(root / "nan" / "metrics.jsonl") if r["split"] == "event"]
    assert [e["iteration"] for e in events] == [3]


def test_a_dead_rank_stops_the_others_with_a_clear_message(runs):
    ranks = runs["ranks"]
    assert len(ranks[1]) == len(ranks[0]) - 1  # rank 1 ended inside the last job
    error = ranks[0][-1]
    assert error["error"] == "PeerError"
    assert error["message"].startswith("rank 0: averaging the meta-gradients failed")
    assert "another process of the job stopped or did not answer within 60 s" in error["message"]
    assert error["seconds"] < 60  # a dead peer is noticed at once, a hung one after the timeout


@pytest.mark.parametrize(
    ("tasks", "size", "expected"), [(4, 2, [(0, 2), (2, 4)]), (6, 3, [(0, 2), (2, 4), (4, 6)])]
)
def test_share_splits_the_meta_batch_in_contiguous_equal_parts(tasks, size, expected):
    assert [share(tasks, World(rank, size)) for rank in range(size)] == expected


def test_a_meta_batch_the_processes_cannot_share_is_refused():
    with pytest.raises(ConfigError, match=r"'meta\.batch_size' is 5, which the 2 processes"):
        share(5, World(1, 2))


def test_resuming_a_run_another_process_holds_is_refused_on_every_rank(runs):
    seen = [runs["ranks"][0][4], runs["ranks"][1][4]]
    for found in seen:
        assert found["error"] == "AlfaError" and found["every_rank"]
        assert found["message"] == (
            f"run directory '{runs['root'] / 'one'}' is in use by another 'alfa train' process"
        )
    assert _losses(runs["root"] / "one")[-1] == runs["single_last_loss"]  # untouched


def _images(classes: int = 12, per_class: int = 6):
    from alfa.data import TensorImageDataset

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (classes * per_class, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return TensorImageDataset([f"c{i}" for i in range(classes)], images, labels)


def test_a_share_of_an_image_meta_batch_is_the_slice_of_the_whole_one():
    from alfa.data import PrefetchingLoader

    dataset = _images()
    whole = PrefetchingLoader(dataset, 3, 1, 2, 6, seed=4)
    parts = [PrefetchingLoader(dataset, 3, 1, 2, 6, seed=4) for _ in range(3)]
    for rank, loader in enumerate(parts):
        loader.share(2 * rank, 2 * rank + 2)
    streams = [iter(loader) for loader in parts]
    for full in (next(iter(whole)), next(iter(whole))):  # meta-batches 0 and 1
        shares = [next(stream) for stream in streams]
        for field, value in enumerate(full):
            assert torch.equal(torch.cat([s[field] for s in shares]), value)
    assert all(loader.next_batch == whole.next_batch == 2 for loader in parts)


def test_a_share_of_a_sinusoid_meta_batch_is_the_slice_of_the_whole_one():
    from alfa.config import load_config
    from alfa.tasks.source import SinusoidSource

    config = load_config(None, ["meta.batch_size=4", "seed=2"])
    whole, half = SinusoidSource(config), SinusoidSource(config)
    half.share(2, 4)
    for _ in range(2):
        full, part = whole.sample(4), half.sample(4)
        for a, b in zip(full, part, strict=True):
            assert torch.equal(a[2:4], b)
    assert torch.equal(whole.state_dict()["generator"], half.state_dict()["generator"])


@pytest.mark.slow
def test_a_hung_rank_stops_the_others_after_the_timeout(tmp_path):
    """Rank 1 stops answering in iteration 3 for 4 times the timeout; rank 0 stops after the
    timeout, long before rank 1 wakes up. Measured from the moment rank 1 stopped answering,
    not from the start of the job, so a slow start on a busy machine does not count."""
    timeout = 2.0
    hang = 4 * timeout
    job = _train(tmp_path / "hung", SINUSOID, fault=("hang", 1, 3, hang))
    ranks = launch(2, [job], tmp_path / "out", timeout=timeout)
    error = ranks[0][0]
    assert error["error"] == "PeerError", error
    assert "did not answer within 2 s" in error["message"]
    hung_at = float((tmp_path / "out" / "hang-1.txt").read_text())
    waited = error["ended_at"] - hung_at
    assert timeout / 2 <= waited < hang, waited  # it did not wait for rank 1 to wake up
    assert ranks[1][0]["error"] == "PeerError"  # rank 1 finds rank 0 gone when it wakes
