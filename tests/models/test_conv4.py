"""Conv4 (reference.md A.1, 4-CONV): shapes, parameter counts, init, support statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from models_testlib import adapted_names, images

from alfa.errors import ConfigError
from alfa.models.batchnorm import MetaBatchNorm2d, norm_parameter_names
from alfa.models.conv4 import Conv4


def _count(model: torch.nn.Module, names: object) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n in names)  # type: ignore[operator]


def test_mini_imagenet_parameter_counts() -> None:
    model = Conv4(5)  # 48 filters, 84x84x3
    assert model.final_size == 5 and model.feature_dim == 1200
    adapted = adapted_names(model)
    assert len(adapted) == 10
    assert _count(model, adapted) == 69_701
    assert _count(model, norm_parameter_names(model)) == 384
    assert len(norm_parameter_names(model)) == 8
    assert all(".norm." in n for n in norm_parameter_names(model))


def test_omniglot_setting() -> None:
    model = Conv4(5, in_channels=1, filters=64, image_size=28)
    assert model.final_size == 1 and model.feature_dim == 64
    # conv1 1*64*9+64, three convs 64*64*9+64, linear 64*5+5
    assert _count(model, adapted_names(model)) == 640 + 3 * 36_928 + 325
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 5)


@pytest.mark.parametrize(("image_size", "final"), [(84, 5), (28, 1), (32, 2), (16, 1), (47, 2)])
def test_output_shape_and_final_size(image_size: int, final: int) -> None:
    model = Conv4(3, in_channels=2, filters=4, image_size=image_size)
    assert model.final_size == final
    assert model.classifier.in_features == 4 * final * final
    x = torch.randn(5, 2, image_size, image_size)
    assert model(x).shape == (5, 3)
    assert model.embed(x).shape == (5, model.feature_dim)


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigError, match="too small"):
        Conv4(2, image_size=15)
    with pytest.raises(ConfigError, match="ways"):
        Conv4(0)
    with pytest.raises(ConfigError, match="norm"):
        Conv4(2, norm="batch")  # type: ignore[arg-type]


def test_initialisation() -> None:
    model = Conv4(5, filters=8, image_size=32)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            w = module.weight
            fan_in = w.shape[1] * w[0, 0].numel()
            fan_out = w.shape[0] * w[0, 0].numel()
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert w.abs().max() <= bound
            assert w.abs().max() > 0.8 * bound  # uniform over the whole Xavier range
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
        elif isinstance(module, MetaBatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


def test_reproducible_under_manual_seed() -> None:
    torch.manual_seed(104)
    a = Conv4(5, filters=8, image_size=32)
    torch.manual_seed(104)
    b = Conv4(5, filters=8, image_size=32)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert na == nb and torch.equal(pa, pb)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(1.0)
    torch.manual_seed(7)
    a.reset_parameters()
    torch.manual_seed(7)
    b.reset_parameters()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_support_mode_equals_manual_computation() -> None:
    model = Conv4(2, in_channels=1, filters=3, image_size=16, norm="support").double()
    with torch.no_grad():
        for n in norm_parameter_names(model):
            model.get_parameter(n).add_(0.3 * torch.randn(3, dtype=torch.float64))
    support, query = images(4, (1, 16, 16)), images(6, (1, 16, 16))

    s, q = support, query
    for block in model.blocks:
        s = F.conv2d(s, block.conv.weight, block.conv.bias, padding=1)
        q = F.conv2d(q, block.conv.weight, block.conv.bias, padding=1)
        mean = s.mean(dim=(0, 2, 3), keepdim=True)
        std = torch.sqrt(s.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
        gamma, beta = block.norm.weight[:, None, None], block.norm.bias[:, None, None]
        s, q = ((t - mean) / std * gamma + beta for t in (s, q))
        s, q = (F.max_pool2d(F.leaky_relu(t, 0.01), 2) for t in (s, q))
    expected = q.flatten(1) @ model.classifier.weight.T + model.classifier.bias

    torch.testing.assert_close(model(query, reference=support), expected, rtol=0, atol=1e-10)
