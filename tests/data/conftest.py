"""Writers of tiny data sets in the exact on-disk formats the loaders read.

Every writer produces small random images with Pillow/NumPy in the same layout, file names,
pickle/npz/JSON/CSV structures as the published data sets (see docs/reference.md section C).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from alfa.data import ImageClassDataset, load_dataset
from alfa.data.splits import mini_imagenet_split
from shared_paths import REAL_OMNIGLOT


class Py2Pickler(pickle._Pickler):
    """Writes ``str`` and ``bytes`` as Python 2 ``str`` objects (BINSTRING opcodes), so the
    result loads only with ``encoding='latin1'`` or ``'bytes'``, like the original caches."""

    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)

    def save_py2str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2str
    dispatch[bytes] = save_py2str


def py2_pickle(obj: Any, file: Path) -> None:
    """Pickle ``obj`` to ``file`` as Python 2.7 would have (protocol 2, byte strings)."""
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    file.write_bytes(buf.getvalue())


class Writer:
    """Builds data sets under ``root``; ``rng`` makes every run identical."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rng = np.random.default_rng(1234)
        self._char_id = 0

    # -- images ---------------------------------------------------------------------------
    def rgb(self, height: int = 20, width: int = 24) -> np.ndarray:
        return self.rng.integers(0, 256, (height, width, 3), dtype=np.uint8)

    def image(self, mode: str = "RGB", size: tuple[int, int] = (24, 20)) -> Image.Image:
        rgb = Image.fromarray(self.rgb(size[1], size[0]))
        if mode == "I;16":
            return Image.fromarray(self.rng.integers(0, 65536, size[::-1], dtype=np.uint16))
        if mode == "1":
            return rgb.convert("L").point(lambda v: 255 if v > 40 else 0).convert("1")
        return rgb.convert(mode)

    def save(self, image: Image.Image, file: Path) -> Path:
        file.parent.mkdir(parents=True, exist_ok=True)
        image.save(file)
        return file

    # -- Omniglot -------------------------------------------------------------------------
    def omniglot(
        self,
        name: str,
        alphabets: dict[str, int],
        drawers: int = 4,
        *,
        as_zip: bool = False,
        base: Path | None = None,
        char_ids: dict[str, int] | None = None,
    ) -> Path:
        """``<base>/<name>/<Alphabet>/characterNN/<id>_<drawer>.png`` (1-bit 105x105), or a
        zip ``<base>/<name>.zip`` with ``<name>/`` as its top folder. ``char_ids`` pins the
        id of an alphabet's first character (to reproduce shared characters)."""
        base = base or self.root
        members: dict[str, bytes] = {}
        for alphabet, count in alphabets.items():
            first = (char_ids or {}).get(alphabet)
            for c in range(1, count + 1):
                if first is None:
                    self._char_id += 1
                    cid = self._char_id
                else:
                    cid = first + c - 1
                for d in range(1, drawers + 1):
                    buf = io.BytesIO()
                    self.image("1", (105, 105)).save(buf, format="PNG")
                    members[f"{name}/{alphabet}/character{c:02d}/{cid:04d}_{d:02d}.png"] = (
                        buf.getvalue()
                    )
        if as_zip:
            target = base / f"{name}.zip"
            base.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(target, "w") as zf:
                dirs = sorted({m.rsplit("/", i)[0] + "/" for m in members for i in (1, 2, 3)})
                for d in dirs:
                    zf.writestr(d, b"")
                for member, data in sorted(members.items()):
                    zf.writestr(member, data)
            return target
        for member, data in members.items():
            file = base / member
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)
        return base / name

    # -- miniImageNet ---------------------------------------------------------------------
    def wnids(self, split: str, count: int) -> list[str]:
        return list(mini_imagenet_split(split)[:count])

    def mini_csv(self, classes: int = 3, per_class: int = 6) -> Path:
        root = self.root / "miniImagenet"
        for split in ("train", "val", "test"):
            rows = ["filename,label"]
            for wnid in self.wnids(split, classes):
                for i in range(1, per_class + 1):
                    name = f"{wnid}{i:08d}.jpg"
                    size = (int(self.rng.integers(30, 60)), int(self.rng.integers(30, 60)))
                    self.save(self.image("RGB", size), root / "images" / name)
                    rows.append(f"{name},{wnid}")
            (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
        return root

    def mini_folders(self, classes: int = 3, per_class: int = 6) -> Path:
        root = self.root / "datasets" / "mini_imagenet_full_size"
        for split in ("train", "val", "test"):
            for wnid in self.wnids(split, classes):
                for i in range(1, per_class + 1):
                    self.save(
                        self.image("RGB", (84, 84)), root / split / wnid / f"{wnid}{i:08d}.jpg"
                    )
        return root

    def mini_pickle(
        self,
        classes: int = 3,
        per_class: int = 6,
        *,
        l2l: bool = False,
        py2: bool = False,
        splits: Sequence[str] = ("train", "val", "test"),
        size: int = 84,
    ) -> Path:
        root = self.root / ("l2l" if l2l else "mini-imagenet")
        root.mkdir(parents=True, exist_ok=True)
        for split in splits:
            wnids = self.wnids(split, classes)
            n = classes * per_class
            images = self.rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            order = self.rng.permutation(n)  # rows of a class need not be contiguous
            class_dict = {w: sorted(order[i::classes].tolist()) for i, w in enumerate(wnids)}
            data = {"image_data": images, "class_dict": class_dict}
            name = "validation" if (l2l and split == "val") else split
            file = root / f"mini-imagenet-cache-{name}.pkl"
            if py2:
                py2_pickle(data, file)
            else:
                file.write_bytes(pickle.dumps(data, protocol=4))
        return root

    # -- tieredImageNet -------------------------------------------------------------------
    def tiered_labels(
        self,
        split: str,
        labels: np.ndarray,
        classes: int,
        *,
        metaoptnet: bool,
        folder: str = "tiered-imagenet",
    ) -> None:
        root = self.root / folder
        root.mkdir(parents=True, exist_ok=True)
        if metaoptnet:
            data: dict[str, Any] = {"labels": (labels + 100).tolist()}
        else:
            data = {
                "label_specific": labels,
                "label_general": labels // 2,
                "label_specific_str": [f"n{9000000 + c:08d}" for c in range(classes)],
                "label_general_str": [f"n{8000000 + c:08d}" for c in range((classes + 1) // 2)],
            }
        py2_pickle(data, root / f"{split}_labels.pkl")

    def tiered(
        self,
        *,
        kind: str = "png",
        classes: int = 4,
        per_class: int = 5,
        metaoptnet: bool = False,
        folder: str = "tiered-imagenet",
    ) -> tuple[Path, dict[str, np.ndarray]]:
        """Returns the folder and, per split, the RGB pixels of every image (row order)."""
        root = self.root / folder
        root.mkdir(parents=True, exist_ok=True)
        pixels: dict[str, np.ndarray] = {}
        for split in ("train", "val", "test"):
            labels = np.repeat(np.arange(classes), per_class)
            self.rng.shuffle(labels)
            rgb = self.rng.integers(0, 256, (labels.size, 84, 84, 3), dtype=np.uint8)
            pixels[split] = rgb
            self.tiered_labels(split, labels, classes, metaoptnet=metaoptnet, folder=folder)
            if kind == "png":
                # cv2.imencode('.png', bgr) writes the true colours: same bytes as PIL from RGB.
                blobs = []
                for row in rgb:
                    buf = io.BytesIO()
                    Image.fromarray(row).save(buf, format="PNG")
                    blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8).copy())
                py2_pickle(blobs, root / f"{split}_images_png.pkl")
            else:
                np.savez(root / f"{split}_images.npz", images=rgb[..., ::-1].copy())  # BGR
        return root, pixels

    # -- CUB ------------------------------------------------------------------------------
    def cub_raw(self, classes: int = 8, per_class: int = 5, *, base: Path | None = None) -> Path:
        base = base or self.root
        images = base / "CUB_200_2011" / "images"
        for c in range(1, classes + 1):
            name = f"{c:03d}.Bird_Number_{c}"
            for i in range(per_class):
                mode = "L" if (c, i) == (1, 0) else "RGB"  # CUB has a few grey JPEGs
                size = (int(self.rng.integers(40, 90)), int(self.rng.integers(40, 90)))
                self.save(self.image(mode, size), images / name / f"Bird_Number_{c}_{i:04d}.jpg")
        return base / "CUB_200_2011"

    def cub_json(
        self, classes: int = 8, per_class: int = 5, *, stale: bool = True, base: Path | None = None
    ) -> Path:
        """CloserLook split files; ``stale`` writes absolute paths of another machine."""
        root = base or self.root
        images = self.cub_raw(classes, per_class, base=root) / "images"
        folders = sorted(p.name for p in images.iterdir())
        prefix = "/home/someone/CloserLookFewShot/filelists/CUB/CUB_200_2011/images"
        for split, file in (("train", "base.json"), ("val", "val.json"), ("test", "novel.json")):
            names, labels = [], []
            for i, folder in enumerate(folders):
                keep = i % 2 == 0 if split == "train" else i % 4 == (1 if split == "val" else 3)
                if not keep:
                    continue
                for img in sorted((images / folder).iterdir()):
                    names.append(f"{prefix}/{folder}/{img.name}" if stale else str(img))
                    labels.append(i)
            order = self.rng.permutation(len(names))  # CloserLook shuffles the image order
            meta = {
                "label_names": folders,
                "image_names": [names[k] for k in order],
                "image_labels": [labels[k] for k in order],
            }
            (root / file).write_text(json.dumps(meta))
        return root

    # -- generic folders ------------------------------------------------------------------
    def folder(self, classes: dict[str, int], *, modes: Sequence[str] = ("RGB",)) -> Path:
        root = self.root / "my_images"
        exts = (".png", ".jpg", ".jpeg", ".bmp")
        for name, count in classes.items():
            (root / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                mode = modes[i % len(modes)]
                ext = ".png" if mode in ("RGBA", "P", "LA", "I;16", "1") else exts[i % len(exts)]
                self.save(self.image(mode, (30, 26)), root / name / f"img_{i:03d}{ext}")
        return root


@pytest.fixture
def writer(tmp_path: Path) -> Writer:
    """A :class:`Writer` rooted at a fresh temporary folder."""
    return Writer(tmp_path)


@pytest.fixture(scope="session")
def real_omniglot() -> Path:
    """The two real minimal Omniglot background zips (skips where they are absent)."""
    if not (REAL_OMNIGLOT / "images_background_small1.zip").is_file():
        pytest.skip("real Omniglot zips not available")
    return REAL_OMNIGLOT


@pytest.fixture(scope="session")
def real_omniglot_data(real_omniglot: Path) -> ImageClassDataset:
    """The real minimal zips loaded once (in memory, 28x28, inverted)."""
    return load_dataset(real_omniglot)
