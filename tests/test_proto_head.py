"""fo-Proto-MAML's head, variable-way heads, and meta-batches of episodes of different sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alfa.config import RuleConfig
from alfa.engine.meta_learner import MetaLearner
from alfa.engine.proto_head import HeadInit, class_prototypes, prototype_head
from alfa.models.conv4 import Conv4
from alfa.rules import build_rule
from alfa.tasks.metadataset import meta_batch_loss
from alfa.typing import TaskBatch

MAX_WAYS = 10


def episode(shots: list[int], query: int = 3, seed: int = 0, size: int = 16) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    ways = len(shots)
    sy = torch.cat([torch.full((k,), c) for c, k in enumerate(shots)])
    qy = torch.arange(ways).repeat_interleave(query)
    dtype = torch.get_default_dtype()
    sx = torch.randn(1, len(sy), 3, size, size, generator=g, dtype=dtype) + sy.view(1, -1, 1, 1, 1)
    qx = torch.randn(1, len(qy), 3, size, size, generator=g, dtype=dtype) + qy.view(1, -1, 1, 1, 1)
    return TaskBatch(sx, sy[None], qx, qy[None])


def learner_for(rule_name: str, head: str, engine: str = "auto", steps: int = 2) -> MetaLearner:
    torch.manual_seed(0)
    model = Conv4(MAX_WAYS, filters=4, image_size=16)
    names = tuple(n for n, _ in model.named_parameters() if ".norm." not in n)
    shapes = [dict(model.named_parameters())[n].shape for n in names]
    rule = build_rule(RuleConfig(name=rule_name, lr=0.05), names, shapes, steps)
    learner = MetaLearner(
        model, rule, task="classification", steps=steps, first_order=True, engine=engine
    )
    learner.head_init = HeadInit(model, head)
    return learner


def test_prototype_head_is_the_prototype_classifier(float64) -> None:
    emb = torch.randn(1, 9, 5)
    labels = torch.tensor([[0, 0, 1, 2, 2, 2, 1, 0, 3]])
    protos = class_prototypes(emb, labels, 4)
    for k in range(4):  # the plain mean of each class
        torch.testing.assert_close(protos[0, k], emb[0, labels[0] == k].mean(0))
    w, b = prototype_head(protos)
    x = torch.randn(1, 6, 5)
    linear = x @ w.transpose(1, 2) + b.unsqueeze(1)
    squared = -((x.unsqueeze(2) - protos.unsqueeze(1)) ** 2).sum(-1)
    # equal up to -||x||^2, the same for every class
    torch.testing.assert_close(linear - squared, (x**2).sum(-1, keepdim=True).expand(-1, -1, 4))


@pytest.mark.parametrize("norm", ["transductive", "support"])
def test_before_any_step_proto_maml_predicts_as_a_prototypical_network(float64, norm) -> None:
    torch.manual_seed(0)
    model = Conv4(MAX_WAYS, filters=4, image_size=16, norm=norm)
    names = tuple(n for n, _ in model.named_parameters() if ".norm." not in n)
    shapes = [dict(model.named_parameters())[n].shape for n in names]
    rule = build_rule(RuleConfig(name="maml"), names, shapes, 1)
    learner = MetaLearner(model, rule, task="classification", steps=1)
    learner.head_init = HeadInit(model, "proto")
    batch = episode([1, 3, 2, 5, 2, 1, 4])
    out = learner(batch, steps=0, keep_graph=False)
    # the Prototypical Network, computed with the module itself
    with torch.no_grad():
        support = model.embed(batch.support_x[0])
        query = model.embed(batch.query_x[0], reference=batch.support_x[0])
        protos = torch.stack([support[batch.support_y[0] == k].mean(0) for k in range(7)])
        proto_logits = -(torch.cdist(query, protos) ** 2)
    assert out.outputs.shape == (1, 21, 7)
    torch.testing.assert_close(out.outputs[0].softmax(-1), proto_logits.softmax(-1))
    assert torch.equal(out.outputs[0].argmax(-1), proto_logits.argmax(-1))


@pytest.mark.parametrize("rule_name", ["maml", "learned_fixed", "alfa"])
def test_proto_head_composes_with_every_rule(float64, rule_name) -> None:
    batch = episode([2, 1, 4, 3, 2, 2])
    losses = []
    for engine in ("generic", "fast"):
        learner = learner_for(rule_name, "proto", engine)
        out = learner(batch)
        out.loss.backward()
        losses.append(out.loss.detach())
        conv = learner.model.blocks[0].conv.weight.grad
        assert conv is not None and conv.abs().sum() > 0
        rule_grads = [p.grad for p in learner.rule.parameters() if p.requires_grad]
        if rule_name != "maml":
            assert rule_grads and all(g is not None for g in rule_grads)
        assert learner.model.classifier.weight.grad is None  # replaced by the prototypes
    torch.testing.assert_close(losses[0], losses[1])  # generic autograd == closed form


def test_learned_head_equals_meta_dataset_logit_slicing(float64) -> None:
    """fo-MAML with variable ways: a head of MAX_WAYS outputs whose first N logits are used."""
    steps, lr = 2, 0.05
    learner = learner_for("maml", "learned", engine="generic", steps=steps)
    batch = episode([2, 3, 1, 2, 2])
    ways = 5
    out = learner(batch, keep_graph=False)
    assert out.outputs.shape[-1] == ways
    # Reference: the full 10-output head, cross-entropy on the first `ways` logits, SGD.
    model = learner.model
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    adapted = [n for n in params if ".norm." not in n]
    for _ in range(steps):
        logits = torch.func.functional_call(model, params, (batch.support_x[0],))
        loss = F.cross_entropy(logits[:, :ways], batch.support_y[0])
        grads = torch.autograd.grad(loss, [params[n] for n in adapted])
        for n, g in zip(adapted, grads, strict=True):
            params[n] = (params[n] - lr * g).detach().requires_grad_(True)
    with torch.no_grad():
        ref = torch.func.functional_call(model, params, (batch.query_x[0],))[:, :ways]
    torch.testing.assert_close(out.outputs[0], ref)


def test_zero_head_starts_uniform(float64) -> None:
    learner = learner_for("maml", "zero")
    batch = episode([1, 2, 3, 1, 1, 2, 2, 1])
    out = learner(batch, steps=0, keep_graph=False)
    torch.testing.assert_close(out.outputs, torch.zeros(1, 24, 8))
    assert float(out.loss) == pytest.approx(float(torch.log(torch.tensor(8.0))))


def test_grouped_meta_batch_equals_stacked_meta_batch(float64) -> None:
    """Episodes run one by one (any sizes) give the gradient of the stacked vmap meta-batch."""
    a, b = episode([2, 1, 3, 1, 2], seed=1), episode([2, 1, 3, 1, 2], seed=2)
    stacked = TaskBatch(*(torch.cat([x, y]) for x, y in zip(a, b, strict=True)))
    grads = []
    for mode in ("stacked", "grouped"):
        learner = learner_for("alfa", "proto", engine="generic")
        if mode == "stacked":
            loss = learner(stacked).loss
            loss.backward()
        else:
            loss = meta_batch_loss(learner, [a, b])
        grads.append(
            {n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None}
        )
        grads[-1]["loss"] = loss.detach()
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n])


def test_grouped_meta_batch_of_different_sizes_is_the_mean() -> None:
    a, b = episode([2, 1, 3, 1, 2], seed=1), episode([1, 1, 1, 2, 1, 4, 1], seed=2)
    learner = learner_for("alfa", "proto")
    loss = meta_batch_loss(learner, [a, b])
    each = [float(learner(x, keep_graph=False).loss) for x in (a, b)]
    assert float(loss) == pytest.approx(sum(each) / 2, rel=1e-5)


def test_head_init_needs_embed_and_classifier() -> None:
    with pytest.raises(ValueError, match="no feature extractor"):
        HeadInit(torch.nn.Linear(3, 2), "proto")


def test_head_init_is_a_config_switch() -> None:
    from alfa.config import load_config
    from alfa.errors import ConfigError
    from alfa.runs.build import build_learner

    base = ["data.name=omniglot", "data.root=x", "data.query=1", "model.name=conv4"]
    base += ["data.image_size=16", "model.filters=4"]
    for rule in ("maml", "learned_fixed", "alfa"):
        config = load_config(None, [*base, "meta.head_init=proto", f"rule.name={rule}"])
        learner = build_learner(config, task="classification", in_channels=1)
        assert isinstance(learner.head_init, HeadInit) and learner.head_init.mode == "proto"
    assert (
        build_learner(load_config(None, base), task="classification", in_channels=1).head_init
        is None
    )
    with pytest.raises(ConfigError, match=r"meta\.head_init"):
        load_config(None, ["meta.head_init=proto"])  # the sinusoid MLP has no feature extractor
