"""What a trained model expects as input, known from its config alone (no data is read).

A run's config names the dataset it was trained on; that fixes the task (sinusoid regression
or image classification), the input channels and how each image was prepared: resized to
``data.image_size`` with the dataset loader's filter (Omniglot: Lanczos, and inverted so that
strokes are bright; the others bilinear), centre-cropped after a resize by 1.15 for CUB (the
CloserLook transform its loader uses), then scaled to ``[0, 1]`` and, for colour images,
normalised with the ImageNet mean and standard deviation (``alfa.data.episodes``). ``alfa adapt``
and exported models (``alfa export``) use this to rebuild the learner and to prepare a user's
images exactly as the training images were, without the training data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alfa.config import Config
from alfa.data.episodes import to_float
from alfa.data.images import FileReader, ImageSpec
from alfa.errors import DataError

__all__ = ["Preprocessing", "input_channels", "preprocessing_for", "task_of"]

_GREY = {"omniglot"}
"""Datasets whose loaders produce one-channel images (all others produce RGB)."""
_CROP = {"cub": 1.15}
"""Datasets whose loaders resize by this factor and centre-crop (all others resize only)."""


def task_of(config: Config) -> str:
    """``"regression"`` for sinusoid runs, ``"classification"`` for every image dataset."""
    return "regression" if config.data.name == "sinusoid" else "classification"


def input_channels(config: Config) -> int:
    """Channels of the base learner's input: 1 for sinusoid and Omniglot, 3 (RGB) otherwise."""
    return 1 if config.data.name == "sinusoid" or config.data.name in _GREY else 3


@dataclass(frozen=True)
class Preprocessing:
    """How one image file becomes a model input ``float32 [channels, size, size]``."""

    image_size: int
    channels: int
    resample: str
    invert: bool
    crop_scale: float
    normalise: str  # "imagenet" (colour) or "none"

    def spec(self) -> ImageSpec:
        """The loader-side part: mode, resize, crop and inversion to ``uint8`` pixels."""
        return ImageSpec(
            size=self.image_size,
            channels=self.channels,
            resample=self.resample,
            crop_scale=self.crop_scale,
            invert=self.invert,
        )

    def load(self, paths: list[Path]) -> torch.Tensor:
        """The images at ``paths`` as one ``float32 [N, C, H, W]`` batch, prepared as in training.

        Raises:
            DataError: a file cannot be read as an image (named), or is a decompression bomb.
        """
        spec, reader = self.spec(), FileReader()
        arrays = [spec.to_array(reader.open(str(p))) for p in paths]
        return to_float(torch.from_numpy(np.stack(arrays)), self.normalise)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Preprocessing:
        """Read back :meth:`to_dict`'s output, checking every field.

        Raises:
            DataError: a field is missing or has a wrong type or value (named).
        """
        if not isinstance(data, dict):
            raise DataError("preprocessing must be a JSON object")
        kinds = {
            "image_size": int,
            "channels": int,
            "resample": str,
            "invert": bool,
            "crop_scale": (int, float),
            "normalise": str,
        }
        for key, kind in kinds.items():
            value = data.get(key)
            if (
                value is None
                or not isinstance(value, kind)
                or (kind is int and isinstance(value, bool))
            ):
                raise DataError(f"preprocessing key '{key}' is missing or has a wrong type")
        if data["normalise"] not in ("imagenet", "none"):
            raise DataError(f"preprocessing key 'normalise' is {data['normalise']!r}")
        out = cls(**{k: data[k] for k in kinds})
        out.spec()  # validates size, channels, filter and crop
        return out


def preprocessing_for(config: Config) -> Preprocessing | None:
    """The preprocessing of a run's training images (None for sinusoid regression)."""
    d = config.data
    if d.name == "sinusoid":
        return None
    channels = input_channels(config)
    return Preprocessing(
        image_size=d.image_size,
        channels=channels,
        resample="lanczos" if d.name == "omniglot" else "bilinear",
        invert=d.name == "omniglot",
        crop_scale=_CROP.get(d.name, 1.0),
        normalise="imagenet" if channels == 3 else "none",
    )
