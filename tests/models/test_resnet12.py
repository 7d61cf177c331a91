"""ResNet12 (reference.md A.1): shapes, spatial sizes, adapted tensors, initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from models_testlib import adapted_names

from alfa.errors import ConfigError
from alfa.models.batchnorm import MetaBatchNorm2d, norm_parameter_names
from alfa.models.resnet12 import ResNet12


def test_adapted_tensors_full_size() -> None:
    model = ResNet12(5)
    adapted = adapted_names(model)
    assert len(adapted) == 18
    assert sum(n.endswith("weight") and "conv" in n for n in adapted) == 16
    assert adapted[-2:] == ["classifier.weight", "classifier.bias"]
    assert model.classifier.in_features == 512 and model.feature_dim == 512
    # Every conv is bias-free; 16 batch norms with weight and bias each.
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert len(norm_parameter_names(model)) == 32
    assert sum(model.get_parameter(n).numel() for n in norm_parameter_names(model)) == 2 * 4 * (
        64 + 128 + 256 + 512
    )


def test_spatial_sizes_84() -> None:
    model = ResNet12(5, channels=(1, 1, 1, 2))
    sizes: list[tuple[int, ...]] = []
    for block in model.blocks:
        block.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[2:])))
    out = model(torch.randn(2, 3, 84, 84))
    assert sizes == [(42, 42), (21, 21), (11, 11), (11, 11)]
    assert out.shape == (2, 5)


@pytest.mark.parametrize("size", [8, 32])
def test_output_shape(size: int) -> None:
    model = ResNet12(3, in_channels=1, channels=(2, 3, 4, 5))
    x = torch.randn(4, 1, size, size)
    assert model(x).shape == (4, 3)
    assert model.embed(x).shape == (4, 5)


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigError, match="channels"):
        ResNet12(2, channels=(64, 128, 256))
    with pytest.raises(ConfigError, match="ways"):
        ResNet12(0, channels=(1, 1, 1, 1))
    with pytest.raises(ConfigError, match="norm"):
        ResNet12(2, channels=(1, 1, 1, 1), norm="running")  # type: ignore[arg-type]


def test_initialisation_and_reproducibility() -> None:
    torch.manual_seed(104)
    a = ResNet12(5, channels=(4, 6, 8, 10))
    torch.manual_seed(104)
    b = ResNet12(5, channels=(4, 6, 8, 10))
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert na == nb and torch.equal(pa, pb)
    for module in a.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            w = module.weight
            fans = w.shape[0] * w[0, 0].numel() + w.shape[1] * w[0, 0].numel()
            assert w.abs().max() <= math.sqrt(6.0 / fans)
        elif isinstance(module, MetaBatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
    assert torch.equal(a.classifier.bias, torch.zeros(5))
    torch.manual_seed(3)
    a.reset_parameters()
    torch.manual_seed(3)
    b.reset_parameters()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
