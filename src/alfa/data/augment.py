"""Random affine jitter of training images: small rotations, shifts and zooms, one per image.

Standard augmentation for few-shot character data (a drawing stays the same character when it
is turned a few degrees, moved a pixel or two, or drawn a little larger): each image of a
*training* task gets its own random affine map, drawn uniformly within the ranges of an
:class:`AffineJitter`. Validation and test tasks are never jittered.

The map of one image turns the drawing ``a`` degrees counter-clockwise as displayed (rows
downwards), zooms it by ``s`` about the centre and moves it by ``(t_x, t_y)`` of the side to the
right and down. With ``d = degrees``, ``f = shift`` and ``z = scale``: ``a ~ U(-d, d)``,
``s ~ U(1 - z, 1 + z)``, ``t_x, t_y ~ U(-f, f)``, all independent. In the normalised coordinates
of :func:`torch.nn.functional.affine_grid` (``[-1, 1]`` across the image,
``align_corners=False``) an output point ``p`` reads the input at ``R(a) p / s - 2 t``, where
``R(a)`` turns the ``(x, y)`` axes of the image (``y`` downwards). Pixels are sampled
bilinearly; points outside the image take the nearest border pixel (the background of a
character drawing), and the result is rounded back to ``uint8``, so a jittered batch is stored,
copied and normalised as any other, and a CPU run and a GPU run see the same images.

Every random number comes from an explicit generator: task ``i`` of meta-batch ``b`` is
jittered with a generator seeded by ``derive_seed(derive_seed(derive_seed(seed, b),
JITTER_STREAM), i)`` (:func:`~alfa.data.episodes.derive_seed`), so the jitter
is the same for any number of worker processes, any share of the meta-batch, and after a resume;
and with no jitter the stream is exactly the stream without this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alfa.config.bounds import JITTER_BOUNDS
from alfa.errors import DataError

__all__ = ["JITTER_STREAM", "AffineJitter", "affine"]

JITTER_STREAM = 0x4A49545445
"""Mixed into a meta-batch's seed, so the jitter draws from a stream of its own and the tasks'
own draws (classes and images) are those of the same stream without jitter."""


def affine(images: Tensor, degrees: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """Images ``[n, C, H, W]`` (``uint8``) under one affine map each (see the module docstring).

    Args:
        degrees: ``[n]`` rotation angles in degrees (counter-clockwise on the screen).
        scale: ``[n]`` zoom factors (``> 1`` draws the character larger).
        shift: ``[n, 2]`` moves ``(right, down)`` as fractions of the width and height.

    Returns:
        ``uint8`` images of the same shape, rounded to the nearest level.
    """
    n = images.shape[0]
    radians = degrees.to(torch.float32) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    inverse = 1.0 / scale.to(torch.float32)
    theta = torch.empty(n, 2, 3, dtype=torch.float32)
    theta[:, 0, 0] = cos * inverse
    theta[:, 0, 1] = -sin * inverse
    theta[:, 1, 0] = sin * inverse
    theta[:, 1, 1] = cos * inverse
    theta[:, :, 2] = -2.0 * shift.to(torch.float32)
    theta = theta.to(images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    moved = F.grid_sample(
        images.to(torch.float32), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return moved.round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class AffineJitter:
    """The ranges of the random affine map of each training image (all 0: no jitter).

    Args:
        degrees: rotations are uniform in ``[-degrees, degrees]``.
        shift: each of the two moves is uniform in ``[-shift, shift]`` of the side.
        scale: zoom factors are uniform in ``[1 - scale, 1 + scale]``.

    Raises:
        DataError: a range that is negative, not finite, or beyond its bound in
            :data:`alfa.config.bounds.JITTER_BOUNDS`, naming it.
    """

    degrees: float = 0.0
    shift: float = 0.0
    scale: float = 0.0

    def __post_init__(self) -> None:
        for name, top in JITTER_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"jitter {name} must be a number, got {value!r}")
            if not (math.isfinite(value) and 0 <= value <= top):
                raise DataError(f"jitter {name} must be between 0 and {top}, got {value!r}")

    def __bool__(self) -> bool:
        return bool(self.degrees or self.shift or self.scale)

    def draw(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``count`` random maps: angles ``[count]``, zooms ``[count]``, shifts ``[count, 2]``."""
        u = torch.rand(count, 4, generator=generator, dtype=torch.float64) * 2.0 - 1.0
        degrees = u[:, 0] * self.degrees
        scale = 1.0 + u[:, 1] * self.scale
        shift = u[:, 2:] * self.shift
        return degrees, scale, shift

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``images`` ``[n, C, H, W]`` (``uint8``), each under its own random map."""
        if not self:
            return images
        return affine(images, *self.draw(images.shape[0], generator))
