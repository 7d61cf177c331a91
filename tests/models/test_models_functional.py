"""Both base learners: normalisation modes, vmap over tasks, second-order differentiability."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from models_testlib import TINY_MODELS, adapted_names, images, tiny_model
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from alfa.models.conv4 import Conv4
from alfa.models.resnet12 import ResNet12

MODELS = sorted(TINY_MODELS)
NORMS = ["transductive", "support"]
Params = dict[str, Tensor]


def _close(a: Tensor, b: Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("norm", NORMS)
def test_no_running_statistics(name: str, norm: str) -> None:
    model, shape = tiny_model(name, norm)
    assert list(model.buffers()) == []
    assert not any("running" in n or "num_batches" in n for n in model.state_dict())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    # Nothing is tracked, so eval mode computes exactly what train mode does.
    x = images(5, shape)
    out = model(x)
    _close(model.eval()(x), out)


@pytest.mark.parametrize("name", MODELS)
def test_transductive_uses_query_batch_statistics(name: str) -> None:
    model, shape = tiny_model(name, "transductive")
    support, query = images(4, shape), images(6, shape)
    out = model(query, reference=support)
    # The reference is ignored ...
    _close(out, model(query))
    _close(out, model(query, reference=images(4, shape)))
    # ... and the prediction for query 0 depends on the other query images.
    changed = query.clone()
    changed[1:] = images(5, shape)
    assert (model(changed, reference=support)[0] - out[0]).abs().max() > 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_support_mode_normalises_query_with_support(name: str) -> None:
    model, shape = tiny_model(name, "support")
    support, query = images(4, shape), images(6, shape)
    out = model(query, reference=support)
    # One query image's output does not depend on the other query images ...
    changed = query.clone()
    changed[1:] = images(5, shape)
    _close(model(changed, reference=support)[0], out[0])
    for i in range(6):
        _close(model(query[i : i + 1], reference=support)[0], out[i])
    # ... but does depend on the support set.
    assert (model(query, reference=images(4, shape)) - out).abs().max() > 1e-6
    # Without a reference the batch uses its own statistics, as in transductive mode; the support
    # set normalised by itself gives the same result either way.
    transductive = TINY_MODELS[name][0]("transductive").double()
    transductive.load_state_dict(model.state_dict())
    _close(model(query), transductive(query))
    _close(model(support, reference=support), model(support))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("norm", NORMS)
def test_vmap_over_tasks_equals_loop(name: str, norm: str) -> None:
    model, shape = tiny_model(name, norm)
    tasks = 3
    params = {
        n: p.detach() + 0.05 * torch.randn(tasks, *p.shape, dtype=p.dtype)
        for n, p in model.named_parameters()
    }
    support, query = images(4, shape, tasks), images(6, shape, tasks)

    def logits(p: Params, s: Tensor, q: Tensor) -> Tensor:
        return functional_call(model, p, (q,), {"reference": s})

    batched = vmap(logits)(params, support, query)
    assert batched.shape == (tasks, 6, 2)
    for t in range(tasks):
        _close(batched[t], logits({n: v[t] for n, v in params.items()}, support[t], query[t]))
    # Shared (unbatched) parameters work as well.
    shared = dict(model.named_parameters())
    batched = vmap(logits, in_dims=(None, 0, 0))(shared, support, query)
    for t in range(tasks):
        _close(batched[t], model(query[t], reference=support[t]))


def _inner_step_loss(
    model: nn.Module,
    params: Params,
    support: Tensor,
    labels_s: Tensor,
    query: Tensor,
    labels_q: Tensor,
    lr: float = 0.1,
) -> Tensor:
    """One differentiable SGD step on the adapted (non-norm) tensors, then the query loss."""
    names = adapted_names(model)
    loss = F.cross_entropy(functional_call(model, params, (support,)), labels_s)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True)
    fast = dict(params)
    fast.update({n: params[n] - lr * g for n, g in zip(names, grads, strict=True)})
    return F.cross_entropy(functional_call(model, fast, (query,), {"reference": support}), labels_q)


GRADCHECK_MODELS = {
    "conv4": (lambda norm: Conv4(2, in_channels=1, filters=2, image_size=16, norm=norm), 16),
    "resnet12": (lambda norm: ResNet12(2, in_channels=1, channels=(1, 1, 1, 2), norm=norm), 8),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK_MODELS))
@pytest.mark.parametrize("norm", NORMS)
def test_second_order_gradcheck(name: str, norm: str) -> None:
    """Numerical vs analytical gradient of the query loss after one create_graph inner step."""
    factory, size = GRADCHECK_MODELS[name]
    model = factory(norm).double()
    names = [n for n, _ in model.named_parameters()]
    support, query = images(4, (1, size, size)), images(4, (1, size, size))
    labels = torch.tensor([0, 1, 0, 1])

    def fn(*tensors: Tensor) -> Tensor:
        return _inner_step_loss(
            model, dict(zip(names, tensors, strict=True)), support, labels, query, labels
        )

    inputs = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    # Full Jacobian check for the 4-CONV; the ResNet12 (about 220 inputs) checks random
    # projections of it (fast mode), which still needs the second-order backward.
    fast = name == "resnet12"
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("norm", NORMS)
def test_second_order_under_vmap_matches_loop(name: str, norm: str) -> None:
    """Meta-gradients through an inner step taken with torch.func.grad inside vmap."""
    model, shape = tiny_model(name, norm)
    tasks = 2
    names = adapted_names(model)
    support, query = images(4, shape, tasks), images(6, shape, tasks)
    labels_s = torch.tensor([0, 1, 0, 1]).expand(tasks, -1)
    labels_q = torch.tensor([0, 1, 1, 0, 0, 1]).expand(tasks, -1)

    def task_loss(p: Params, s: Tensor, ys: Tensor, q: Tensor, yq: Tensor) -> Tensor:
        def support_loss(adapted: Params) -> Tensor:
            logits = functional_call(model, {**p, **adapted}, (s,))
            return F.cross_entropy(logits, ys)

        adapted = {n: p[n] for n in names}
        g = grad(support_loss)(adapted)
        fast = {**p, **{n: adapted[n] - 0.1 * g[n] for n in names}}
        return F.cross_entropy(functional_call(model, fast, (q,), {"reference": s}), yq)

    meta = dict(model.named_parameters())
    batched = vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(meta, support, labels_s, query, labels_q)
    meta_grads = torch.autograd.grad(batched.sum(), list(meta.values()))

    looped = [
        _inner_step_loss(model, meta, support[t], labels_s[t], query[t], labels_q[t])
        for t in range(tasks)
    ]
    _close(batched, torch.stack(looped))
    for a, b in zip(meta_grads, torch.autograd.grad(sum(looped), list(meta.values())), strict=True):
        _close(a, b)


def test_package_selects_the_documented_adapted_tensors() -> None:
    """The package's own selection of adapted tensors agrees with reference.md A.1 (N=10, N=18)."""
    functional = pytest.importorskip("alfa.engine.functional")
    conv4 = Conv4(5, filters=4, image_size=32)
    assert list(functional.adapted_parameter_names(conv4)) == adapted_names(conv4)
    assert len(adapted_names(conv4)) == 10
    resnet = ResNet12(5, channels=(1, 2, 3, 4))
    assert list(functional.adapted_parameter_names(resnet)) == adapted_names(resnet)
    assert len(adapted_names(resnet)) == 18
