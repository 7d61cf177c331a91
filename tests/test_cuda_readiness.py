"""What would crash, be wrong or crawl on a GPU, shown and checked on the CPU: bfloat16 under
CPU autocast, a compiled CUDA run's optimiser state resumed on the CPU, Meta-Dataset on another
device (the meta device stands in for a GPU), LOCAL_RANK beyond the GPUs, the benchmark's
address-space limit with CUDA, and the GPU-only paths (pooling kernel, uint8 episodes, fixed
ways, cuDNN flags, no graph break)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alfa.cli.main import main
from alfa.engine.meta_learner import MetaOutput
from alfa.errors import ConfigError
from alfa.rules import make_rule
from alfa.runs.checkpoint import load_checkpoint, save_checkpoint
from alfa.runs.runlog import read_metrics
from alfa.typing import TaskBatch
from test_execution import _conv, _images, _learner

ROOT = Path(__file__).resolve().parents[1]


def _autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


# --- 1. bfloat16 convolutions on the fast path ------------------------------------------------


def test_a_bf16_autocast_meta_iteration_of_a_conv_net_runs_and_stays_close():
    """The fast path's convolution backward used to get a bf16 input beside a float32 weight."""
    learner = _learner(_conv())
    assert learner.engine == "fast"
    batch = _images()
    params = [p for p in learner.parameters() if p.requires_grad]
    ref = learner(batch).loss
    ref_grads = torch.autograd.grad(ref, params)
    with _autocast():
        low = learner(batch).loss
    grads = torch.autograd.grad(low, params)
    assert abs(low.item() - ref.item()) <= 0.05 * abs(ref.item())
    for g in grads:
        assert g.dtype == torch.float32 and bool(torch.isfinite(g).all())
    flat, ref_flat = (
        torch.cat([g.flatten() for g in grads]),
        torch.cat([g.flatten() for g in ref_grads]),
    )
    assert torch.nn.functional.cosine_similarity(flat, ref_flat, 0) > 0.95


def test_fast_layer_gradients_keep_the_dtypes_of_their_tensors_under_autocast():
    from alfa.engine.fast.layers import Conv, Linear

    g = torch.Generator().manual_seed(0)
    conv = Conv("w", "b", 1, 1)
    params = {"w": torch.randn(1, 4, 2, 3, 3, generator=g), "b": torch.zeros(1, 4)}
    x = torch.randn(2, 2, 5, 5, generator=g)
    with _autocast():
        y, saved = conv.forward(params, x, None)
        dx, grads = conv.backward(params, saved, torch.ones_like(y))
    assert y.dtype == torch.bfloat16 and dx.dtype == torch.float32
    assert grads["w"].dtype == grads["b"].dtype == torch.float32
    linear = Linear("w", "b")
    params = {"w": torch.randn(1, 3, 4, generator=g), "b": torch.zeros(1, 3)}
    with _autocast():
        y, saved = linear.forward(params, torch.randn(1, 2, 4, generator=g), None)
        dx, grads = linear.backward(params, saved, torch.ones_like(y))
    assert dx.dtype == grads["w"].dtype == grads["b"].dtype == torch.float32


# --- 2. the rules' arithmetic under autocast --------------------------------------------------


def test_weight_decay_survives_autocast():
    """``1 - beta`` with beta = 5e-6 is exactly 1 in bfloat16: the spreading product of the
    eager update used to run in it under autocast, and weight decay vanished."""
    names, shapes = ["a", "b"], [torch.Size([4, 3]), torch.Size([3])]
    rule = make_rule("learned_fixed", names, shapes, 2, lr=0.01, weight_decay=0.0005)
    g = torch.Generator().manual_seed(0)
    params = {n: torch.randn(2, *s, generator=g) for n, s in zip(names, shapes, strict=True)}
    grads = {n: torch.randn(2, *s, generator=g) for n, s in zip(names, shapes, strict=True)}
    no_grads = {n: torch.zeros_like(t) for n, t in grads.items()}
    ref, _ = rule.update(0, params, grads)
    with _autocast():
        low, hyper = rule.update(0, params, grads)
        decayed, _ = rule.update(0, params, no_grads)
    assert float(hyper.beta.detach().min()) == pytest.approx(5e-6)
    for n in names:
        assert low[n].dtype == torch.float32
        assert torch.equal(low[n], ref[n]), n  # the update is float32 arithmetic, as without
        expected = params[n] * (1 - 5e-6)
        torch.testing.assert_close(decayed[n], expected, rtol=1e-7, atol=0)
        assert not torch.equal(decayed[n], params[n])


