"""``alfa adapt``: adapt a meta-trained classifier to a user's own few labelled images.

The model is a run directory (one of its checkpoints), an ``alfa export`` file or a shipped
pretrained model; it is rebuilt from its stored config alone, so no training data is needed.
The support set is a class-per-folder directory (``SUPPORT/<class name>/*.png|jpg``) with as
many classes as the model was trained for (N-way); every sub-folder is a class, whatever its
name (``train``, ``val`` and ``test`` included). The inner loop adapts the learned
initialisation with the learned update rule to the support images (``steps`` updates; 0 keeps
the initialisation), then each query image is classified. Images get the preprocessing of the
training data (size, channels, filter, crop, normalisation, and for Omniglot-trained models the
inversion that makes strokes bright), see :mod:`alfa.runs.preprocessing`. Before that, every
image is checked against what the model saw in training (:mod:`alfa.runs.image_checks`: colour,
size, blank or transparent images, polarity, uneven shots): a warning each, or with ``strict``
an error.

Batch normalisation of the query images:

* ``support`` (the default): every batch-norm layer normalises the query images with the
  statistics of the support images (the non-transductive setting). A query image's prediction
  depends only on the model, the support set and that image, so it is the same whether it is
  classified alone or with other images.
* ``transductive``: the query images are normalised with the statistics of the query batch
  itself, as the official ALFA code does during meta-training and testing (reference A.1), so a
  prediction also depends on which other images are classified with it. This matches the
  protocol of ``alfa eval`` for a model trained transductively, and suits a batch of query images
  that holds every class in equal numbers; it is not meant for single images.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from alfa.data._files import list_class_dirs, list_images, require_dir
from alfa.errors import AlfaError, DataError
from alfa.runs.image_checks import check_images, check_shots, inspect_image
from alfa.runs.trained import Trained
from alfa.typing import TaskBatch

__all__ = ["NORM_CHOICES", "Prediction", "adapt_to_images", "input_problems", "read_support"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
NORM_CHOICES = ("support", "transductive")


@dataclass
class Prediction:
    path: str
    label: str
    probabilities: dict[str, float]


def _query_paths(items: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"query image or folder '{p}' does not exist")
    if not paths:
        raise DataError(f"no query images found in {', '.join(items)}")
    return paths


def read_support(folder: Path) -> tuple[list[str], list[list[Path]]]:
    """The class names (sub-folder names, sorted) and image files of a support folder.

    Unlike a dataset folder, sub-folders named ``train``/``val``/``test`` are classes here.

    Raises:
        DataError: the folder is missing, or has no class folders, or a class has no images.
    """
    root = require_dir(Path(folder), "support folder")
    names, files = [], []
    for class_dir in list_class_dirs(root):
        images = list_images(class_dir)
        if not images:
            raise DataError(
                f"support class folder '{class_dir}' holds no .png/.jpg/.jpeg/.bmp images"
            )
        names.append(class_dir.name)
        files.append([Path(f) for f in images])
    if not names:
        raise DataError(f"support folder '{root}' has no class sub-folders with images")
    return names, files


def input_problems(
    model: Trained, names: list[str], files: list[list[Path]], queries: list[Path]
) -> list[str]:
    """What does not fit the model in the support and query images
    (:mod:`alfa.runs.image_checks`), one line per kind of problem."""
    assert model.preprocessing is not None
    facts = [inspect_image(p) for p in [*(f for group in files for f in group), *queries]]
    return check_shots(names, files, model.config.data.shots) + check_images(
        model.preprocessing, facts
    )


def adapt_to_images(
    model: Trained,
    support: Path,
    queries: list[str],
    *,
    steps: int | None = None,
    strict: bool = False,
) -> list[Prediction]:
    """Adapt ``model`` to the images in ``support`` and classify every query image.

    The images are first checked against the model's preprocessing
    (:mod:`alfa.runs.image_checks`): each problem is printed as a warning, or with ``strict``
    the images are refused.

    Args:
        steps: Inner steps (None: as trained; 0: no adaptation).
        strict: refuse images that do not fit the model instead of warning.

    Raises:
        AlfaError: a regression model, or a support set with the wrong number of classes.
        DataError: a missing or unreadable image or folder; with ``strict``, images that do
            not fit the model (the first problem, and how many there are).
    """
    config, prep = model.config, model.preprocessing
    if prep is None:
        raise AlfaError(f"'{model.origin}' is a regression model; alfa adapt needs a classifier")
    names, files = read_support(support)
    ways = config.data.ways
    if len(names) != ways:
        raise DataError(
            f"support folder '{support}' has {len(names)} classes but the model was "
            f"trained for {ways}-way tasks; give it exactly {ways} class folders"
        )
    paths = _query_paths(queries)
    problems = input_problems(model, names, files, paths)
    if problems and strict:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"--strict: {problems[0]}{more}")
    for problem in problems:
        print(f"alfa: warning: {problem}", file=sys.stderr)
    support_x = prep.load([f for group in files for f in group])
    support_y = torch.tensor([k for k, group in enumerate(files) for _ in group])
    query_x = prep.load(paths)
    device = next(model.learner.parameters()).device
    batch = TaskBatch(
        support_x[None],
        support_y[None],
        query_x[None],
        torch.zeros(1, len(paths), dtype=torch.long),
    ).to(device)
    out = model.learner(batch, steps=steps, first_order=True, keep_graph=False)
    probs = out.outputs[0].softmax(-1).cpu()
    return [
        Prediction(
            str(p),
            names[int(row.argmax())],
            {n: float(v) for n, v in zip(names, row.tolist(), strict=True)},
        )
        for p, row in zip(paths, probs, strict=True)
    ]
