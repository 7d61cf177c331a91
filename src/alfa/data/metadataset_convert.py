"""Convert Omniglot zip files into Meta-Dataset's record format (``alfa data convert omniglot``).

The output is one Meta-Dataset source folder: ``dataset_spec.json`` (a bi-level specification:
the alphabets are the superclasses, the characters their classes) and one
``<class_id>.tfrecords`` per character, each record a ``tf.train.Example`` holding one encoded
image (``image``) and the character's class id (``label``).

The images are what Meta-Dataset's converter writes for Omniglot (its
``dataset_to_records.OmniglotConverter``, which calls ``write_tfrecord_from_directory`` with
``invert_img=True``): each PNG of the zip is decoded, converted to RGB, inverted (white strokes
on black; Omniglot's PNGs have black strokes on white) and encoded as a JPEG of PIL's default
quality, :data:`JPEG_QUALITY` (Meta-Dataset saves without a quality argument), with PIL's
default chroma subsampling. ``keep_png=True`` (``--keep-png``) stores the zip's PNG bytes
unchanged instead: lossless, black strokes on white, not what Meta-Dataset's records hold.

The split is the alphabet split of ``configs/omniglot/splits/minimal_*.txt``: 6 training
alphabets and 2 test alphabets, no validation alphabet. Rotations are not classes (Meta-Dataset
has none). Class ids run over the training alphabets first, then the test alphabets, each
alphabet's characters in name order. When two zips hold the same file of a character (the two
minimal sets share Greek and Latin), the first zip given wins, as :mod:`alfa.data.omniglot` does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageOps

from alfa.data.example_proto import encode_example
from alfa.data.images import decode_image
from alfa.data.metadataset_spec import SPEC_FILE, DatasetSpec, spec_to_json
from alfa.data.tfrecord import write_records
from alfa.errors import DataError
from alfa.limits import read_member

__all__ = [
    "JPEG_QUALITY",
    "OMNIGLOT_TEST_ALPHABETS",
    "OMNIGLOT_TRAIN_ALPHABETS",
    "ConversionSummary",
    "convert_omniglot",
    "meta_dataset_jpeg",
]

JPEG_QUALITY = 75
"""JPEG quality of the converted images: PIL's default, the one Meta-Dataset's converter gets."""

OMNIGLOT_TRAIN_ALPHABETS: tuple[str, ...] = (
    "Balinese",
    "Greek",
    "Japanese_(katakana)",
    "Korean",
    "Latin",
    "Sanskrit",
)
"""The training alphabets of ``configs/omniglot/splits/minimal_train.txt`` (sorted)."""

OMNIGLOT_TEST_ALPHABETS: tuple[str, ...] = ("Early_Aramaic", "Tagalog")
"""The test alphabets of ``configs/omniglot/splits/minimal_test.txt`` (sorted)."""


@dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert_omniglot` wrote."""

    out: Path
    classes: int
    images: int
    train_alphabets: int
    train_classes: int
    test_alphabets: int
    test_classes: int

    def line(self) -> str:
        """The one-line report printed by the command."""
        return (
            f"wrote {self.classes} classes ({self.images} images) to {self.out}: "
            f"train {self.train_alphabets} alphabets / {self.train_classes} classes, "
            f"test {self.test_alphabets} alphabets / {self.test_classes} classes"
        )


Member = tuple[str, str]  # (zip path, member name)