def test_alfa_generator_reads_float32_layer_means_under_autocast():
    names, shapes = ["a"], [torch.Size([64])]
    rule = make_rule("alfa", names, shapes, 1, generator_init="official")
    params = {"a": torch.full((1, 64), 1.0 + 2**-12)}  # a mean bfloat16 cannot hold
    grads = {"a": torch.full((1, 64), 3e-3)}
    ref = rule.update(0, params, grads)[1]
    with _autocast():
        low = rule.update(0, params, grads)[1]
    assert torch.equal(low.alpha, ref.alpha) and torch.equal(low.beta, ref.beta)


# --- 3. a compiled CUDA run's optimiser state resumed on the CPU ------------------------------

SINUSOID = [
    "configs/sinusoid/alfa_maml.yaml",
    "meta.batch_size=3",
    "model.hidden=[8,8]",
    "meta.steps=2",
    "train.log_every=1",
    "train.val_every=0",
    "train.checkpoint_every=2",
    "train.threads=1",
]


def test_a_capturable_optimiser_state_resumes_on_the_cpu(tmp_path, capsys):
    """``torch.compile`` of the optimiser step on CUDA sets Adam's ``capturable=True``, which is
    saved with the state; loaded as it was, the first CPU step failed an assertion."""
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", *SINUSOID, "train.iterations=4", "--run-dir", str(whole)]) == 0
    assert main(["train", *SINUSOID, "train.iterations=2", "--run-dir", str(part)]) == 0
    path = part / "checkpoints" / "step-0000002.pt"
    state = load_checkpoint(path)
    for group in state["optimizer"]["param_groups"]:  # as a compiled CUDA run saves it
        group.update(capturable=True, foreach=None, fused=None)
    save_checkpoint(path, state)
    assert main(["train", "--resume", str(part), "train.iterations=4", "--no-progress"]) == 0
    capsys.readouterr()
    assert read_metrics(part / "metrics.jsonl") == read_metrics(whole / "metrics.jsonl")
    resumed = load_checkpoint(part / "checkpoints" / "step-0000004.pt")
    group = resumed["optimizer"]["param_groups"][0]
    assert group["capturable"] is False and group["foreach"] is True


def test_the_optimiser_state_keeps_the_resuming_optimisers_flags():
    from alfa.runs.outer_optimizer import adam, load_optimizer_state

    p = torch.nn.Parameter(torch.ones(3))
    saved = adam([p], 0.1, compiled=False)
    p.grad = torch.ones(3)
    saved.step()
    state = saved.state_dict()
    state["param_groups"][0].update(capturable=True, fused=True, foreach=None, lr=0.5)
    fresh = adam([p], 0.1, compiled=False)
    load_optimizer_state(fresh, state)
    group = fresh.param_groups[0]
    assert (group["capturable"], group["fused"], group["foreach"]) == (False, None, True)
    assert group["lr"] == 0.5  # the numbers come from the checkpoint
    fresh.step()
    with pytest.raises(ValueError, match="parameter groups"):
        load_optimizer_state(fresh, {**state, "param_groups": state["param_groups"] * 2})


# --- 4. Meta-Dataset on the run's device -----------------------------------------------------


