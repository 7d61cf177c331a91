"""Training on a GPU (skipped where no CUDA device is present, as in CI): float32 with TF32 off
and on against float64, CUDA graphs recorded and replayed across Adam steps, default-mode
compile, bf16 for a few steps, ``alfa train`` and its resume on CUDA (uint8 episodes decoded by
workers), channels-last and ResNet12 against the reference, fused Adam, and two processes on
two GPUs over NCCL.

``scripts/gpu_check.sh`` runs the tests not marked ``slow`` first and the compiling ones
(``slow``) later in its plan."""

from __future__ import annotations

import copy

import pytest
import torch

from alfa.cli.main import main
from alfa.config import TrainConfig
from alfa.engine.execution import meta_step, optimizer_step
from alfa.runs.build import cuda_settings
from alfa.runs.outer_optimizer import adam
from alfa.runs.runlog import read_metrics
from alfa.typing import TaskBatch
from test_execution import _conv, _learner

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@pytest.fixture(autouse=True)
def _cuda_flags():
    """Every test leaves the backend flags as it found them."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    yield
    (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    ) = saved


def _batches(count: int, tasks: int = 2, size: int = 16, seed: int = 5) -> list[TaskBatch]:
    g = torch.Generator().manual_seed(seed)

    def split(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(tasks, 3 * k, 2, size, size, generator=g)
        return x, torch.arange(3).repeat(k).expand(tasks, -1).contiguous()

    return [TaskBatch(*split(2), *split(3)) for _ in range(count)]


def _loss_and_grads(step, learner, batch):
    out = step(batch)
    params = [p for p in learner.parameters() if p.requires_grad]
    return out.loss.detach(), torch.autograd.grad(out.loss, params)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).abs().max() / b.double().abs().max())


def test_float32_meets_float64_with_tf32_off_and_on():
    """TF32 (``train.tf32``) is off by default; off, float32 on the GPU is float64 to float32
    rounding; on, the products and convolutions lose mantissa bits (and it shows)."""
    learner = _learner(_conv())
    batch = _batches(1)[0]
    exact = copy.deepcopy(learner).double()
    ref_loss, ref_grads = _loss_and_grads(
        exact, exact, TaskBatch(*(t.double() if t.is_floating_point() else t for t in batch))
    )
    results = {}
    for tf32 in (False, True):
        cuda_settings(tf32=tf32, fixed_shapes=True)
        on_gpu = copy.deepcopy(learner).to(CUDA)
        results[tf32] = _loss_and_grads(on_gpu, on_gpu, batch.to(CUDA))
    for tf32, (loss_tol, grad_tol) in {False: (1e-5, 1e-3), True: (2e-2, 5e-2)}.items():
        loss, grads = results[tf32]
        assert abs(float(loss) - float(ref_loss)) <= loss_tol * abs(float(ref_loss)), tf32
        for g, r in zip(grads, ref_grads, strict=True):
            assert _rel(g, r) <= grad_tol, tf32
    off, on = results[False], results[True]
    changed = float(off[0]) != float(on[0]) or any(
        not torch.equal(a, b) for a, b in zip(off[1], on[1], strict=True)
    )
    assert changed  # TF32 was in effect when asked for


def _train_steps(learner, options: TrainConfig, batches, compiled: bool):
    params = [p for p in learner.parameters() if p.requires_grad]
    optimizer = adam(params, 1e-3, compiled=compiled)
    step, update = meta_step(learner, options, CUDA), optimizer_step(optimizer, options)
    losses = []
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        out = step(batch)
        out.loss.backward()
        losses.append(float(out.loss.detach()))
        update()
    return losses


@pytest.mark.slow
def test_cuda_graphs_are_recorded_and_replay_adam_steps_like_eager():
    """``train.cuda_graph``: the graphs must really be recorded (no silent fallback to eager
    kernels) and replaying them between Adam steps must train as eager does."""
    from torch._dynamo.utils import counters
    from torch._inductor import cudagraph_trees

    torch._dynamo.reset()
    counters.clear()
    learner = _learner(_conv()).to(CUDA)
    graphed = copy.deepcopy(learner)
    batches = [b.to(CUDA) for b in _batches(5)]  # warm-up, record, replays
    eager = _train_steps(learner, TrainConfig(), batches, compiled=False)
    replayed = _train_steps(graphed, TrainConfig(cuda_graph=True), batches, compiled=True)
    for a, b in zip(replayed, eager, strict=True):
        assert abs(a - b) <= 1e-4 * abs(b)
    for p, q in zip(graphed.parameters(), learner.parameters(), strict=True):
        assert _rel(p.detach(), q.detach()) <= 1e-3
    assert counters["inductor"]["cudagraph_skips"] == 0
    manager = cudagraph_trees.get_manager(torch.cuda.current_device(), create_if_none_exists=False)
    assert manager is not None
    assert sum(len(nodes) for nodes in manager.roots.values()) >= 1  # recorded graphs


@pytest.mark.slow
def test_default_mode_compile_trains_as_eager_on_cuda():
    torch._dynamo.reset()
    learner = _learner(_conv()).to(CUDA)
    compiled = copy.deepcopy(learner)
    batches = [b.to(CUDA) for b in _batches(3)]
    eager = _train_steps(learner, TrainConfig(), batches, compiled=False)
    graph = _train_steps(compiled, TrainConfig(compile=True), batches, compiled=True)
    for a, b in zip(graph, eager, strict=True):
        assert abs(a - b) <= 1e-4 * abs(b)


def test_bf16_training_stays_close_to_float32_for_a_few_steps():
    """``train.autocast: bf16``: the conv backward in bfloat16, the rule in float32 (weight
    decay kept), Adam on float32 meta-parameters."""
    learner = _learner(_conv()).to(CUDA)
    low = copy.deepcopy(learner)
    batches = [b.to(CUDA) for b in _batches(4)]
    ref = _train_steps(learner, TrainConfig(), batches, compiled=False)
    bf16 = _train_steps(low, TrainConfig(autocast="bf16"), batches, compiled=False)
    assert bf16 != ref  # bfloat16 was in effect
    for a, b in zip(bf16, ref, strict=True):
        assert abs(a - b) <= 0.05 * abs(b)
    for p, q in zip(low.parameters(), learner.parameters(), strict=True):
        assert p.dtype == torch.float32 and bool(torch.isfinite(p).all())
        assert _rel(p.detach(), q.detach()) <= 0.05


def test_fused_adam_on_cuda_steps_as_the_multi_tensor_one():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(7, 5, device=CUDA)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    fused = adam(a, 1e-2, compiled=False)
    assert fused.param_groups[0]["fused"]
    plain = torch.optim.Adam(b, lr=1e-2, foreach=True)
    for _ in range(3):
        for p, q in zip(a, b, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_channels_last_and_resnet12_match_the_reference_on_cuda():
    """Float64 on the GPU: channels-last convolutions, and ResNet12's residual blocks on the
    fast path, against the per-task reference on the CPU."""
    from alfa.models.resnet12 import ResNet12
    from test_reference import (
        build_engine,
        image_batch,
        meta_gradients,
        randomise,
        reference_gradients,
        spec_for,
    )

    torch.manual_seed(5)
    model = ResNet12(3, in_channels=1, channels=(4, 8, 8, 8))
    rule = {"name": "alfa", "generator_init": "official"}
    learner = build_engine(model, rule, task="classification", engine="fast")
    randomise(learner)
    batch = image_batch(size=12)
    ref, ref_grads = reference_gradients(learner, spec_for(rule, task="classification"), batch)
    learner = learner.to(CUDA)
    for channels_last in (False, True):
        learner.functional.channels_last = channels_last
        loss, grads, _ = meta_gradients(learner, batch.to(CUDA))
        torch.testing.assert_close(loss.cpu(), ref.loss.detach(), rtol=1e-9, atol=0)
        scale = max(float(g.abs().max()) for g in ref_grads.values())
        for name, expected in ref_grads.items():
            torch.testing.assert_close(grads[name].cpu(), expected, rtol=1e-7, atol=1e-9 * scale)


def _folder_run(data, *extra: str) -> list[str]:
    from test_classification import _tiny

    return [*_tiny(data, "rule.name=alfa", *extra), "train.log_every=1", "--no-progress"]


def test_episodes_on_cuda_are_the_cpu_episodes(tmp_path):
    """uint8 across the bus, normalised on the GPU: the CPU's float32 batches, bit for bit."""
    from alfa.config import load_config
    from alfa.tasks.episodic import EpisodicSource
    from test_classification import _tiny, _write_folder_dataset

    data = _write_folder_dataset(tmp_path / "data")
    on_gpu = EpisodicSource(load_config(None, [*_tiny(data), "train.device=cuda"]))
    on_cpu = EpisodicSource(load_config(None, [*_tiny(data), "train.device=cpu"]))
    assert on_gpu.loader.num_workers >= 1 and on_gpu.loader.batches.raw
    for _ in range(3):
        a, b = on_gpu.sample(2), on_cpu.sample(2)
        assert a.support_x.device.type == "cuda"
        for x, y in zip(a, b, strict=True):
            assert x.dtype == y.dtype and torch.equal(x.cpu(), y)


