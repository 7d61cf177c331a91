"""MetaBatchNorm2d: batch statistics only, reference statistics, no state, functorch-safe."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from alfa.errors import ConfigError
from alfa.models.batchnorm import (
    MetaBatchNorm2d,
    check_norm_mode,
    is_norm_module,
    norm_parameter_names,
)


def _bn(c: int = 3) -> MetaBatchNorm2d:
    bn = MetaBatchNorm2d(c).double()
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c))
        bn.bias.copy_(torch.randn(c))
    return bn


def _manual(x: torch.Tensor, ref: torch.Tensor, bn: MetaBatchNorm2d) -> torch.Tensor:
    mean = ref.mean(dim=(0, 2, 3), keepdim=True)
    var = ref.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    out = (x - mean) / torch.sqrt(var + bn.eps)
    return out * bn.weight[:, None, None] + bn.bias[:, None, None]


def test_no_state_and_init() -> None:
    bn = MetaBatchNorm2d(4)
    assert list(bn.buffers()) == []
    assert dict(bn.named_parameters()).keys() == {"weight", "bias"}
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))
    assert list(MetaBatchNorm2d(4, affine=False).parameters()) == []


def test_batch_statistics_match_torch_training_mode() -> None:
    bn = _bn()
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    ref = nn.BatchNorm2d(3, track_running_stats=False).double()
    ref.load_state_dict(bn.state_dict())
    torch.testing.assert_close(bn(x), ref(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(bn(x), _manual(x, x, bn), rtol=0, atol=1e-12)
    bn.eval()  # no running statistics: eval mode is the same computation
    torch.testing.assert_close(bn(x), ref.train()(x), rtol=0, atol=1e-12)


def test_split_uses_reference_rows_only() -> None:
    bn = _bn()
    x = torch.randn(7, 3, 4, 4, dtype=torch.float64)
    out = bn(x, 3)
    torch.testing.assert_close(out, _manual(x, x[:3], bn), rtol=0, atol=1e-12)
    # The whole batch as reference is the fused path.
    torch.testing.assert_close(bn(x, 7), bn(x), rtol=0, atol=1e-12)
    # Rows after the split do not influence each other.
    y = x.clone()
    y[5:] = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(bn(y, 3)[:5], out[:5], rtol=0, atol=0)


def test_affine_false() -> None:
    bn = MetaBatchNorm2d(2, affine=False)
    x = torch.randn(8, 2, 3, 3)
    for out in (bn(x), bn(x, 8)):
        torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-6, rtol=0)
        torch.testing.assert_close(
            out.var(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-4, rtol=0
        )


def test_bad_inputs() -> None:
    bn = MetaBatchNorm2d(2)
    with pytest.raises(ValueError, match="B, C, H, W"):
        bn(torch.randn(2, 2, 3))
    with pytest.raises(ValueError, match="split"):
        bn(torch.randn(2, 2, 3, 3), 3)
    with pytest.raises(ValueError, match="split"):
        bn(torch.randn(2, 2, 3, 3), 0)


@pytest.mark.parametrize("split", [None, 2])
def test_vmap_and_nested_grad_match_loop(split: int | None) -> None:
    bn = _bn()
    params = {k: v.detach().expand(4, -1).clone() for k, v in bn.named_parameters()}
    params = {k: v + 0.1 * torch.randn_like(v) for k, v in params.items()}
    x = torch.randn(4, 5, 3, 3, 3, dtype=torch.float64)

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(bn, p, (xi, split)).sin().sum()

    def step_loss(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        g = grad(loss)(p, xi)
        return loss({k: p[k] - 0.1 * g[k] for k in p}, xi)

    batched = vmap(grad(step_loss))(params, x)
    for t in range(4):
        single = grad(step_loss)({k: v[t] for k, v in params.items()}, x[t])
        for k in params:
            torch.testing.assert_close(batched[k][t], single[k], rtol=0, atol=1e-10)


def test_is_norm_module() -> None:
    for m in (
        MetaBatchNorm2d(2),
        nn.BatchNorm2d(2),
        nn.BatchNorm1d(2),
        nn.InstanceNorm2d(2),
        nn.LayerNorm(2),
        nn.GroupNorm(1, 2),
    ):
        assert is_norm_module(m), m
    for m in (nn.Conv2d(1, 1, 1), nn.Linear(1, 1), nn.Sequential(MetaBatchNorm2d(2))):
        assert not is_norm_module(m), m
    assert MetaBatchNorm2d.is_normalisation is True


def test_norm_parameter_names() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), MetaBatchNorm2d(2), nn.LayerNorm(3))
    assert norm_parameter_names(model) == {"1.weight", "1.bias", "2.weight", "2.bias"}
    assert norm_parameter_names(MetaBatchNorm2d(2)) == {"weight", "bias"}


def test_check_norm_mode() -> None:
    assert check_norm_mode("support") == "support"
    with pytest.raises(ConfigError, match="norm"):
        check_norm_mode("running")