class _Elsewhere(torch.nn.Module):
    """A stand-in learner whose parameter is on the meta device (not the CPU, as a GPU): it
    records where the episodes it is given are and answers with CPU numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, device="meta"))
        self.seen: list[set[str]] = []

    def forward(self, batch: TaskBatch, **kwargs) -> MetaOutput:
        self.seen.append({t.device.type for t in batch})
        loss = torch.tensor(0.5, requires_grad=True)
        return MetaOutput(loss, loss.detach().reshape(1), [], torch.zeros(1, 1, 5))


def test_metadataset_episodes_go_to_the_learners_device(tmp_path, monkeypatch):
    from alfa.config import load_config
    from alfa.data.metadataset import MetaDatasetSource
    from alfa.paper import metadataset_run
    from test_metadataset_episodes import _config, omniglot_like

    root = omniglot_like(tmp_path / "omni")
    config = load_config(_config(tmp_path, root), ["train.device=cpu"])
    source = MetaDatasetSource(config.data.root, image_size=config.data.image_size)
    learner = _Elsewhere()
    log = metadataset_run.train_source(config, learner, source, tmp_path)  # type: ignore[arg-type]
    assert [line["loss"] for line in log] == [0.5, 0.5]
    monkeypatch.setattr(metadataset_run, "accuracy", lambda out, y: torch.ones(1))
    result = metadataset_run.evaluate_source(config, learner, source)  # type: ignore[arg-type]
    assert result["episodes"] == 4
    assert learner.seen and all(kinds == {"meta"} for kinds in learner.seen)


def test_the_metadataset_loss_is_summed_on_the_losses_device():
    from alfa.tasks.metadataset import meta_batch_loss

    weight = torch.nn.Parameter(torch.ones(2, device="meta"))

    def learner(batch: TaskBatch) -> MetaOutput:
        loss = (weight * 2).sum()
        return MetaOutput(loss, loss.detach().reshape(1), [], torch.zeros(1))

    batch = TaskBatch(*(torch.zeros(1, 1) for _ in range(4)))
    total = meta_batch_loss(learner, [batch, batch])
    assert total.device.type == "meta" and weight.grad is not None


def test_metadataset_eval_only_loads_the_model_onto_the_device(tmp_path, monkeypatch, capsys):
    from alfa.paper import metadataset_run
    from test_metadataset_episodes import _config, omniglot_like

    root = omniglot_like(tmp_path / "omni")
    args = ["--config", _config(tmp_path, root), "--out", str(tmp_path / "run")]
    assert metadataset_run.main([*args, "train.iterations=1"]) == 0
    loads = []
    real = torch.load

    def load(*a, **k):
        loads.append(k.get("map_location"))
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", load)
    assert metadataset_run.main([*args, "--eval-only"]) == 0
    capsys.readouterr()
    assert loads == [torch.device("cpu")]


# --- 5. more processes on a machine than GPUs --------------------------------------------------


def _fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_a_local_rank_without_its_own_gpu_is_refused(monkeypatch):
    from alfa.runs.build import resolve_device
    from alfa.runs.distributed import _backend

    _fake_gpus(monkeypatch, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for name in ("cuda", "auto"):
        with pytest.raises(ConfigError, match=r"^train\.device: cuda: this machine runs 2 proc"):
            resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")  # a CPU job may have any number
    assert _backend(1) == "gloo"  # no NCCL for processes that would share a GPU
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert resolve_device("cuda") == torch.device("cuda")


def test_alfa_train_refuses_it_in_one_line(tmp_path, monkeypatch, capsys):
    _fake_gpus(monkeypatch, 1)
    monkeypatch.setenv("WORLD_SIZE", "1")  # launched by torchrun; one process in this test
    monkeypatch.setenv("LOCAL_RANK", "1")
    run = ["--run-dir", str(tmp_path / "run"), "--no-progress"]
    assert main(["train", *SINUSOID, "train.device=cuda", *run]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("alfa: error: ")]
    assert "Traceback" not in err and len(errors) == 1
    assert "LOCAL_RANK 1" in errors[0] and "has 1 GPU(s)" in errors[0]


# --- 6. the benchmark's address-space limit and CUDA ------------------------------------------


def test_the_benchmark_refuses_an_address_space_limit_with_cuda():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    speed = str(ROOT / "benchmarks" / "speed.py")
    done = subprocess.run(
        [sys.executable, speed, "--device", "cuda", "--json", "--max-memory-gb", "4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("speed.py: error: --max-memory-gb")
    assert done.stderr.count("\n") == 1 and done.stdout == ""


# --- what crawls: the GPU's paths, checked where the CPU can -----------------------------------


def test_off_the_cpu_max_pooling_is_the_kernel():
    from alfa.engine.fast import pooling

    layer = pooling.MaxPool(2, 2, 0)
    x = torch.randn(2, 3, 8, 8)
    y, (_, index) = layer.forward({}, x, None)
    kernel, kernel_index = torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0])
    assert torch.equal(y, kernel) and torch.equal(index, kernel_index)

    def shortcut(*args):
        raise AssertionError("the CPU shortcut ran off the CPU")

    pooling._pool_2x2, real = shortcut, pooling._pool_2x2
    try:
        y, _ = layer.forward({}, x.to("meta"), None)
        with pytest.raises(AssertionError, match="CPU shortcut"):
            layer.forward({}, x, None)
    finally:
        pooling._pool_2x2 = real
    assert y.shape == (2, 3, 4, 4)


def test_a_compiled_random_init_meta_iteration_has_no_graph_break():
    """``requires_grad_`` on the fixed initialisation's copies broke the compiled graph."""
    from alfa.engine.meta_learner import MetaLearner
    from alfa.models import MLP

    torch._dynamo.reset()
    learner = MetaLearner(MLP((8, 8)), "alfa", steps=2, learn_init=False)
    g = torch.Generator().manual_seed(3)
    batch = TaskBatch(*(torch.randn(3, 5, 1, generator=g) for _ in range(4)))
    explained = torch._dynamo.explain(lambda b: learner(b, validate=False).loss)(batch)
    assert explained.graph_break_count == 0, explained.break_reasons


