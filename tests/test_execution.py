"""Execution options of the training meta-iteration (``alfa.engine.execution``): they change how the
meta-iteration runs, never what it computes (bf16 within its rounding)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from alfa.config import TrainConfig
from alfa.engine.execution import check_execution, meta_step
from alfa.engine.functional import FunctionalModel
from alfa.engine.meta_learner import MetaLearner
from alfa.errors import ConfigError
from alfa.models import MLP
from alfa.models.conv4 import Conv4
from alfa.rules import ALFA
from alfa.typing import TaskBatch

CPU = torch.device("cpu")


def _learner(model, engine="auto", task="classification") -> MetaLearner:
    torch.manual_seed(0)
    functional = FunctionalModel(model)
    shapes = [p.shape for p in functional.initial().values()]
    rule = ALFA(functional.names, shapes, 2, lr=0.1, generator_init="official")
    return MetaLearner(model, rule, task=task, steps=2, engine=engine)


def _conv() -> Conv4:
    torch.manual_seed(0)
    return Conv4(3, in_channels=2, filters=4, image_size=16)


def _images(tasks=2) -> TaskBatch:
    g = torch.Generator().manual_seed(2)

    def split(k):
        x = torch.randn(tasks, 3 * k, 2, 16, 16, generator=g)
        return x, torch.arange(3).repeat(k).expand(tasks, -1).contiguous()

    return TaskBatch(*split(2), *split(3))


def _meta(step, learner, batch):
    out = step(batch)
    params = [p for p in learner.parameters() if p.requires_grad]
    return out.loss, torch.autograd.grad(out.loss, params)


def test_eager_step_is_the_learner_forward():
    learner = _learner(_conv())
    batch = _images()
    loss, grads = _meta(meta_step(learner, TrainConfig(), CPU), learner, batch)
    ref_loss, ref_grads = _meta(learner, learner, batch)
    assert loss.item() == ref_loss.item()
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads, strict=True))


@pytest.mark.usefixtures("float64")
def test_channels_last_computes_the_same_meta_gradient():
    batch = _images()
    learner = _learner(_conv())
    ref_loss, ref_grads = _meta(learner, learner, batch)
    step = meta_step(learner, TrainConfig(channels_last=True), CPU)
    assert learner.functional.channels_last
    loss, grads = _meta(step, learner, batch)
    assert abs(loss.item() - ref_loss.item()) <= 1e-12 * abs(ref_loss.item())
    for a, b in zip(grads, ref_grads, strict=True):
        assert (a - b).abs().max().item() <= 1e-10 * b.abs().max().item() + 1e-14


def test_bf16_autocast_needs_cuda():
    learner = _learner(_conv())
    with pytest.raises(ConfigError, match=r"^train\.autocast: bf16 needs a CUDA device"):
        meta_step(learner, TrainConfig(autocast="bf16"), CPU)


def test_compile_needs_the_fast_path():
    learner = _learner(_conv(), engine="generic")
    with pytest.raises(ConfigError, match=r"^train\.compile: .*fast path"):
        check_execution(TrainConfig(compile=True), learner, CPU)
    with pytest.raises(ConfigError, match=r"^train\.channels_last: "):
        check_execution(TrainConfig(channels_last=True), learner, CPU)


def test_cuda_graph_needs_cuda():
    learner = _learner(_conv())
    with pytest.raises(ConfigError, match=r"^train\.cuda_graph: needs a CUDA device"):
        meta_step(learner, TrainConfig(cuda_graph=True), CPU)


@pytest.mark.slow
def test_compiled_meta_iteration_matches_eager():
    """One compiled second-order ALFA meta-iteration (MLP, the sinusoid shape): same loss and
    meta-gradients as eager, and a second batch of the same shape reuses the graph."""
    torch._dynamo.reset()
    learner = _learner(MLP((8, 8)), task="regression")
    g = torch.Generator().manual_seed(3)
    batches = [TaskBatch(*(torch.randn(3, 5, 1, generator=g) for _ in range(4))) for _ in (0, 1)]
    step = meta_step(learner, TrainConfig(compile=True), CPU)
    for batch in batches:
        loss, grads = _meta(step, learner, batch)
        ref_loss, ref_grads = _meta(learner, learner, batch)
        assert abs(loss.item() - ref_loss.item()) <= 1e-5 * abs(ref_loss.item())
        for a, b in zip(grads, ref_grads, strict=True):
            assert (a - b).abs().max().item() <= 1e-4 * b.abs().max().item() + 1e-7


@pytest.mark.slow
def test_train_with_compile_logs_the_eager_losses(tmp_path, capsys):
    """``alfa train ... train.compile=true`` trains the same run as eager (float32 rounding)."""
    from alfa.cli.main import main

    torch._dynamo.reset()
    base = [
        "configs/sinusoid/alfa_maml.yaml",
        "train.iterations=4",
        "train.log_every=1",
        "train.val_every=0",
        "meta.batch_size=3",
        "--no-progress",
    ]
    runs = {}
    for flag in ("false", "true"):
        run = tmp_path / flag
        assert main(["train", *base, f"train.compile={flag}", "--run-dir", str(run)]) == 0
        lines = (run / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(x) for x in lines]
        runs[flag] = [r["loss"] for r in records if r["split"] == "train"]
    capsys.readouterr()
    assert len(runs["true"]) == 4
    for a, b in zip(runs["true"], runs["false"], strict=True):
        assert abs(a - b) <= 1e-4 * abs(b)


def test_execution_keys_are_in_the_train_section():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert {"compile", "cuda_graph", "channels_last", "autocast"} <= names


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_rounds_but_stays_close_on_cuda():
    """One meta-iteration; a few training steps, CUDA graphs (recorded, across Adam steps) and
    float32 with TF32 against float64 are tests/test_gpu_training.py's."""
    cuda = torch.device("cuda")
    learner = _learner(_conv()).to(cuda)
    batch = _images().to(cuda)
    ref = meta_step(learner, TrainConfig(), cuda)(batch).loss.item()
    low = meta_step(learner, TrainConfig(autocast="bf16"), cuda)(batch).loss.item()
    assert low != ref  # bf16 was in effect
    assert abs(low - ref) <= 0.05 * abs(ref)