def _scan(zips: list[str]) -> dict[tuple[str, str], list[Member]]:
    """``(alphabet, character) -> [(zip, member)]`` of every PNG at ``root/alphabet/char/file``."""
    members: dict[tuple[str, str], list[Member]] = {}
    for zip_path in zips:
        if not os.path.isfile(zip_path):
            raise DataError(f"{zip_path}: no such zip file")
        try:
            with zipfile.ZipFile(zip_path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{zip_path}: not a readable zip file ({exc})") from exc
        pngs = 0
        for name in names:
            parts = name.split("/")
            if len(parts) == 4 and parts[3].lower().endswith(".png"):
                members.setdefault((parts[1], parts[2]), []).append((zip_path, name))
                pngs += 1
        if not pngs:
            raise DataError(
                f"{zip_path}: holds no Omniglot image (expected ROOT/ALPHABET/CHARACTER/*.png)"
            )
    return members


def _read(archive: zipfile.ZipFile, zip_path: str, name: str) -> bytes:
    """A member's bytes, streamed within the caps (a bad CRC, a damaged stream, encryption, an
    unknown compression method or a zip bomb is one line naming the member)."""
    return read_member(archive, name, f"{zip_path}: member {name}")


def meta_dataset_jpeg(data: bytes, where: str) -> bytes:
    """The record image Meta-Dataset's Omniglot converter makes of one encoded image: decoded,
    converted to RGB, inverted (``255 - x`` per channel) and encoded as a JPEG of quality
    :data:`JPEG_QUALITY`.

    Args:
        data: The encoded image (an Omniglot PNG).
        where: What names the image in an error (the zip and member).

    Raises:
        DataError: The image does not decode, or its header claims more than
            :data:`alfa.data.images.MAX_IMAGE_PIXELS` (refused before decoding).
    """
    with decode_image(data, where) as image:
        inverted = ImageOps.invert(image.convert("RGB"))
    out = io.BytesIO()
    inverted.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _written(out: Path, made: bool, files: list[Path]) -> None:
    """Remove what a failed conversion wrote: its files, and ``out`` when it made it."""
    for file in files:
        file.unlink(missing_ok=True)
    if made:
        with contextlib.suppress(OSError):
            out.rmdir()


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: the output exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise DataError(f"{out}: the output folder is not empty; give a new or empty folder")


def _write(
    out: Path,
    zips: list[str],
    members: dict[tuple[str, str], list[Member]],
    train: list[str],
    test: list[str],
    files: list[Path],
    keep_png: bool,
) -> DatasetSpec:
    """Write one record file per character (each appended to ``files`` before it is written)."""
    names: list[str] = []
    counts: list[int] = []
    groups: list[list[int]] = []
    opened: dict[str, zipfile.ZipFile] = {}
    try:
        for path in dict.fromkeys(zips):
            try:
                opened[path] = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{path}: not a readable zip file ({exc})") from exc
        for alphabet in train + test:
            group = []
            for character in sorted(c for a, c in members if a == alphabet):
                class_id = len(names)
                unique: dict[str, Member] = {}
                for z, n in members[(alphabet, character)]:
                    unique.setdefault(n.rsplit("/", 1)[1], (z, n))
                records = []
                for z, n in (unique[k] for k in sorted(unique)):
                    image = _read(opened[z], z, n)
                    if not keep_png:
                        image = meta_dataset_jpeg(image, f"{z}: member {n}")
                    records.append(encode_example({"image": [image], "label": [class_id]}))
                files.append(out / f"{class_id}.tfrecords")
                write_records(files[-1], records)
                names.append(f"{alphabet}-{character}")
                counts.append(len(records))
                group.append(class_id)
            groups.append(group)
    finally:
        for z in opened.values():
            z.close()
    return DatasetSpec(
        name="omniglot",
        kind="bilevel",
        class_names=names,
        images_per_class=counts,
        splits={},
        superclasses={"TRAIN": groups[: len(train)], "VALID": [], "TEST": groups[len(train) :]},
        superclass_names=train + test,
    )


def convert_omniglot(
    zips: list[str], out: str | os.PathLike[str], *, keep_png: bool = False
) -> ConversionSummary:
    """Write the Omniglot images of ``zips`` as a Meta-Dataset source at ``out``.

    Args:
        zips: Omniglot zip files (``images_background*.zip``), first wins on duplicates.
        out: A new or empty folder for the source.
        keep_png: Store each zip member's PNG bytes unchanged instead of the inverted RGB JPEG
            that Meta-Dataset's converter writes (:func:`meta_dataset_jpeg`).

    Raises:
        DataError: A zip is missing, unreadable or holds no Omniglot image; an image does not
            decode (unless ``keep_png``); an alphabet of the split is in none of the zips;
            ``out`` is a file or a non-empty folder.
    """
    out = Path(out)
    _check_out(out)
    members = _scan(list(zips))
    train, test = list(OMNIGLOT_TRAIN_ALPHABETS), list(OMNIGLOT_TEST_ALPHABETS)
    missing = sorted(set(train + test) - {a for a, _ in members})
    if missing:
        raise DataError(f"alphabet {missing[0]} is not in the given zip files")

    made = not out.exists()
    files: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        spec = _write(out, zips, members, train, test, files, keep_png)
        files.append(out / SPEC_FILE)
        (out / SPEC_FILE).write_text(json.dumps(spec_to_json(spec, str(out)), indent=2))
    except BaseException as exc:
        _written(out, made, files)
        if isinstance(exc, OSError):
            where = exc.filename or out
            raise DataError(
                f"cannot write the records to '{where}': {exc.strerror or exc}; nothing was kept "
                "(free space or choose a writable folder with --to)"
            ) from None
        raise
    groups = [spec.superclasses["TRAIN"], spec.superclasses["TEST"]]
    names, counts = spec.class_names, spec.images_per_class
    return ConversionSummary(
        out=out,
        classes=len(names),
        images=sum(counts),
        train_alphabets=len(train),
        train_classes=sum(len(g) for g in groups[0]),
        test_alphabets=len(test),
        test_classes=sum(len(g) for g in groups[1]),
    )
