"""``alfa adapt``: adapt a meta-trained classifier to a user's own few labelled images.

The support set is a class-per-folder directory (``SUPPORT/<class name>/*.png|jpg``) with as
many classes as the model was trained for (N-way). Each query image is classified after the
inner loop has adapted the learned initialisation (and update rule) to the support images.
Images get the same preprocessing as the training data (size, channels, and for Omniglot-trained
models the inversion that makes strokes bright).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alfa.data.episodes import to_float
from alfa.data.folder import load_folder
from alfa.data.images import FileReader, ImageSpec
from alfa.errors import AlfaError, DataError
from alfa.runs import load_run
from alfa.typing import TaskBatch

__all__ = ["Prediction", "adapt_to_images"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


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


def adapt_to_images(
    run_dir: Path, support: Path, queries: list[str], *, steps: int | None = None
) -> list[Prediction]:
    """Adapt the run's best checkpoint to ``support`` and classify every query image."""
    config, learner, source, _ = load_run(run_dir)
    if source.task != "classification":
        raise AlfaError(f"run '{run_dir}' is a regression run; alfa adapt needs a classifier")
    d = config.data
    channels = source.in_channels
    invert = d.name == "omniglot"
    data = load_folder(
        support,
        image_size=d.image_size,
        channels=channels,
        resample="lanczos" if invert else "bilinear",
        invert=invert,
        in_memory=True,
    )
    if data.num_classes != d.ways:
        raise DataError(
            f"support folder '{support}' has {data.num_classes} classes but the model was "
            f"trained for {d.ways}-way tasks; give it exactly {d.ways} class folders"
        )
    normalise = "imagenet" if channels == 3 else "none"
    xs, ys = [], []
    for k, count in enumerate(data.images_per_class()):
        xs.append(data.get(k, list(range(count))))
        ys += [k] * count
    support_x = to_float(torch.cat(xs), normalise)
    support_y = torch.tensor(ys)
    spec = ImageSpec(
        size=d.image_size,
        channels=channels,
        resample="lanczos" if invert else "bilinear",
        invert=invert,
    )
    reader = FileReader()
    paths = _query_paths(queries)
    arrays = [spec.to_array(reader.open(str(p))) for p in paths]
    query_x = to_float(torch.from_numpy(np.stack(arrays)), normalise)
    device = next(learner.parameters()).device
    batch = TaskBatch(
        support_x[None],
        support_y[None],
        query_x[None],
        torch.zeros(1, len(paths), dtype=torch.long),
    ).to(device)
    out = learner(batch, steps=steps, first_order=True, keep_graph=False)
    probs = out.outputs[0].softmax(-1).cpu()
    names = data.class_names
    return [
        Prediction(
            str(p),
            names[int(row.argmax())],
            {n: float(v) for n, v in zip(names, row.tolist(), strict=True)},
        )
        for p, row in zip(paths, probs, strict=True)
    ]
