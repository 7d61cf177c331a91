"""Omniglot (Lake et al.): ``images_background`` / ``images_evaluation`` folders or zips.

Layout: ``<root>/<Alphabet>/characterNN/<id>_<drawer>.png`` (105x105, 1-bit). A class is one
character, named ``"<Alphabet>/<characterNN>"``. Several roots (folders and/or zips, read in
place without extracting) are merged; a character present in more than one root (the minimal
``images_background_small1``/``small2`` sets share Greek and Latin) becomes one class whose
images are de-duplicated by file name (the first root in sorted order wins).

Pixels: images are converted to grey (mode ``L``), resized to ``image_size`` (default 28) with
the Lanczos filter and, by default, **inverted** (``invert=True``: stored value ``255 - x``), so
strokes become 1.0 and the background 0.0 after the sampler divides by 255, as in Prototypical
Networks. The sampler applies no mean/std normalisation to one-channel data by default.

Rotations by 90/180/270 degrees (counter-clockwise) can be added as extra classes named
``"<Alphabet>/<characterNN>/rotDDD"``, and a Vinyals-style class list (lines
``Alphabet/characterNN/rotDDD``) selects classes and rotations explicitly.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from alfa.data._files import (
    ProblemSink,
    as_path,
    is_image_name,
    list_class_dirs,
    list_images,
    report,
)
from alfa.data.dataset import ImageClassDataset, IndexLike, LazyImageDataset
from alfa.data.images import FileReader, ImageSpec, ZipMember
from alfa.data.splits import ClassList, class_list_lines
from alfa.errors import DataError

__all__ = ["RotatedClasses", "find_roots", "load_omniglot"]

_ROOT_PREFIXES = ("images_background", "images_evaluation")
_ANGLES = (0, 90, 180, 270)
_ROT = re.compile(r"^rot(\d{3})$")
VINYALS_SPLITS = ("train", "val", "test", "trainval")


@dataclass(frozen=True)
class _Root:
    name: str
    location: Path
    is_zip: bool


def find_roots(path: Path) -> list[_Root]:
    """The Omniglot roots at ``path``: a root folder, a zip, or a folder holding several.

    Raises:
        DataError: Nothing Omniglot-like is found there.
    """
    if not path.exists():
        raise DataError(f"Omniglot path not found: {path} (check the dataset path)")
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise DataError(f"{path} is a file but not a zip; pass an Omniglot folder or zip")
        return [_Root(path.stem, path, True)]
    roots: dict[str, _Root] = {}
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        stem = entry.name[:-4] if entry.name.lower().endswith(".zip") else entry.name
        if not stem.startswith(_ROOT_PREFIXES):
            continue
        if entry.is_dir():
            roots[stem] = _Root(stem, Path(entry.path), False)  # a folder beats its zip
        elif entry.is_file() and entry.name.lower().endswith(".zip") and stem not in roots:
            roots[stem] = _Root(stem, Path(entry.path), True)
    if roots:
        return [roots[k] for k in sorted(roots)]
    if _looks_like_root(path):
        return [_Root(path.name, path, False)]
    raise DataError(
        f"no Omniglot data under {path}: expected images_background/ or images_evaluation/ "
        "(folders or zips) or <Alphabet>/characterNN/*.png folders"
    )


def _looks_like_root(path: Path) -> bool:
    return any(list_class_dirs(alphabet, r"character\d+") for alphabet in list_class_dirs(path))


def _scan_dir(root: _Root, sink: ProblemSink) -> dict[str, dict[str, str | ZipMember]]:
    found: dict[str, dict[str, str | ZipMember]] = {}
    base = root.location
    if not _looks_like_root(base) and (base / root.name).is_dir():
        base = base / root.name  # a folder that wraps the real root
    for alphabet in list_class_dirs(base):
        characters = list_class_dirs(alphabet)
        if not characters:
            report(sink, f"Omniglot alphabet folder {alphabet} has no character folders")
        for char in characters:
            files = list_images(char)
            if not files:
                report(sink, f"empty class folder {char} (no .png images; delete the folder)")
                continue
            found[f"{alphabet.name}/{char.name}"] = {f.name: str(f) for f in files}
    return found


def _scan_zip(root: _Root, sink: ProblemSink) -> dict[str, dict[str, str | ZipMember]]:
    archive = str(root.location)
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot open zip archive {archive}: {exc} (download it again)") from exc
    found: dict[str, dict[str, str | ZipMember]] = {}
    folders: set[str] = set()
    for name in names:
        if name.startswith("__MACOSX/") or "/." in name:
            continue
        parts = [p for p in name.split("/") if p]
        if name.endswith("/"):
            if len(parts) >= 2 and re.fullmatch(r"character\d+", parts[-1]):
                folders.add(f"{parts[-2]}/{parts[-1]}")
            continue
        if len(parts) >= 3 and is_image_name(parts[-1]):
            key = f"{parts[-3]}/{parts[-2]}"
            found.setdefault(key, {})[parts[-1]] = ZipMember(archive, name)
    for key in sorted(folders - set(found)):
        report(sink, f"empty class folder {archive}!{key} (no .png images)")
    if not found:
        report(sink, f"zip archive {archive} holds no <Alphabet>/characterNN/*.png images")
    return found


def _parse_class_line(line: str, file: str, number: int) -> tuple[str, int]:
    parts = line.strip().strip("/").split("/")
    angle = 0
    if len(parts) == 3:
        match = _ROT.match(parts[2])
        if not match or int(match.group(1)) not in _ANGLES:
            raise DataError(
                f"line {number} of {file} is not a class line: expected "
                "Alphabet/characterNN/rotDDD with DDD in 000, 090, 180, 270"
            )
        angle = int(match.group(1))
    elif len(parts) != 2:
        raise DataError(
            f"line {number} of {file} is not a class line: expected Alphabet/characterNN[/rotDDD]"
        )
    return f"{parts[0]}/{parts[1]}", angle


def _rotation_list(rotations: bool | Sequence[int]) -> list[int]:
    if isinstance(rotations, bool):
        return list(_ANGLES) if rotations else [0]
    angles = [int(a) for a in rotations]
    bad = [a for a in angles if a not in _ANGLES]
    if bad or not angles:
        raise DataError(f"rotations must be angles among 0, 90, 180, 270, got {list(rotations)}")
    return sorted(set(angles))


def _select_roots(roots: list[_Root], split: str | None, path: str) -> list[_Root]:
    if split in (None, "all") or split in VINYALS_SPLITS:
        return roots
    if split in ("background", "evaluation"):
        chosen = [r for r in roots if r.name.startswith(f"images_{split}")]
        if not chosen:
            raise DataError(f"no images_{split} folder or zip under {path}")
        return chosen
    raise DataError(
        f"unknown Omniglot split {split!r}; use all, background, evaluation or "
        f"(with a Vinyals class list) {', '.join(VINYALS_SPLITS)}"
    )


def _vinyals_list(paths: list[Path], split: str) -> Path:
    for base in paths:
        folder = base if base.is_dir() else base.parent
        for candidate in (folder / "splits" / "vinyals", folder.parent / "splits" / "vinyals"):
            if (candidate / f"{split}.txt").is_file():
                return candidate / f"{split}.txt"
    raise DataError(
        f"Omniglot split {split!r} needs a Vinyals class list: pass class_list=FILE or put "
        f"splits/vinyals/{split}.txt next to {paths[0]} (or use split='all')"
    )


def load_omniglot(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    split: str | None = None,
    image_size: int = 28,
    rotations: bool | Sequence[int] = False,
    class_list: ClassList | None = None,
    invert: bool = True,
    resample: str = "lanczos",
    in_memory: bool | None = None,
    on_problem: ProblemSink = None,
) -> ImageClassDataset:
    """Load Omniglot characters as classes.

    Args:
        path: A root folder or zip, a folder holding ``images_background*`` /
            ``images_evaluation*`` folders or zips, or a list of those (merged).
        split: ``all`` (default), ``background`` or ``evaluation`` (roots by name), or a Vinyals
            split (``train``, ``val``, ``test``, ``trainval``) read from ``class_list`` or from
            ``splits/vinyals/<split>.txt`` next to ``path``.
        image_size: Output side in pixels.
        rotations: ``True`` adds 90/180/270 degree rotations as extra classes; or a list of
            angles. Ignored when a class list is used (it names the rotations).
        class_list: A file of ``Alphabet/characterNN[/rotDDD]`` lines selecting the classes
            (or those lines as a list).
        invert: Store ``255 - x`` so that strokes are bright (see the module docstring).
        resample: PIL resize filter (default Lanczos).
        in_memory: Decode everything up front (default ``True``); ``False`` decodes on demand.
        on_problem: Collects non-fatal problems instead of raising (used by the data check).

    Raises:
        DataError: Missing paths, empty character folders, unknown classes, bad list lines.
    """
    paths = [as_path(p) for p in ([path] if isinstance(path, str | os.PathLike) else path)]
    if not paths:
        raise DataError("no Omniglot path given")
    roots = [r for p in paths for r in _select_roots(find_roots(p), split, str(p))]
    merged: dict[str, dict[str, str | ZipMember]] = {}
    for root in roots:
        scanned = _scan_zip(root, on_problem) if root.is_zip else _scan_dir(root, on_problem)
        for key, files in scanned.items():
            target = merged.setdefault(key, {})
            for fname, item in files.items():
                target.setdefault(fname, item)
    if not merged:
        raise DataError(f"no Omniglot character images found under {', '.join(map(str, paths))}")

    if class_list is None and split in VINYALS_SPLITS:
        class_list = _vinyals_list(paths, str(split))
    if class_list is not None:
        lines, file = class_list_lines(class_list)
        wanted = [_parse_class_line(line, file, number) for number, line in lines]
        missing = [n for (n, _), (k, _) in zip(lines, wanted, strict=True) if k not in merged]
        if missing:
            raise DataError(
                f"{len(missing)} characters listed in {file} are not in the data (the first on "
                f"line {missing[0]}; is the list for these images?)"
            )
        names = [f"{k}/rot{a:03d}" for k, a in wanted]
    else:
        angles = _rotation_list(rotations)
        keys = sorted(merged)
        wanted = [(k, a) for k in keys for a in angles]
        names = [f"{k}/rot{a:03d}" if angles != [0] else k for k, a in wanted]

    chars = sorted({k for k, _ in wanted})
    spec = ImageSpec(size=image_size, channels=1, resample=resample, invert=invert)
    items = [[merged[k][f] for f in sorted(merged[k])] for k in chars]
    source = ", ".join(str(p) for p in paths)
    base: ImageClassDataset = LazyImageDataset(chars, items, FileReader(), spec, source=source)
    if in_memory is None or in_memory:
        base = base.to_memory()
    if names == chars:
        return base
    index = {k: i for i, k in enumerate(chars)}
    return RotatedClasses(base, [(index[k], a // 90) for k, a in wanted], names)


class RotatedClasses(ImageClassDataset):
    """Classes that are a base class rotated counter-clockwise by ``k * 90`` degrees."""

    def __init__(
        self, base: ImageClassDataset, classes: Sequence[tuple[int, int]], names: Sequence[str]
    ) -> None:
        self.base = base
        self.classes = [(base._check_class(int(c)), int(k) % 4) for c, k in classes]
        self.class_names = list(names)
        self.image_shape = base.image_shape
        self.source = base.source

    def images_per_class(self) -> list[int]:
        counts = self.base.images_per_class()
        return [counts[c] for c, _ in self.classes]

    def get(self, class_index: int, image_indices: IndexLike) -> Tensor:
        c, k = self.classes[self._check_class(class_index)]
        images = self.base.get(c, image_indices)
        return torch.rot90(images, k, dims=(2, 3)).contiguous() if k else images
