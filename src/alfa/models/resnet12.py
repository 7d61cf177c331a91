"""The ResNet12 base learner of ALFA (reference.md A.1, class ResNet12 of the official code).

Four residual blocks with 64-128-256-512 channels (not the 64-160-320-640 of MetaOptNet). A block
is ``conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3 -> BN`` plus a shortcut
``conv1x1 -> BN``, summed, then ReLU and a 2x2 max-pool (stride 2) whose padding is 0, 0, 1 for
blocks 1-3; block 4 has no pool. Spatial size for 84x84 inputs: 84 -> 42 -> 21 -> 11 -> 11, then a
global average pool gives 512 features and a linear layer (with bias) the logits. Plain ReLU, no
DropBlock, no dropout. All convs are bias-free, so the adapted tensors are the 16 conv weights and
the classifier's weight and bias (N = 18).

Choices where reference.md is silent (ours): conv and linear weights are Xavier-uniform and the
classifier bias zero (the same initialisation as the 4-CONV); every block has the projection
shortcut (the channel count always changes, so it is needed anyway); convs use stride 1 with
padding 1 (3x3) and 0 (1x1); the max-pool floors (no ceil mode) and pads with -inf.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from alfa.errors import ConfigError
from alfa.models.backbone import FewShotBackbone
from alfa.models.batchnorm import MetaBatchNorm2d, NormMode, check_norm_mode

__all__ = ["POOL_PADDING", "ResNet12", "ResidualBlock"]

POOL_PADDING: tuple[int | None, ...] = (0, 0, 1, None)
"""Max-pool padding per block; ``None`` means no pooling (block 4)."""


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """Three 3x3 convs with a 1x1 projection shortcut, then ReLU and an optional 2x2 max-pool.

    Args:
        in_channels: Input channels.
        out_channels: Output channels of every conv.
        pool_padding: Padding of the 2x2 stride-2 max-pool, or ``None`` for no pooling.
    """

    def __init__(self, in_channels: int, out_channels: int, pool_padding: int | None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.norm1 = MetaBatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.norm2 = MetaBatchNorm2d(out_channels)
        self.conv3 = _conv3x3(out_channels, out_channels)
        self.norm3 = MetaBatchNorm2d(out_channels)
        self.shortcut_conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.shortcut_norm = MetaBatchNorm2d(out_channels)
        self.pool_padding = pool_padding

    def forward(self, x: Tensor, split: int | None = None) -> Tensor:
        """Apply the block; ``split`` is passed to every batch norm (see MetaBatchNorm2d)."""
        out = F.relu(self.norm1(self.conv1(x), split))
        out = F.relu(self.norm2(self.conv2(out), split))
        out = self.norm3(self.conv3(out), split)
        out = F.relu(out + self.shortcut_norm(self.shortcut_conv(x), split))
        if self.pool_padding is not None:
            out = F.max_pool2d(out, kernel_size=2, stride=2, padding=self.pool_padding)
        return out

    def extra_repr(self) -> str:
        return f"pool_padding={self.pool_padding}"


class ResNet12(FewShotBackbone):
    """ResNet12 with 64-128-256-512 channels and a linear classifier (ALFA's ResNet12).

    Parameter names: ``blocks.{i}.conv{1,2,3}.weight``, ``blocks.{i}.shortcut_conv.weight``,
    ``blocks.{i}.norm{1,2,3}.{weight,bias}``, ``blocks.{i}.shortcut_norm.{weight,bias}`` (batch norm
    affine, not adapted in the inner loop) and ``classifier.{weight,bias}``.

    Args:
        ways: Number of classes ``N`` of a task (classifier outputs).
        in_channels: Image channels. (default: ``3``)
        channels: Output channels of the four blocks. (default: ``(64, 128, 256, 512)``)
        norm: ``"transductive"`` normalises every forward batch with its own statistics (official
            behaviour); ``"support"`` normalises the inputs with the statistics of the
            ``reference`` batch passed to :meth:`forward`. (default: ``"transductive"``)

    Raises:
        ConfigError: If ``channels`` does not have four positive entries, a size is not positive,
            or ``norm`` is unknown.
    """

    def __init__(
        self,
        ways: int,
        *,
        in_channels: int = 3,
        channels: Sequence[int] = (64, 128, 256, 512),
        norm: NormMode = "transductive",
    ) -> None:
        super().__init__()
        channels = tuple(channels)
        if len(channels) != len(POOL_PADDING) or min(channels) < 1:
            raise ConfigError(f"channels must be {len(POOL_PADDING)} positive ints, got {channels}")
        for name, value in (("ways", ways), ("in_channels", in_channels)):
            if value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        self.ways = ways
        self.channels = channels
        self.norm_mode = check_norm_mode(norm)
        self.feature_dim = channels[-1]
        ins = (in_channels, *channels[:-1])
        self.blocks = nn.ModuleList(
            ResidualBlock(c_in, c_out, pad)
            for c_in, c_out, pad in zip(ins, channels, POOL_PADDING, strict=True)
        )
        self.classifier = nn.Linear(self.feature_dim, ways)
        self.reset_parameters()

    def _features(self, x: Tensor, split: int | None) -> Tensor:
        for block in self.blocks:
            x = block(x, split)
        return x.mean(dim=(2, 3))

    def extra_repr(self) -> str:
        return f"ways={self.ways}, channels={self.channels}, norm={self.norm_mode!r}"
