"""The 4-CONV base learner of ALFA (reference.md A.1; official class VGGReLUNormNetwork).

Four blocks of ``conv3x3 (stride 1, padding 1, bias) -> batch norm -> leaky ReLU (slope 0.01) ->
max-pool 2x2 stride 2``, then flatten and a linear classifier. With the miniImageNet setting
(48 filters, 84x84x3, 5-way) the spatial size goes 84 -> 42 -> 21 -> 10 -> 5 and the model has
69,701 adaptable parameters (conv and linear weights and biases, 10 tensors) plus 384 batch-norm
affine parameters. The Omniglot setting is 64 filters at 28x28x1 (28 -> 14 -> 7 -> 3 -> 1).
"""

from __future__ import annotations

import itertools

import torch.nn.functional as F
from torch import Tensor, nn

from alfa.errors import ConfigError
from alfa.models.backbone import FewShotBackbone
from alfa.models.batchnorm import MetaBatchNorm2d, NormMode, check_norm_mode

__all__ = ["Conv4", "ConvBlock"]

_NUM_BLOCKS = 4
_LEAKY_SLOPE = 0.01  # PyTorch's default negative slope, as in the official code


class ConvBlock(nn.Module):
    """``conv3x3 -> MetaBatchNorm2d -> leaky ReLU -> max-pool 2x2``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (filters).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm = MetaBatchNorm2d(out_channels)

    def forward(self, x: Tensor, split: int | None = None) -> Tensor:
        """Apply the block; ``split`` is passed to the batch norm (see MetaBatchNorm2d)."""
        x = F.leaky_relu(self.norm(self.conv(x), split), _LEAKY_SLOPE)
        return F.max_pool2d(x, kernel_size=2, stride=2)


class Conv4(FewShotBackbone):
    """Four convolutional blocks and a linear classifier (ALFA's 4-CONV).

    Parameter names: ``blocks.{i}.conv.{weight,bias}``, ``blocks.{i}.norm.{weight,bias}`` (batch
    norm affine, not adapted in the inner loop) and ``classifier.{weight,bias}``.

    Args:
        ways: Number of classes ``N`` of a task (classifier outputs).
        in_channels: Image channels. (default: ``3``)
        filters: Channels of every conv layer; 48 for miniImageNet, 64 for Omniglot.
            (default: ``48``)
        image_size: Height and width of the (square) input images; fixes the classifier's
            input size ``filters * s * s`` with ``s = image_size // 16`` (floor pooling).
            (default: ``84``)
        norm: ``"transductive"`` normalises every forward batch with its own statistics (official
            behaviour); ``"support"`` normalises the inputs with the statistics of the
            ``reference`` batch passed to :meth:`forward`. (default: ``"transductive"``)

    Raises:
        ConfigError: If a size is not positive, the image is too small for four poolings, or
            ``norm`` is unknown.
    """

    def __init__(
        self,
        ways: int,
        *,
        in_channels: int = 3,
        filters: int = 48,
        image_size: int = 84,
        norm: NormMode = "transductive",
    ) -> None:
        super().__init__()
        for name, value in (("ways", ways), ("in_channels", in_channels), ("filters", filters)):
            if value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        size = image_size
        for _ in range(_NUM_BLOCKS):
            size //= 2  # conv keeps the size (padding 1); the pool floors it
        if size < 1:
            raise ConfigError(f"image_size {image_size} is too small for {_NUM_BLOCKS} poolings")
        self.ways = ways
        self.norm_mode = check_norm_mode(norm)
        self.image_size = image_size
        self.final_size = size
        self.feature_dim = filters * size * size
        channels = [in_channels] + [filters] * _NUM_BLOCKS
        self.blocks = nn.ModuleList(
            ConvBlock(c_in, c_out) for c_in, c_out in itertools.pairwise(channels)
        )
        self.classifier = nn.Linear(self.feature_dim, ways)
        self.reset_parameters()

    def _features(self, x: Tensor, split: int | None) -> Tensor:
        for block in self.blocks:
            x = block(x, split)
        return x.flatten(1)

    def extra_repr(self) -> str:
        return f"ways={self.ways}, image_size={self.image_size}, norm={self.norm_mode!r}"
