"""The ResNet-18 of Meta-Dataset (Triantafillou et al., ICLR 2020), the backbone of Table 3.

Meta-Dataset's ``resnet`` embedding (``meta_dataset/models/functional_backbones.py``,
``_resnet`` with ``blocks=(2, 2, 2, 2)``), written for ``alfa``:

- the input is first resized bilinearly (corners aligned) to the next size of the form
  ``32 k + 1`` at or above it (DeepLab's alignment, on by default there): 126 -> 129;
- a 7x7 stride-2 conv with 64 filters, batch norm, ReLU, then a 3x3 stride-2 max-pool;
- four stages of two residual blocks with 64, 128, 256 and 512 channels, strides 1, 2, 2, 2.
  A block is ``conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN`` plus a shortcut, summed, then
  ReLU. The first block of *every* stage has a projection shortcut ``conv1x1(stride) -> BN`` (the
  first stage too, although its channels do not change), the second the identity;
- a global average pool gives 512 features; the linear head (with bias) gives the logits.

Every conv is bias-free; every batch norm has a scale and an offset (eps 1e-5). Meta-Dataset pads
with TensorFlow's ``SAME`` rule; the aligned sizes are odd at every layer (129, 65, 33, 17, 9, 5),
where ``SAME`` pads equally on both sides, so the symmetric paddings used here (3 for the 7x7, 1
for the 3x3 convs and the max-pool, 0 for the 1x1) give the same outputs. Spatial sizes for
126x126 inputs: 129 -> 65 -> 33 (pool) -> 33 -> 17 -> 9 -> 5 -> 1.

Ours: the initialisation is the one of the other ``alfa`` backbones (Xavier-uniform convs and
head, zero head bias; Meta-Dataset draws a truncated normal of std 0.1, and its Table 3 runs start
from a pretrained checkpoint instead). The batch-norm affine parameters are not adapted in the
inner loop (Meta-Dataset's ``MAMLLearner.adapt_batch_norm = False``), so the adapted tensors are
the 21 conv weights and the head's weight and bias (N = 23).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from alfa.errors import ConfigError
from alfa.models.backbone import FewShotBackbone
from alfa.models.batchnorm import MetaBatchNorm2d, NormMode, check_norm_mode

__all__ = ["STAGES", "BasicBlock", "ResNet18", "aligned_size"]

STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 2), (512, 2))
"""(channels, stride) of the four stages, two blocks each."""


def aligned_size(size: int) -> int:
    """DeepLab's input alignment of Meta-Dataset's ResNet: ``ceil(size / 32) * 32 + 1``."""
    return -(-size // 32) * 32 + 1


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm plus a shortcut (projection when ``project``), then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int, project: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = MetaBatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.norm2 = MetaBatchNorm2d(channels)
        self.shortcut_conv: nn.Conv2d | None = None
        self.shortcut_norm: MetaBatchNorm2d | None = None
        if project:
            self.shortcut_conv = nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False)
            self.shortcut_norm = MetaBatchNorm2d(channels)

    def forward(self, x: Tensor, split: int | None = None) -> Tensor:
        """Apply the block; ``split`` is passed to every batch norm (see MetaBatchNorm2d)."""
        out = F.relu(self.norm1(self.conv1(x), split))
        out = self.norm2(self.conv2(out), split)
        if self.shortcut_conv is not None and self.shortcut_norm is not None:
            x = self.shortcut_norm(self.shortcut_conv(x), split)
        return F.relu(x + out)


class ResNet18(FewShotBackbone):
    """Meta-Dataset's ResNet-18 feature extractor (512 features) and a linear classifier.

    Parameter names: ``stem_conv.weight``, ``stem_norm.{weight,bias}``,
    ``blocks.{i}.conv{1,2}.weight``, ``blocks.{i}.norm{1,2}.{weight,bias}``, for the first block
    of a stage ``blocks.{i}.shortcut_conv.weight`` and ``blocks.{i}.shortcut_norm.{weight,bias}``
    (``i`` in 0..7, two per stage), and ``classifier.{weight,bias}``.

    Args:
        ways: Classifier outputs (for Meta-Dataset, the largest number of ways: 50).
        in_channels: Image channels. (default: ``3``)
        norm: ``"transductive"`` or ``"support"`` (Meta-Dataset's non-transductive batch norm:
            the query set is normalised with the support set's statistics). (default:
            ``"transductive"``)
        align: Resize inputs to :func:`aligned_size` first, as Meta-Dataset does. (default: on)

    Raises:
        ConfigError: If ``ways`` or ``in_channels`` is not positive, or ``norm`` is unknown.
    """

    def __init__(
        self,
        ways: int,
        *,
        in_channels: int = 3,
        norm: NormMode = "transductive",
        align: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("ways", ways), ("in_channels", in_channels)):
            if value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        self.ways = ways
        self.norm_mode = check_norm_mode(norm)
        self.align = align
        self.stem_conv = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.stem_norm = MetaBatchNorm2d(64)
        blocks: list[BasicBlock] = []
        previous = 64
        for channels, stride in STAGES:
            blocks.append(BasicBlock(previous, channels, stride, project=True))
            blocks.append(BasicBlock(channels, channels, 1, project=False))
            previous = channels
        self.blocks = nn.ModuleList(blocks)
        self.feature_dim = previous
        self.classifier = nn.Linear(self.feature_dim, ways)
        self.reset_parameters()

    def _features(self, x: Tensor, split: int | None) -> Tensor:
        if self.align:
            size = aligned_size(x.shape[-1])
            if x.shape[-1] != size or x.shape[-2] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
        x = F.relu(self.stem_norm(self.stem_conv(x), split))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        for block in self.blocks:
            x = block(x, split)
        return x.mean(dim=(2, 3))

    def extra_repr(self) -> str:
        return f"ways={self.ways}, norm={self.norm_mode!r}, align={self.align}"
