"""Checks of a user's images against what a trained model saw in training (``alfa adapt``).

A model prepares any image as its training images were prepared (:mod:`alfa.runs.preprocessing`)
and then answers with confidence whatever it was given: colour noise, a 4x4 thumbnail, a fully
transparent file or a white-on-black drawing for a model trained on black-on-white ones all get
a class and a high probability. These checks compare each image with the model's preprocessing
before it is prepared and say what does not fit, one line per kind of problem:

* colour: a colour image for a model trained on grey images (or a grey one for a colour model);
* size: an image smaller than half the model's input side, enlarged so much that little of
  what the model learned from remains;
* content: a fully transparent image, or one of a single colour (nothing drawn);
* polarity: for a model trained on dark-on-light drawings that it inverts (Omniglot), an image
  whose mean intensity says light-on-dark;
* shots: support classes with different numbers of images (every training task had ``K``
  images per class).

``alfa adapt`` prints them as warnings; ``--strict`` refuses the images instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from alfa.data.images import FileReader
from alfa.runs.preprocessing import Preprocessing

__all__ = ["ImageFacts", "check_images", "check_shots", "inspect_image"]

_CHROMA = 10.0
"""Mean spread between the largest and smallest of R, G, B (0-255) above which an image counts
as colour; a grey image saved as RGB has 0, JPEG noise on grey a few units."""


@dataclass(frozen=True)
class ImageFacts:
    """What an image file holds, before any preprocessing."""

    path: Path
    width: int
    height: int
    colour: bool  # its pixels have colour (not only grey levels)
    transparent: bool  # every pixel is fully transparent
    blank: bool  # a single colour: nothing drawn
    mean: float  # mean grey intensity in [0, 1], transparent pixels on white


def inspect_image(path: Path) -> ImageFacts:
    """Read ``path`` and describe it (a large image is measured on a reduced copy).

    Raises:
        DataError: the file cannot be read as an image (named), or is a decompression bomb.
    """
    image = FileReader().open(str(path))
    width, height = image.size
    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., 3]
    small = image.convert("RGBA")
    small.thumbnail((256, 256))
    background = Image.new("RGBA", small.size, (255, 255, 255, 255))
    rgb = np.asarray(Image.alpha_composite(background, small).convert("RGB"), dtype=np.float64)
    chroma = float((rgb.max(axis=2) - rgb.min(axis=2)).mean())
    grey = rgb.mean(axis=2)
    return ImageFacts(
        path=Path(path),
        width=width,
        height=height,
        colour=chroma > _CHROMA,
        transparent=alpha is not None and not bool(alpha.any()),
        blank=float(np.ptp(rgb)) == 0.0,
        mean=float(grey.mean()) / 255.0,
    )


def _are(facts: Sequence[ImageFacts], total: int) -> str:
    """``"3 of 8 images (e.g. 'a.png') are"``, or ``"image 'a.png' is"`` for one image."""
    if len(facts) == 1:
        return f"image '{facts[0].path}' is"
    return f"{len(facts)} of {total} images (e.g. '{facts[0].path}') are"


def check_images(prep: Preprocessing, facts: Sequence[ImageFacts]) -> list[str]:
    """The problems of ``facts`` for a model that prepares images with ``prep``, one line each
    (empty when they fit)."""
    total = len(facts)
    problems = []
    if prep.channels == 1:
        colour = [f for f in facts if f.colour]
        if colour:
            problems.append(
                f"{_are(colour, total)} in colour; the model was trained on grey images and "
                "sees them converted to grey"
            )
    else:
        grey = [f for f in facts if not f.colour and not f.blank]
        if grey:
            problems.append(f"{_are(grey, total)} grey; the model was trained on colour images")
    half = prep.image_size / 2
    tiny = [f for f in facts if min(f.width, f.height) < half]
    if tiny:
        problems.append(
            f"{_are(tiny, total)} smaller than half the model's input of "
            f"{prep.image_size}x{prep.image_size} ({tiny[0].width}x{tiny[0].height}); enlarged "
            "that much, they hold little of what the model learned from"
        )
    empty = [f for f in facts if f.transparent]
    if empty:
        problems.append(f"{_are(empty, total)} fully transparent: nothing is drawn")
    flat = [f for f in facts if f.blank and not f.transparent]
    if flat:
        problems.append(f"{_are(flat, total)} a single colour: nothing is drawn")
    if prep.invert:
        dark = [f for f in facts if f.mean < 0.5 and not f.blank]
        if dark:
            problems.append(
                f"{_are(dark, total)} light-on-dark (mean intensity {dark[0].mean:.2f}); the "
                "model was trained on dark-on-light drawings, which it inverts: give dark "
                "strokes on a light background"
            )
    return problems


def check_shots(names: Sequence[str], files: Sequence[Sequence[Path]], shots: int) -> list[str]:
    """A problem line when the support classes hold different numbers of images (every
    training task had ``shots`` per class)."""
    counts = [len(f) for f in files]
    if len(set(counts)) <= 1:
        return []
    shown = ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True))
    return [
        f"the support classes hold different numbers of images ({shown}); the model was trained "
        f"with {shots} per class (data.shots), the same for every class"
    ]