def test_alfa_train_on_cuda_matches_the_cpu_and_resumes(tmp_path, capsys):
    from test_classification import _write_folder_dataset

    data = _write_folder_dataset(tmp_path / "data")
    runs = {}
    for name, device in (("cpu", "cpu"), ("cuda", "cuda")):
        runs[name] = tmp_path / name
        args = _folder_run(data, f"train.device={device}", "train.iterations=4")
        assert main(["train", *args, "--run-dir", str(runs[name])]) == 0
    part = tmp_path / "part"
    args = _folder_run(data, "train.device=cuda", "train.iterations=2")
    assert main(["train", *args, "--run-dir", str(part)]) == 0
    assert main(["train", "--resume", str(part), "train.iterations=4", "--no-progress"]) == 0
    capsys.readouterr()

    def losses(run) -> list[float]:
        return [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]

    cpu, cuda, resumed = losses(runs["cpu"]), losses(runs["cuda"]), losses(part)
    assert len(cpu) == len(cuda) == len(resumed) == 4
    for a, b in zip(cuda, cpu, strict=True):  # float32, TF32 off: rounding apart
        assert abs(a - b) <= 1e-3 * abs(b)
    for a, b in zip(resumed, cuda, strict=True):  # cuDNN's autotuner may pick other kernels
        assert abs(a - b) <= 1e-5 * abs(b)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_processes_on_two_gpus_train_as_one(tmp_path):
    """``torchrun --nproc-per-node 2``: one GPU per process, NCCL's all_reduce, the same run as
    one process on one GPU."""
    from test_distributed_launch import TINY, _torchrun

    args = [*TINY, "train.device=cuda", "train.iterations=4"]
    two = _torchrun("-m", "alfa", "train", *args, "--run-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert main(["train", *args, "--run-dir", str(tmp_path / "one"), "--no-progress"]) == 0
    one = read_metrics(tmp_path / "one" / "metrics.jsonl")
    both = read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert len(one) == len(both) == 4
    for a, b in zip(both, one, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(b["loss"])
