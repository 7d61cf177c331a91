"""Meta-Dataset's ResNet-18: parameter count, spatial sizes, TensorFlow SAME padding, norm modes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from models_testlib import adapted_names

from alfa.config import load_config
from alfa.errors import ConfigError
from alfa.models import build_model
from alfa.models.batchnorm import norm_parameter_names
from alfa.models.resnet18 import ResNet18, aligned_size


def meta_dataset_variables() -> list[tuple[int, ...]]:
    """Shapes of the trainable variables Meta-Dataset's ``_resnet`` creates for ResNet-18
    (``meta_dataset/models/functional_backbones.py``): per ``conv_bn`` a kernel
    ``[k, k, in, out]`` and a batch norm ``offset`` and ``scale`` of ``[out]``; ``conv1`` is 7x7
    with 64 filters; stages ``conv2_x``..``conv5_x`` of depth 64/128/256/512 with two
    ``bottleneck``s each, ``use_project`` in the first (a 1x1 ``projection_conv`` + batch norm)."""
    shapes: list[tuple[int, ...]] = []

    def conv_bn(k: int, c_in: int, c_out: int) -> None:
        shapes.extend([(k, k, c_in, c_out), (c_out,), (c_out,)])

    conv_bn(7, 3, 64)
    c_in = 64
    for depth in (64, 128, 256, 512):
        for i in range(2):
            conv_bn(3, c_in, depth)
            conv_bn(3, depth, depth)
            if i == 0:
                conv_bn(1, c_in, depth)
            c_in = depth
    return shapes


def test_parameter_count_is_meta_datasets() -> None:
    model = ResNet18(50)
    backbone = sum(p.numel() for n, p in model.named_parameters() if "classifier" not in n)
    expected = sum(math.prod(s) for s in meta_dataset_variables())
    assert backbone == expected == 11_180_736
    # = torchvision's resnet18 without its fc (11,176,512) + the first stage's projection
    # shortcut (64 * 64 + 2 * 64), which Meta-Dataset has and torchvision does not.
    assert expected == 11_176_512 + 64 * 64 + 2 * 64
    assert sum(p.numel() for p in model.parameters()) == expected + 512 * 50 + 50
    assert len(list(model.parameters())) == len(meta_dataset_variables()) + 2


def test_adapted_tensors() -> None:
    model = ResNet18(5)
    adapted = adapted_names(model)
    assert len(adapted) == 23  # 21 conv kernels + head weight and bias
    assert adapted[-2:] == ["classifier.weight", "classifier.bias"]
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert len(norm_parameter_names(model)) == 2 * 21


def test_aligned_size() -> None:
    # Meta-Dataset's comment: 42, 84, 168 -> 65, 97, 193 and 224 -> 225.
    assert [aligned_size(s) for s in (42, 84, 168, 224, 126, 129)] == [65, 97, 193, 225, 129, 161]


def test_shapes_at_126() -> None:
    model = ResNet18(7)
    sizes: list[tuple[int, ...]] = []
    model.stem_conv.register_forward_hook(
        lambda _m, i, o: sizes.extend([i[0].shape[2:], o.shape[2:]])
    )
    for block in model.blocks:
        block.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[2:])))
    x = torch.randn(3, 3, 126, 126)
    with torch.no_grad():
        out, features = model(x), model.embed(x)
    assert [tuple(s) for s in sizes[:2]] == [(129, 129), (65, 65)]
    assert sizes[2:10] == [(33, 33)] * 2 + [(17, 17)] * 2 + [(9, 9)] * 2 + [(5, 5)] * 2
    assert out.shape == (3, 7) and features.shape == (3, 512)


def _same(x: torch.Tensor, k: int, s: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow's SAME padding: ``max((ceil(n / s) - 1) * s + k - n, 0)``, the extra pixel
    after (bottom/right)."""
    n = x.shape[-1]
    total = max((-(-n // s) - 1) * s + k - n, 0)
    before = total // 2
    return F.pad(x, (before, total - before, before, total - before), value=value)


def test_paddings_are_tensorflow_same_at_aligned_sizes() -> None:
    torch.manual_seed(1)
    model = ResNet18(2).double()
    x = torch.randn(1, 3, 129, 129, dtype=torch.float64)
    stem = model.stem_conv(x)
    assert torch.allclose(stem, F.conv2d(_same(x, 7, 2), model.stem_conv.weight, stride=2))
    pooled = F.max_pool2d(stem, 3, 2, padding=1)
    assert torch.equal(pooled, F.max_pool2d(_same(stem, 3, 2, -math.inf), 3, 2))
    block = model.blocks[2]  # first block of the stride-2 stage: 3x3 and 1x1 stride 2
    h = torch.randn(1, 64, 33, 33, dtype=torch.float64)
    assert torch.allclose(block.conv1(h), F.conv2d(_same(h, 3, 2), block.conv1.weight, stride=2))
    shortcut = block.shortcut_conv
    assert torch.allclose(shortcut(h), F.conv2d(_same(h, 1, 2), shortcut.weight, stride=2))


def test_support_norm_mode_keeps_queries_apart() -> None:
    model = ResNet18(3, norm="support").double()
    support = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    query = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        together = model(query, reference=support)
        alone = model(query[:1], reference=support)
        transductive = ResNet18(3).double()
        transductive.load_state_dict(model.state_dict())
        other = transductive(query[:1])
    assert torch.allclose(together[:1], alone)
    assert not torch.allclose(alone, other)


def test_config_builds_it_and_bad_arguments() -> None:
    config = load_config(
        None, ["data.name=mini_imagenet", "data.root=x", "data.query=15", "model.name=resnet18"]
    )
    model = build_model(config, in_channels=3)
    assert isinstance(model, ResNet18) and model.classifier.out_features == 5
    with pytest.raises(ConfigError, match="ways"):
        ResNet18(0)
    with pytest.raises(ConfigError, match="norm"):
        ResNet18(2, norm="running")  # type: ignore[arg-type]