def test_a_fixed_number_of_ways_reads_no_labels():
    """Proto-MAML with N-way episodes: the head's rows are known, no per-batch device read."""
    from alfa.engine.proto_head import HeadInit
    from alfa.models.conv4 import Conv4

    model = Conv4(5, in_channels=1, filters=4, image_size=16)
    head = HeadInit(model, "learned", ways=3)
    params = {n: p.detach().unsqueeze(0).expand(2, *p.shape) for n, p in model.named_parameters()}
    params = {n: t.to("meta") for n, t in params.items()}
    labels = torch.zeros(2, 6, dtype=torch.long, device="meta")  # its values cannot be read
    out = head(params, torch.zeros(2, 6, 1, 16, 16, device="meta"), labels)
    assert out["classifier.weight"].shape[:2] == (2, 3)
    with pytest.raises(ValueError, match=r"ways must be in 1\.\.5"):
        HeadInit(model, "learned", ways=6)


def test_the_run_sets_cudnns_autotuner_for_fixed_shapes_and_tf32_as_asked(monkeypatch):
    from alfa.config import Config, DataConfig, TrainConfig
    from alfa.runs.build import configure_runtime

    _fake_gpus(monkeypatch, 1)
    flags = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
    )
    try:
        config = Config(train=TrainConfig(device="cuda", tf32=True, threads=1))
        assert configure_runtime(config).type == "cuda"
        assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32
        # Meta-Dataset: a new shape every episode, no autotuning
        config = Config(data=DataConfig(name="metadataset"), train=TrainConfig(device="cuda"))
        configure_runtime(config)
        assert not torch.backends.cudnn.benchmark and not torch.backends.cudnn.allow_tf32
    finally:
        (
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
        ) = flags


def test_the_unmarked_suite_sees_no_gpu():
    from alfa.runs.build import resolve_device

    assert not torch.cuda.is_available() and torch.cuda.device_count() == 0
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    assert resolve_device("auto") == torch.device("cpu")


def test_episodes_for_a_gpu_travel_as_uint8_and_are_normalised_where_they_arrive(tmp_path):
    """The uint8 path (normalised on the device the batch goes to; here the CPU stands in)
    gives the float32 batches of the CPU path bit for bit."""
    from alfa.config import load_config
    from alfa.tasks.episodic import EpisodicSource
    from test_classification import _tiny, _write_folder_dataset

    data = _write_folder_dataset(tmp_path / "data")
    for rgb in (True, False):
        extra = [] if rgb else ["data.format=folder"]
        config = load_config(None, [*_tiny(data), "train.device=cpu", *extra])
        plain = EpisodicSource(config)
        raw = EpisodicSource(config, transfer="cpu")
        assert plain.transfer is None and plain.loader.num_workers == 0
        assert raw.loader.batches.raw and not plain.loader.batches.raw
        for _ in range(2):
            a, b = plain.sample(2), raw.sample(2)
            for x, y in zip(a, b, strict=True):
                assert x.dtype == y.dtype and torch.equal(x, y)
        assert raw.loader.batch(5).support_x.dtype == torch.uint8


def test_a_gpu_run_decodes_in_workers_and_pins_uint8_batches(tmp_path, monkeypatch):
    from alfa.config import load_config
    from alfa.tasks.episodic import AUTO_WORKERS, EpisodicSource, default_workers
    from test_classification import _tiny, _write_folder_dataset

    data = _write_folder_dataset(tmp_path / "data")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    source = EpisodicSource(load_config(None, [*_tiny(data), "train.device=cuda"]))
    assert source.transfer == torch.device("cuda")
    assert source.loader.pin_memory and source.loader.batches.raw
    assert source.loader.num_workers == default_workers(True) >= 1
    assert default_workers(True) <= AUTO_WORKERS and default_workers(False) == 0
    explicit = EpisodicSource(
        load_config(None, [*_tiny(data), "train.device=cuda", "data.workers=0"])
    )
    assert explicit.loader.num_workers == 0
    with pytest.raises(ConfigError, match=r"'data\.workers' must be -1 \(automatic\), 0 or more"):
        load_config(None, ["data.workers=-2"])
